"""The scheduler's side of the trainer protocol: events written once, guarded by the attempt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blueno import events, ingest, metrics
from blueno.events import EventWriter, FileSink, FileSource
from blueno.queue import JobQueue, JobState
from blueno.store import Store


@pytest.fixture
def claimed(queue: JobQueue) -> tuple[int, int]:
    """A job claimed once (attempt 1): (job id, run id)."""
    from standin_model import standin_grid

    (job_id,) = queue.submit(standin_grid(1)).added
    job = queue.claim("cpu0", None, "host", 1)
    assert job is not None and job.id == job_id and job.attempt == 1
    return job_id, job.run_id


def report(path: Path, *calls: tuple) -> None:
    """Append events as a trainer would."""
    writer = EventWriter(FileSink(path))
    for name, *args in calls:
        if name == "metric":
            writer.metric(*args)
        else:
            writer.emit(name, **args[0])
    writer.close()


def state_of(store: Store) -> dict[str, list]:
    return {table: [tuple(row) for row in store.query(f"SELECT * FROM {table}")]
            for table in ("jobs", "runs", "metrics", "latest_metrics", "outbox")}


def test_that_a_result_commits_success_figures_points_and_outbox_together(
    tmp_path: Path, store: Store, queue: JobQueue, claimed: tuple[int, int]
) -> None:
    job_id, run = claimed
    path = tmp_path / "a.jsonl"
    report(path, ("start", {"params": {"lr": 0.1}, "dataset": "digits@x", "epochs": 2}),
           ("metric", "loss", 1, 0.9), ("metric", "loss", 2, float("nan")),
           ("epoch", {"epoch": 1, "logs": {"val_loss": 0.5}, "checkpoint": "ck1"}),
           ("epoch", {"epoch": 2, "logs": {"val_loss": 0.4}, "checkpoint": "ck2"}),
           ("result", {"best_epoch": 2, "monitor": "val_loss", "final": {"val_loss": 0.4},
                       "best": {"val_loss": 0.4}, "model_path": "models/run-1/model.keras"}))

    outcome = ingest.ingest(store, FileSource(path), job_id, 1, run)

    assert outcome.succeeded and outcome.events == 5 and not outcome.problems  # both points in one batch
    job = queue.get(job_id)
    assert (job.state, job.epoch, job.epochs) == (JobState.SUCCEEDED, 2, 2)
    row = store.query_one("SELECT * FROM runs WHERE id = ?", (run,))
    assert (row["epochs_done"], row["best_epoch"], row["dataset"]) == (2, 2, "digits@x")
    assert json.loads(row["best"]) == {"val_loss": 0.4} and row["model_path"] == "models/run-1/model.keras"
    steps, values = metrics.history(store, run, "loss")
    assert steps.tolist() == [1, 2] and values[0] == 0.9 and values[1] != values[1]  # NaN kept as NaN
    assert metrics.history(store, run, "val_loss")[0].tolist() == [1, 2]
    assert [tuple(r) for r in store.query("SELECT topic, ref FROM outbox")] == [("run", run)]
    assert ingest.resume_checkpoint(store, job_id) == "ck2"


def test_that_ingesting_again_changes_nothing_and_a_half_written_line_waits(
    tmp_path: Path, store: Store, claimed: tuple[int, int]
) -> None:
    job_id, run = claimed
    path = tmp_path / "a.jsonl"
    report(path, ("epoch", {"epoch": 1, "logs": {"val_loss": 0.5}}))
    half = b'{"v":1,"seq":2,"type":"epoch","epoch":2,"lo'
    with open(path, "ab") as handle:  # a trainer killed in the middle of a line
        handle.write(half)

    first = ingest.ingest(store, FileSource(path), job_id, 1, run)
    before = state_of(store)
    again = ingest.ingest(store, FileSource(path), job_id, 1, run)

    assert first.events == 1 and again.events == 0
    assert state_of(store) == before
    assert store.query_one("SELECT epoch FROM jobs")["epoch"] == 1
    assert ingest.position(store, job_id, 1) == (path.stat().st_size - len(half), 1)


def test_that_events_of_an_abandoned_attempt_change_nothing(
    tmp_path: Path, store: Store, queue: JobQueue, claimed: tuple[int, int]
) -> None:
    job_id, run = claimed
    queue.on_exit(job_id, 1, 0, interrupted=True)  # its scheduler stopped: requeued
    assert queue.claim("cpu0", None, "host", 1).attempt == 2
    before = state_of(store)
    path = tmp_path / "late.jsonl"
    report(path, ("metric", "loss", 1, 0.5), ("epoch", {"epoch": 3, "logs": {"val_loss": 0.1}}),
           ("error", {"message": "late"}), ("result", {"final": {"val_loss": 0.1}}))

    outcome = ingest.settle(store, FileSource(path), job_id, 1, run)

    assert outcome.events == 4 and not outcome.applied and not outcome.succeeded
    assert state_of(store) == before
    assert ingest.position(store, job_id, 1)[0] == path.stat().st_size  # read once, never again


def test_that_a_model_published_after_the_result_is_recorded_but_lines_that_are_not_events_are_not(
    tmp_path: Path, store: Store, claimed: tuple[int, int]
) -> None:
    job_id, run = claimed
    path = tmp_path / "a.jsonl"
    report(path, ("result", {"final": {}}), ("model", {"path": "m.keras", "url": "gs://b/m", "crc32c": "x"}))
    with open(path, "ab") as handle:
        handle.write(b"not json\n" + json.dumps({"type": "party"}).encode() + b"\n")

    outcome = ingest.settle(store, FileSource(path), job_id, 1, run)

    assert outcome.succeeded and len(outcome.problems) == 2
    assert store.query_one("SELECT model_url FROM runs")["model_url"] == "gs://b/m"
    assert store.query_one("SELECT problems FROM event_ingest")["problems"] == 2


def test_that_the_writer_refuses_unknown_events_and_sends_points_before_anything_else(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    writer = EventWriter(FileSink(path), flush_seconds=3600)
    writer.metric("loss", 1, 0.5)
    writer.emit("epoch", epoch=1, logs={})
    with pytest.raises(events.ProtocolError, match="unknown event type 'party'"):
        writer.emit("party")
    writer.close()

    found, problems, end = FileSource(path).read(0)

    assert [(e.seq, e.type) for e in found] == [(1, "metrics"), (2, "epoch")] and not problems
    assert found[0].fields["points"] == [["loss", 1, 0.5]] and end == path.stat().st_size


def test_that_recovery_ingests_what_a_dead_schedulers_trainers_reported_before_requeueing(
    workspace, store: Store, queue: JobQueue
) -> None:
    """One trainer finished (its result on disk) and one was mid-way when their scheduler died."""
    import subprocess
    import sys

    from standin_model import standin_grid

    from blueno import jobspec
    from blueno.scheduler import recover_if_idle

    finished, interrupted = queue.submit(standin_grid(2)).added
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for job_id, calls in ((finished, [("epoch", {"epoch": 1, "logs": {"val_loss": 0.3}}),
                                      ("result", {"final": {"val_loss": 0.3}})]),
                          (interrupted, [("metric", "loss", 1, 0.7),
                                         ("epoch", {"epoch": 1, "logs": {"val_loss": 0.6}, "checkpoint": "ck"})])):
        job = queue.claim("cpu0", None, "host", 1)
        assert job.id == job_id
        queue.mark_started(job.id, 1, int(gone.stdout), 1.0)  # a trainer that is no longer alive
        report(jobspec.attempt_files(workspace, job.run_id, 1)[1], *calls)

    recovered = recover_if_idle(workspace, store)

    assert recovered.requeued == [interrupted]
    assert queue.get(finished).state == JobState.SUCCEEDED
    job = queue.get(interrupted)
    assert (job.state, job.epoch, job.failures) == (JobState.QUEUED, 1, 0)
    assert metrics.history(store, job.run_id, "loss")[0].tolist() == [1]
    assert ingest.resume_checkpoint(store, interrupted) == "ck"
