"""The run detail's evaluation: figures, confusion matrix, ROC/PR for a binary run, TEST marked, export."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gui_helpers import add_evaluated_runs
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor

from gui.evaluation_models import IS_TEST_ROLE, TEST_LABEL, ConfusionModel, FiguresTableModel, GalleryModel
from gui.run_evaluation import QtRunEvaluation
from gui.workers import wait_for_pool


@pytest.fixture
def evaluated(workspace, store):
    return add_evaluated_runs(workspace, store, 3)


@pytest.fixture
def pane(qtbot, workspace, store, evaluated):
    widget = QtRunEvaluation(workspace, store)
    qtbot.addWidget(widget)
    widget.resize(1100, 1000)
    widget.show()
    yield widget
    wait_for_pool()


def shown(qtbot, pane: QtRunEvaluation, run_id: int) -> None:
    pane.show_run(run_id)
    qtbot.waitUntil(lambda: pane.shown_run_id == run_id, timeout=10_000)


def test_that_a_binary_run_shows_its_confusion_matrix_and_roc_curve(qtbot, pane, store, evaluated) -> None:
    run_ids, _ = evaluated
    shown(qtbot, pane, run_ids[1])
    validation = pane.evaluation["validation"]
    confusion = pane.confusions["validation"]
    assert [[confusion.index(r, c).data() for c in range(2)] for r in range(2)] == [
        [str(v) for v in row] for row in validation["confusion"]
    ]
    assert pane.roc.isVisible() and pane.pr.isVisible()
    curves = [item for item in pane.roc.getPlotItem().listDataItems() if item.name() and "AUC" in item.name()]
    assert [c.name() for c in curves] == [f"validation (AUC {validation['auc']:.3f})"]
    assert np.allclose(curves[0].getData()[0], validation["roc"]["fpr"])
    assert not pane.confusion_boxes["test"].isVisible()  # this run's TEST split was never evaluated
    assert pane.gallery.rowCount() == min(24, validation["n_wrong"])
    assert pane.gallery.index(0, 0).data().startswith(validation["wrong"][0]["id"])


def test_that_test_figures_are_marked_test_everywhere(qtbot, pane, evaluated) -> None:
    run_ids, _ = evaluated
    shown(qtbot, pane, run_ids[0])  # the one evaluated on its TEST split
    test = pane.evaluation["test"]
    assert pane.figures.headerData(1, Qt.Orientation.Horizontal) == TEST_LABEL
    assert pane.figures.index(0, 1).data(IS_TEST_ROLE) is True
    assert pane.confusion_boxes["test"].isVisible()
    assert pane.confusion_boxes["test"].title().startswith("TEST")
    names = [item.name() for item in pane.roc.getPlotItem().listDataItems() if item.name()]
    assert f"TEST (AUC {test['auc']:.3f})" in names
    assert "TEST" in pane.roc.getPlotItem().titleLabel.text
    assert "TEST" in pane.title.text()


def test_that_the_roc_curve_paints(qtbot, pane, evaluated) -> None:
    run_ids, _ = evaluated
    shown(qtbot, pane, run_ids[0])
    blue, orange = QColor("#1565c0"), QColor("#e65100")

    def colours() -> set[int]:
        image = pane.roc.grab().toImage()
        return {image.pixelColor(x, y).rgb() for x in range(0, image.width(), 2) for y in range(0, image.height(), 2)}

    qtbot.waitUntil(lambda: {blue.rgb(), orange.rgb()} <= colours(), timeout=5000)  # the validation and TEST curve


def test_that_export_writes_the_run_report_off_the_gui_thread(qtbot, pane, tmp_path, evaluated) -> None:
    run_ids, _ = evaluated
    shown(qtbot, pane, run_ids[0])
    with qtbot.waitSignal(pane.exported, timeout=20_000) as blocker:
        pane.export_to(tmp_path / "out")
    assert blocker.args[0] == tmp_path / "out" / f"run-{run_ids[0]}.html"
    assert blocker.args[0].is_file()
    assert str(blocker.args[0]) in pane.message.text()


def test_that_the_evaluation_models_pass_the_model_tester(qtmodeltester, qtbot, pane, evaluated) -> None:
    run_ids, _ = evaluated
    shown(qtbot, pane, run_ids[0])
    figures = FiguresTableModel()
    figures.set_evaluation(pane.evaluation)
    confusion = ConfusionModel()
    confusion.set_matrix(pane.evaluation["validation"]["confusion"], pane.evaluation["validation"]["classes"])
    gallery = GalleryModel()
    gallery.set_samples(pane.gallery._samples)
    for model in (figures, confusion, gallery):
        qtmodeltester.check(model, force_py=True)


def test_that_the_confusion_matrix_tints_mistakes_red_and_hits_blue() -> None:
    model = ConfusionModel()
    model.set_matrix([[9, 1], [5, 5]], ["3", "8"])
    hit, miss = model.cell_colour(0, 0), model.cell_colour(1, 0)
    assert hit.blue() > hit.red() and miss.red() > miss.blue()
    assert model.headerData(1, Qt.Orientation.Vertical) == "8"


def test_that_blueno_commands_run_as_a_child_process(qtbot, workspace, evaluated) -> None:
    from gui.cli_process import CliProcess

    cli = CliProcess(workspace)
    with qtbot.waitSignal(cli.finished, timeout=60_000) as blocker:
        assert cli.run(["runs", "ls", "--json"])
        assert not cli.run(["runs", "ls"])  # one command at a time
    ok, command, output = blocker.args
    assert ok and command == "blueno runs ls --json"
    assert {run["id"] for run in json.loads(output)} == set(evaluated[0])


def test_that_a_run_without_a_test_split_says_why_test_is_grey(qtbot, workspace, store) -> None:
    from blueno import BluenoError, runs

    run_ids, _ = add_evaluated_runs(workspace, store, 2, test=False)
    widget = QtRunEvaluation(workspace, store)
    qtbot.addWidget(widget)
    widget.show()
    shown(qtbot, widget, run_ids[0])
    assert not widget.test_button.isEnabled()
    assert "without a held-out test split" in widget.test_button.toolTip()
    assert "Test fraction" in widget.test_button.toolTip()
    with pytest.raises(BluenoError, match="trained without a held-out test split") as raised:
        runs.evaluate_test(workspace, store, [run_ids[0]])  # what Runs → Evaluate… shows: words, before Keras loads
    assert "Test fraction" in str(raised.value)
    wait_for_pool()
