"""What the displays read: progress per slot, best runs, time estimates."""

from __future__ import annotations

from standin_model import standin_grid

from blueno.monitor import best_runs, estimate_seconds, is_maximized, progress
from blueno.queue import JobQueue, JobState
from blueno.store import Store, dumps


def test_that_progress_counts_jobs_and_shows_each_busy_slot(queue: JobQueue, store: Store) -> None:
    result = queue.submit(standin_grid(3))
    job = queue.claim("cpu1", None, "h", 1)
    with store.write() as conn:
        conn.execute("UPDATE jobs SET epoch = 2, epochs = 5 WHERE id = ?", (job.id,))
        conn.execute(
            "INSERT INTO latest_metrics (run_id, key, step, value, time) VALUES (?, 'val_accuracy', 2, 0.75, 0)",
            (job.run_id,),
        )
    snap = progress(store, result.experiment_id)
    assert snap.total == 3 and snap.finished == 0
    assert snap.counts[JobState.RUNNING] == 1 and snap.counts[JobState.QUEUED] == 2
    (slot,) = snap.running
    assert (slot.slot, slot.job_id, slot.epoch, slot.epochs) == ("cpu1", job.id, 2, 5)
    assert (slot.metric, slot.value) == ("val_accuracy", 0.75)


def _finish(store: Store, run_id: int, monitor: str, value: float, seconds: float, epochs: int) -> None:
    with store.write() as conn:
        conn.execute(
            "UPDATE runs SET monitor = ?, best = ?, started = 100, ended = ?, epochs_done = ? WHERE id = ?",
            (monitor, dumps({monitor: value}), 100 + seconds, epochs, run_id),
        )


def test_that_best_runs_put_the_lowest_loss_or_highest_accuracy_first(queue: JobQueue, store: Store) -> None:
    result = queue.submit(standin_grid(3))
    runs = [job.run_id for job in queue.jobs()]
    for run_id, loss in zip(runs, (0.5, 0.1, 0.3), strict=True):
        _finish(store, run_id, "val_loss", loss, 10, 5)
    assert [r.run_id for r in best_runs(store, result.experiment_id)] == [runs[1], runs[2], runs[0]]
    assert is_maximized("val_accuracy") and not is_maximized("val_loss")


def test_that_the_estimate_uses_the_per_epoch_pace_of_past_runs(queue: JobQueue, store: Store) -> None:
    grid = standin_grid(4, epochs=3)
    assert estimate_seconds(store, grid) is None  # nothing has run here yet
    queue.submit(standin_grid(1, name="earlier"))
    (earlier,) = queue.jobs()
    _finish(store, earlier.run_id, "val_loss", 0.2, seconds=20, epochs=10)  # 2 s per epoch
    assert estimate_seconds(store, grid) == 4 * 3 * 2.0
