"""The time estimate, checked against runs whose start-up and epoch times are known."""

from __future__ import annotations

import pytest
from training_helpers import threes_and_eights

from blueno import actions
from blueno.estimate import estimate, makespan, measurements, plan_grid, plan_queue
from blueno.grid import parse_grid
from blueno.queue import JobQueue
from blueno.store import Store


def grid_text(dataset: str, epochs: int, units: str = "[16, 32]", model: str = "mlp") -> str:
    return (f'name = "g"\ndataset = "{dataset}"\n[params]\nepochs = {epochs}\n'
            f"[models.{model}]\n" + (f"hidden_units = {units}\n" if model == "mlp" else ""))


def run_grid_with_known_times(workspace, store: Store, dataset: str, startup: float, per_epoch: float,
                              epochs: int) -> None:
    """Queue a two-run grid and record it as the scheduler would: started, one loss per epoch, ended."""
    queue = JobQueue(store)
    grid = parse_grid(grid_text(dataset, epochs), workspace=workspace)
    queue.submit(grid, resolve=actions.dataset_resolver(store, workspace))
    for number in range(2):
        job = queue.claim(f"cpu{number}", None, "h", 1)
        t0 = 1000.0 * (number + 1)
        with store.write() as conn:
            for epoch in range(epochs):
                conn.execute("INSERT INTO metrics (run_id, key, step, value, time) VALUES (?, 'loss', ?, 0.5, ?)",
                             (job.run_id, epoch, t0 + startup + per_epoch * (epoch + 1)))
            end = t0 + startup + per_epoch * epochs
            conn.execute("UPDATE jobs SET state = 'succeeded', started = ?, ended = ? WHERE id = ?", (t0, end, job.id))
            conn.execute("UPDATE runs SET epochs_done = ?, started = ?, ended = ? WHERE id = ?",
                         (epochs, t0, end, job.run_id))


def test_that_start_up_and_epoch_times_are_measured_apart(workspace, store) -> None:
    dataset = threes_and_eights(workspace, store)
    run_grid_with_known_times(workspace, store, dataset, startup=6.0, per_epoch=2.0, epochs=3)
    measured = measurements(store)
    assert len(measured) == 2
    for m in measured:
        assert m.model == "mlp" and m.shape == (8, 8)
        assert m.startup == pytest.approx(6.0) and m.per_epoch == pytest.approx(2.0)


def test_that_the_estimate_matches_known_durations_on_the_configured_slots(workspace, store) -> None:
    dataset = threes_and_eights(workspace, store)
    new = parse_grid(grid_text(dataset, 10, units="[8, 16, 32, 64]"), workspace=workspace)
    assert estimate(store, plan_grid(store, new.configs), slots=2) is None  # nothing has run here yet
    run_grid_with_known_times(workspace, store, dataset, startup=6.0, per_epoch=2.0, epochs=3)
    # Four trainings of 6 s + 10 epochs x 2 s = 26 s each, two at a time: 52 s (not 4 x 26, not 4 x 20).
    for slots, expected in ((2, 52.0), (1, 104.0), (4, 26.0)):
        found = estimate(store, plan_grid(store, new.configs), slots=slots)
        assert found is not None and found.seconds == pytest.approx(expected)
        assert found.low <= found.seconds <= found.high and found.slots == slots
    assert "0:52" in estimate(store, plan_grid(store, new.configs), slots=2).describe()


def test_that_a_model_never_run_here_gets_a_wide_range(workspace, store) -> None:
    dataset = threes_and_eights(workspace, store)
    run_grid_with_known_times(workspace, store, dataset, startup=6.0, per_epoch=2.0, epochs=3)
    other = parse_grid(grid_text(dataset, 10, model="cnn2d"), workspace=workspace)
    found = estimate(store, plan_grid(store, other.configs), slots=1)
    assert found is not None and found.low < found.seconds / 1.5 and found.high > found.seconds * 1.5
    assert "range is wide" in found.basis


def test_that_the_queue_estimate_shrinks_as_runs_finish(workspace, store) -> None:
    dataset = threes_and_eights(workspace, store)
    run_grid_with_known_times(workspace, store, dataset, startup=6.0, per_epoch=2.0, epochs=3)
    queue = JobQueue(store)
    queue.submit(parse_grid(grid_text(dataset, 5, units="[8, 24, 40]"), workspace=workspace),
                 resolve=actions.dataset_resolver(store, workspace))
    before = estimate(store, plan_queue(store), slots=1)
    assert before is not None and before.seconds == pytest.approx(3 * 16.0)
    job = queue.claim("cpu0", None, "h", 1)
    with store.write() as conn:
        conn.execute("UPDATE jobs SET epoch = 4 WHERE id = ?", (job.id,))  # 1 epoch left, start-up behind it
    assert estimate(store, plan_queue(store), slots=1).seconds == pytest.approx(2 * 16.0 + 2.0)


def test_that_the_makespan_puts_the_longest_first() -> None:
    assert makespan([3, 3, 2, 2, 2], 2) == 7
    assert makespan([], 3) == 0
