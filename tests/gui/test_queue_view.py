"""The queue view: a table model over the jobs, actions on the selection, the scheduler buttons."""

from __future__ import annotations

import sys

import pytest
from gui_helpers import add_runs
from PySide6.QtCore import QItemSelectionModel, Qt
from standin_model import STANDIN, standin_grid

from blueno import actions, datasets
from blueno.queue import JobQueue
from gui.queue_view import TITLES, JobsTableModel
from gui.workers import wait_for_pool


def button(box, text: str):
    return next(b for b in box.buttons() if b.text() == text)


def state_of(view, job_id: int) -> str:
    return view.model.row(view.model.position(job_id))["state"]


def select(view, job_ids: list[int]) -> None:
    selection = view.table.selectionModel()
    selection.clearSelection()
    for job_id in job_ids:
        index = view.model.index(view.model.position(job_id), 0)
        selection.select(
            index, QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
        )


def test_that_the_jobs_model_passes_the_model_tester(qtmodeltester, qtbot, store) -> None:
    add_runs(store, 5, state="queued")
    model = JobsTableModel(store)
    model.refresh()
    qtbot.waitUntil(lambda: model.rowCount() == 5)
    qtmodeltester.check(model, force_py=True)


def test_that_jobs_written_by_another_process_appear_and_change_in_the_table(
    qtbot, window, workspace
) -> None:
    view = window.queue_view
    with workspace.open_store() as other:
        add_runs(other, 3, state="queued")
        qtbot.waitUntil(lambda: view.model.rowCount() == 3, timeout=5000)
        job_id = view.model.keys()[0]
        with other.write() as conn:
            conn.execute(
                "UPDATE jobs SET state = 'running', epoch = 1, epochs = 4, slot = 'cpu0' WHERE id = ?",
                (job_id,),
            )
    qtbot.waitUntil(lambda: state_of(view, job_id) == "running", timeout=5000)
    assert view.model.index(view.model.position(job_id), TITLES.index("Slot")).data() == "cpu0"


def test_that_cancel_and_retry_from_the_view_change_the_selected_jobs(qtbot, window, store) -> None:
    view = window.queue_view
    window.tabs.setCurrentWidget(view)
    add_runs(store, 3, state="queued")
    window.watcher.poke()
    qtbot.waitUntil(lambda: view.model.rowCount() == 3, timeout=5000)
    first, second, third = view.model.keys()
    select(view, [first, second])
    assert view.actions_by_name["cancel"].isEnabled()
    view.actions_by_name["cancel"].trigger()
    qtbot.waitUntil(lambda: state_of(view, first) == state_of(view, second) == "cancelled", timeout=5000)
    assert state_of(view, third) == "queued"
    select(view, [first])
    assert view.actions_by_name["retry"].isEnabled()
    view.actions_by_name["retry"].trigger()
    qtbot.waitUntil(lambda: state_of(view, first) == "queued", timeout=5000)
    select(view, [third])
    view.actions_by_name["hold"].trigger()
    qtbot.waitUntil(lambda: state_of(view, third) == "held", timeout=5000)
    view.actions_by_name["raise"].trigger()
    qtbot.waitUntil(lambda: JobQueue(store).get(third).priority == 1, timeout=5000)


def test_that_selection_survives_sorting_and_updates(qtbot, window, store) -> None:
    view = window.queue_view
    add_runs(store, 4, state="queued")
    window.watcher.poke()
    qtbot.waitUntil(lambda: view.model.rowCount() == 4, timeout=5000)
    target = view.model.keys()[1]
    select(view, [target])
    view.table.sortByColumn(0, Qt.SortOrder.DescendingOrder)
    assert view.selected_ids() == [target]


@pytest.fixture
def standin_workspace(workspace, store, monkeypatch):
    """The demo dataset and the stand-in trainer (a fast subprocess speaking the trainer's contract)."""
    datasets.make_demo(workspace, store)
    monkeypatch.setenv("BLUENO_TRAINER", f"{sys.executable} {STANDIN}")
    (workspace.root / "settings.toml").write_text("[scheduler]\nslots = 2\n")
    return workspace


def test_that_the_in_process_scheduler_runs_enqueued_jobs_to_success(qtbot, window, store, standin_workspace):
    grid = standin_grid(3, dataset="digits", duration=0.3)
    JobQueue(store).submit(grid, resolve=actions.dataset_resolver(store, standin_workspace))
    view = window.queue_view
    view.actions_by_name["start"].trigger()
    qtbot.waitUntil(lambda: window.scheduler.status.state == "running", timeout=10_000)
    assert window.scheduler.status.slots == ("cpu0", "cpu1")
    qtbot.waitUntil(
        lambda: view.model.rowCount() == 3 and all(r["state"] == "succeeded" for r in view.model.rows()),
        timeout=30_000,
    )
    view.actions_by_name["stop"].trigger()
    qtbot.waitUntil(lambda: window.scheduler.status.state == "stopped", timeout=20_000)
    wait_for_pool()


def test_that_cancelling_a_running_job_stops_its_trainer(qtbot, window, store, standin_workspace) -> None:
    grid = standin_grid(1, dataset="digits", duration=60.0, steps=60)
    JobQueue(store).submit(grid, resolve=actions.dataset_resolver(store, standin_workspace))
    view = window.queue_view
    view.actions_by_name["start"].trigger()
    qtbot.waitUntil(lambda: [r["state"] for r in view.model.rows()] == ["running"], timeout=15_000)
    select(view, view.model.keys())
    view.actions_by_name["cancel"].trigger()  # Delete on a running training asks first
    qtbot.waitUntil(lambda: view.confirm.isVisible(), timeout=5000)
    assert "training now" in view.confirm.text()
    button(view.confirm, "Keep training").click()
    wait_for_pool()  # a cancel, had one been sent, would have been written by now
    assert [str(job.state) for job in JobQueue(store).jobs()] == ["running"]
    view.actions_by_name["cancel"].trigger()
    qtbot.waitUntil(lambda: view.confirm.isVisible(), timeout=5000)
    button(view.confirm, "Cancel the training").click()
    qtbot.waitUntil(lambda: [r["state"] for r in view.model.rows()] == ["cancelled"], timeout=30_000)
    view.actions_by_name["stop"].trigger()
    qtbot.waitUntil(lambda: window.scheduler.status.state == "stopped", timeout=20_000)
    wait_for_pool()


def test_that_queued_jobs_are_named_by_the_parameters_that_differ_and_the_time_left_is_shown(
    qtbot, window, workspace, store
) -> None:
    from test_estimate import grid_text, run_grid_with_known_times
    from training_helpers import threes_and_eights

    from blueno.grid import parse_grid

    workspace.settings_path.write_text("[scheduler]\nslots = 1\n")
    dataset = threes_and_eights(workspace, store)
    run_grid_with_known_times(workspace, store, dataset, startup=6.0, per_epoch=2.0, epochs=3)
    JobQueue(store).submit(parse_grid(grid_text(dataset, 5, units="[8, 24, 40]"), workspace=workspace),
                           resolve=lambda ref: datasets.resolve(store, workspace, ref).ref)
    view = window.queue_view
    window.watcher.poke()
    qtbot.waitUntil(lambda: view.model.rowCount() == 5, timeout=5000)
    column = TITLES.index("Parameters")
    names = {view.model.row(p)["state"] + " " + view.model.index(p, column).data() for p in range(5)}
    assert names == {"succeeded hidden_units=16", "succeeded hidden_units=32", "queued hidden_units=8",
                     "queued hidden_units=24", "queued hidden_units=40"}
    # Three queued trainings of 6 s start-up + 5 epochs x 2 s, one at a time: 48 s.
    qtbot.waitUntil(lambda: "0:48" in view.remaining.text(), timeout=5000)
    assert view.remaining.text() == "left: about 0:48 on 1 slot"
    assert "finished run" in view.remaining.toolTip()
