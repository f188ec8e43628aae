"""The scheduler's side of the trainer protocol: write what an attempt reported, once, guarded.

The scheduler is the only writer of a job's progress.  :func:`ingest` reads
the events an attempt appended since the last call (:mod:`blueno.events`) and
applies them in ONE write transaction that also records how far it got
(``event_ingest``), so a scheduler killed at any moment re-reads exactly what
it had not committed: nothing is lost and nothing is applied twice.  Every
write is guarded by the attempt: events of an attempt that no longer owns its
job (requeued, cancelled, reclaimed) are read and skipped, changing nothing.

A ``result`` event commits success, the run's figures, the metric points and
the outbox row together, as the trainer used to in its own transaction.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from blueno.events import Event, Source
from blueno.metrics import write_points
from blueno.queue import finish_success
from blueno.store import Store, add_outbox, dumps, now


@dataclass
class Ingested:
    """What one pass applied."""

    events: int = 0  # events read (applied or not)
    applied: bool = False  # the attempt owned its job: its events were written
    succeeded: bool = False  # a result event committed the job's success
    error: str | None = None  # the last error event's message
    problems: list[str] = field(default_factory=list)  # lines that were not valid events


def position(store: Store, job_id: int, attempt: int) -> tuple[int, int]:
    """(position, last seq) already ingested for this attempt."""
    row = store.query_one("SELECT position, seq FROM event_ingest WHERE job_id = ? AND attempt = ?",
                          (job_id, attempt))
    return (row["position"], row["seq"]) if row else (0, 0)


def resume_checkpoint(store: Store, job_id: int) -> str | None:
    """The checkpoint the latest earlier attempt reported: where a new attempt resumes from."""
    row = store.query_one(
        "SELECT checkpoint FROM event_ingest WHERE job_id = ? AND checkpoint IS NOT NULL "
        "ORDER BY attempt DESC LIMIT 1", (job_id,),
    )
    return row["checkpoint"] if row else None


def ingest(store: Store, source: Source, job_id: int, attempt: int, run_id: int) -> Ingested:
    """Apply the events of (job, attempt) not yet ingested; one transaction, idempotent."""
    start, last_seq = position(store, job_id, attempt)
    found, problems, end = source.read(start)
    outcome = Ingested(events=len(found), problems=problems)
    if end == start:
        return outcome
    with store.write() as conn:
        row = conn.execute("SELECT state, attempt, epoch FROM jobs WHERE id = ?", (job_id,)).fetchone()
        owner = row is not None and row["attempt"] == attempt
        state = row["state"] if owner else None
        apply = _Apply(conn, job_id, attempt, run_id, row["epoch"] if owner else 0)
        for event in found:
            if event.seq and event.seq <= last_seq:
                continue  # sent twice (a transport that retries): already applied
            last_seq = max(last_seq, event.seq)
            if state == "running" or (state == "succeeded" and event.type == "model" and owner):
                outcome.applied = True
                apply.event(event, outcome)
                if outcome.succeeded:
                    state = "succeeded"
        apply.flush()
        conn.execute(
            "INSERT INTO event_ingest (job_id, attempt, position, seq, checkpoint, problems) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, attempt) DO UPDATE SET "
            "position = excluded.position, seq = excluded.seq, "
            "checkpoint = COALESCE(excluded.checkpoint, event_ingest.checkpoint), "
            "problems = event_ingest.problems + excluded.problems",
            (job_id, attempt, end, last_seq, apply.checkpoint, len(problems)),
        )
    return outcome


class _Apply:
    """Turns events into rows inside one transaction (the caller checked the attempt)."""

    def __init__(self, conn: sqlite3.Connection, job_id: int, attempt: int, run_id: int, epoch: int) -> None:
        self.conn, self.job_id, self.attempt, self.run_id = conn, job_id, attempt, run_id
        self.epoch = epoch or 0
        self.points: list[tuple[int, str, int, float | None, float]] = []
        self.checkpoint: str | None = None

    def flush(self) -> None:
        write_points(self.conn, self.points)
        self.points = []

    def event(self, event: Event, outcome: Ingested) -> None:
        getattr(self, f"_{event.type}")(event, event.fields, outcome)

    def _job(self, assignments: str, values: tuple[Any, ...]) -> None:
        self.conn.execute(f"UPDATE jobs SET {assignments} WHERE id = ? AND attempt = ?",
                          (*values, self.job_id, self.attempt))

    def _run(self, assignments: str, values: tuple[Any, ...]) -> None:
        self.conn.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*values, self.run_id))

    def _start(self, event: Event, f: dict[str, Any], outcome: Ingested) -> None:
        if f.get("epochs") is not None:
            self._job("epochs = ?", (int(f["epochs"]),))
        if f.get("params") is not None:
            self._run("params = ?", (dumps(f["params"]),))
        if f.get("dataset"):
            self._run("dataset = ?", (str(f["dataset"]),))
        self._run("started = COALESCE(started, ?)", (event.time,))

    def _metrics(self, event: Event, f: dict[str, Any], outcome: Ingested) -> None:
        for key, step, value in f.get("points") or []:
            self.points.append((self.run_id, str(key), int(step), None if value is None else float(value),
                                event.time))

    def _epoch(self, event: Event, f: dict[str, Any], outcome: Ingested) -> None:
        self.epoch = int(f["epoch"])
        for key, value in (f.get("logs") or {}).items():
            self.points.append((self.run_id, str(key), self.epoch, None if value is None else float(value),
                                event.time))
        if f.get("checkpoint"):
            self.checkpoint = str(f["checkpoint"])
        self._job("epoch = ?", (self.epoch,))
        self._run("epochs_done = ?", (self.epoch,))

    def _error(self, event: Event, f: dict[str, Any], outcome: Ingested) -> None:
        outcome.error = str(f.get("message") or "the trainer reported an error without a message")
        self._job("error = ?", (outcome.error,))

    def _result(self, event: Event, f: dict[str, Any], outcome: Ingested) -> None:
        self.flush()  # the points first: success is committed with every point measured
        epochs = int(f["epochs_done"]) if f.get("epochs_done") is not None else self.epoch
        t = now()
        finish_success(self.conn, self.job_id, self.attempt)
        self._job("epoch = ?", (epochs,))
        self._run(
            "epochs_done = ?, best_epoch = ?, monitor = ?, final = ?, best = ?, evaluation = ?, "
            "model_path = COALESCE(?, model_path), ended = ?, started = COALESCE(started, ?)",
            (epochs, f.get("best_epoch"), f.get("monitor"), dumps(f.get("final") or {}),
             dumps(f.get("best") or {}), dumps(f["evaluation"]) if f.get("evaluation") else None,
             f.get("model_path"), t, event.time),
        )
        add_outbox(self.conn, "run", self.run_id)
        outcome.succeeded = True

    def _model(self, event: Event, f: dict[str, Any], outcome: Ingested) -> None:
        self._run("model_path = COALESCE(model_path, ?), model_url = COALESCE(?, model_url)",
                  (f.get("path"), f.get("url")))


def succeed_without_result(store: Store, job_id: int, attempt: int, run_id: int) -> bool:
    """A command that exited 0 without a ``result`` event succeeded: commit it with its last figures."""
    with store.write() as conn:
        if not finish_success(conn, job_id, attempt):
            return False
        last = {row["key"]: row["value"] for row in conn.execute(
            "SELECT key, value FROM latest_metrics WHERE run_id = ?", (run_id,))}
        conn.execute("UPDATE runs SET final = COALESCE(final, ?), ended = ?, started = COALESCE(started, ?) "
                     "WHERE id = ?", (dumps(last), now(), now(), run_id))
        add_outbox(conn, "run", run_id)
    return True


def settle(store: Store, source: Source, job_id: int, attempt: int, run_id: int) -> Ingested:
    """Ingest everything an ended attempt left (several passes when the file is large)."""
    total = Ingested()
    while True:
        step = ingest(store, source, job_id, attempt, run_id)
        total.events += step.events
        total.applied = total.applied or step.applied
        total.succeeded = total.succeeded or step.succeeded
        total.error = step.error or total.error
        total.problems += step.problems
        if step.events == 0 and not step.problems:
            return total
