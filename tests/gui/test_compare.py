"""Comparison of selected runs, and parallel coordinates whose brushing filters the runs table."""

from __future__ import annotations

from gui_helpers import add_evaluated_runs, add_runs
from PySide6.QtCore import QItemSelectionModel, QPointF, Qt

from blueno import runs
from blueno.store import dumps
from gui.compare import BEST_MARK, BEST_ROLE, DIFFERS_ROLE, ComparisonModel
from gui.parallel_coordinates import scale_axis


def select(view, count: int) -> None:
    for row in range(count):
        view.table.selectionModel().select(
            view.proxy.index(row, 0), QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
        )


def loaded_runs_view(qtbot, window, count: int):
    view = window.runs_view
    window.tabs.setCurrentWidget(view)
    window.watcher.poke()
    qtbot.waitUntil(lambda: view.model.rowCount() == count, timeout=10_000)
    return view


def row_of(model: ComparisonModel, name: str) -> int:
    return next(r for r in range(model.rowCount()) if model.headerData(r, Qt.Orientation.Vertical) == name)


def test_that_comparing_selected_runs_highlights_differing_parameters(qtbot, window, workspace, store) -> None:
    add_evaluated_runs(workspace, store, 3)
    view = loaded_runs_view(qtbot, window, 3)
    select(view, 3)
    view.show_comparison()
    model = view.compare.model
    qtbot.waitUntil(lambda: model.columnCount() == 3, timeout=10_000)
    learning_rate, seed = row_of(model, "learning_rate"), row_of(model, "seed")
    assert model.index(learning_rate, 0).data(DIFFERS_ROLE) is True
    assert model.index(seed, 0).data(DIFFERS_ROLE) is False
    assert model.index(learning_rate, 0).data(Qt.ItemDataRole.BackgroundRole) is not None
    assert model.index(seed, 0).data(Qt.ItemDataRole.BackgroundRole) is None
    assert "parameters differ" in view.compare.hint.text()


def test_that_the_best_metric_is_marked_and_test_rows_are_never_ranked(qtbot, workspace, store) -> None:
    run_ids, _ = add_evaluated_runs(workspace, store, 3)
    model = ComparisonModel()
    comparison = runs.compare_runs(store, run_ids)
    model.set_comparison(comparison)
    accuracy = row_of(model, "validation.accuracy")
    values = comparison.metrics[accuracy - len(comparison.params)]["values"]
    best = values.index(max(values))
    assert model.index(accuracy, best).data(BEST_ROLE) is True
    assert model.index(accuracy, best).data().endswith(BEST_MARK)
    assert sum(model.index(accuracy, c).data(BEST_ROLE) for c in range(3)) == 1
    test_row = row_of(model, "TEST accuracy")
    assert not any(model.index(test_row, c).data(BEST_ROLE) for c in range(3))


def test_that_the_comparison_model_passes_the_model_tester(qtmodeltester, workspace, store) -> None:
    run_ids, _ = add_evaluated_runs(workspace, store, 3)
    model = ComparisonModel()
    model.set_comparison(runs.compare_runs(store, run_ids))
    qtmodeltester.check(model, force_py=True)


def test_that_brushing_an_axis_filters_the_runs_table(qtbot, window, workspace, store) -> None:
    run_ids, _ = add_evaluated_runs(workspace, store, 4)
    view = loaded_runs_view(qtbot, window, 4)
    view.views.setCurrentWidget(view.parallel)
    plot = view.parallel.plot
    qtbot.waitUntil(lambda: plot.coords is not None, timeout=10_000)
    assert plot.names == ["learning_rate", "units", "val_loss"]
    with qtbot.waitSignal(view.parallel.brushed) as blocker:
        plot.brush("units", 0.9, 1.0)  # the largest value: units=48, run 3 only
    assert blocker.args[0] == [run_ids[2]]
    assert view.proxy.rowCount() == 1 and view.proxy.index(0, 0).data() == str(run_ids[2])
    assert "1 of 4 runs" in view.count.text() and view.unbrush.isVisible()

    plot.brush("learning_rate", 0.5, 1.0)  # the two largest learning rates (log axis), and units=48: nobody
    assert view.proxy.rowCount() == 0
    plot.brush("units", None)
    assert sorted(int(view.proxy.index(r, 0).data()) for r in range(view.proxy.rowCount())) == run_ids[:2]
    view.unbrush.click()
    assert view.proxy.rowCount() == 4 and not view.unbrush.isVisible()


def test_that_dragging_along_an_axis_brushes_it(qtbot, window, workspace, store) -> None:
    add_evaluated_runs(workspace, store, 4)
    view = loaded_runs_view(qtbot, window, 4)
    view.views.setCurrentWidget(view.parallel)
    plot = view.parallel.plot
    qtbot.waitUntil(lambda: plot.coords is not None, timeout=10_000)
    box = plot.getPlotItem().getViewBox()
    top = plot.mapFromScene(box.mapViewToScene(QPointF(1, 1.0)))
    bottom = plot.mapFromScene(box.mapViewToScene(QPointF(1, 0.6)))
    with qtbot.waitSignal(view.parallel.brushed, timeout=3000) as blocker:
        qtbot.mousePress(plot.viewport(), Qt.MouseButton.LeftButton, pos=top)
        for step in range(1, 11):
            qtbot.mouseMove(plot.viewport(), top + (bottom - top) * step / 10)
        qtbot.mouseRelease(plot.viewport(), Qt.MouseButton.LeftButton, pos=bottom)
    low, high = plot.brushes[1].range
    assert 0.55 < low < 0.65 and 0.95 < high <= 1.02
    assert blocker.args[0] is not None and view.proxy.rowCount() == len(blocker.args[0])


def test_that_axes_are_scaled_linear_log_and_categorical() -> None:
    heights, ticks = scale_axis({"name": "lr", "values": [1e-4, 1e-3, 1e-2], "categorical": False, "log": True})
    assert heights.tolist() == [0.0, 0.5, 1.0] and ticks[1][1] == "0.001"
    heights, ticks = scale_axis(
        {"name": "m", "values": ["a", "b", "a"], "categorical": True, "categories": ["a", "b"], "positions": [0, 1, 0]}
    )
    assert heights.tolist() == [0.0, 1.0, 0.0] and ticks == [(0.0, "a"), (1.0, "b")]


def test_that_ensembling_selected_runs_records_a_new_run(qtbot, window, workspace, store) -> None:
    add_evaluated_runs(workspace, store, 3)
    view = loaded_runs_view(qtbot, window, 3)
    select(view, 2)
    with qtbot.waitSignal(view.cli.finished, timeout=60_000) as blocker:
        view.actions_by_name["ensemble"].trigger()
    assert blocker.args[0], blocker.args[2]
    qtbot.waitUntil(lambda: view.model.rowCount() == 4, timeout=10_000)
    ensemble = store.query_one("SELECT * FROM runs WHERE kind = 'ensemble'")
    assert ensemble["model"] == "ensemble"


def test_that_tied_best_values_are_all_starred_and_training_figures_never(qtbot, store) -> None:
    run_ids = add_runs(store, 3)  # every run's best epoch has val_loss 0.4: a three-way tie
    with store.write() as conn:
        for i, run_id in enumerate(run_ids):
            conn.execute("UPDATE runs SET best = ? WHERE id = ?",
                         (dumps({"val_loss": 0.4, "loss": 0.1 + i / 10}), run_id))
    model = ComparisonModel()
    model.set_comparison(runs.compare_runs(store, run_ids))
    val_loss, loss = row_of(model, "val_loss"), row_of(model, "loss")
    assert [model.index(val_loss, c).data(BEST_ROLE) for c in range(3)] == [True, True, True]
    assert not any(model.index(loss, c).data(BEST_ROLE) for c in range(3))  # training: never "best on validation"
    assert not any(model.index(loss, c).data().endswith(BEST_MARK) for c in range(3))


def test_that_a_numeric_parameter_only_some_runs_have_is_ordered_by_value(store) -> None:
    run_ids = add_runs(store, 3)
    with store.write() as conn:
        for run_id, filters in zip(run_ids, (16, 8, None), strict=True):
            extra = {} if filters is None else {"filters": filters}
            conn.execute("UPDATE runs SET params = ? WHERE id = ?", (dumps({"units": 8, **extra}), run_id))
    experiment = store.query("SELECT experiment_id FROM runs WHERE id = ?", (run_ids[0],))[0][0]
    coords = runs.parallel_coordinates(store, experiment)
    axis = next(a for a in coords.axes if a["name"] == "filters")
    assert axis["categorical"] and axis["categories"] == [8, 16, None]  # as numbers: 8 below 16, not "16" < "8"


def test_that_the_parallel_coordinates_caption_follows_the_state(qtbot, window, store) -> None:
    view = window.runs_view
    window.tabs.setCurrentWidget(view)
    view.views.setCurrentWidget(view.parallel)
    parallel = view.parallel
    qtbot.waitUntil(lambda: parallel.loaded, timeout=10_000)
    assert "No experiment has finished runs" in parallel.message.text()
    add_runs(store, 1)  # one run: nothing varies
    parallel.refresh(force=True)
    qtbot.waitUntil(lambda: "no hyperparameter varies" in parallel.message.text(), timeout=10_000)
    add_runs(store, 3)  # a second experiment whose learning rate and units vary
    parallel.refresh(force=True)
    qtbot.waitUntil(lambda: parallel.experiment.count() == 2, timeout=10_000)
    parallel.experiment.setCurrentIndex(parallel.experiment.findText("2 · test"))
    parallel.refresh(force=True)
    qtbot.waitUntil(lambda: "3 finished runs, 2 varying" in parallel.message.text(), timeout=10_000)
    assert "No experiment" not in parallel.message.text() and "no hyperparameter" not in parallel.message.text()
    parallel.plot.brush("units", 0.9, 1.0)
    assert parallel.message.text().startswith("1 of 3 runs")
    parallel.plot.clear_brushes()
    assert parallel.message.text().startswith("3 finished runs")
    parallel.experiment.setCurrentIndex(parallel.experiment.findText("1 · test"))
    parallel.refresh(force=True)
    qtbot.waitUntil(lambda: "no hyperparameter varies" in parallel.message.text(), timeout=10_000)
