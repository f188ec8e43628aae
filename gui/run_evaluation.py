"""A run's evaluation: curves, figures, confusion matrices, ROC and PR curves, misclassified samples.

Everything shown is the saved model's evaluation as :mod:`blueno.runs`
returns it, read off the GUI thread; the held-out test split's figures,
once evaluated (``blueno runs test``, launched from here as a child process),
appear beside the validation ones and are labelled ``TEST`` in every table
and plot.  **Export report…** writes :func:`blueno.report.write_run_report`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListView,
    QPushButton,
    QScrollArea,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from blueno import BluenoError, metrics, report, runs
from blueno.monitor import is_maximized
from blueno.store import Store
from blueno.workspace import Workspace
from gui.cli_process import CliProcess
from gui.evaluation_models import FIGURES, TEST_TEXT, ConfusionModel, FiguresTableModel, GalleryModel
from gui.workers import Fetcher, submit

VALIDATION_COLOUR = "#1565c0"
TRAIN_COLOUR = "#757575"
TEST_COLOUR = TEST_TEXT.name()


@dataclass
class RunEvaluation:
    """What the evaluation pane shows of one run (read on a worker thread)."""

    run_id: int
    stamp: tuple  # changes when anything shown here changes
    run: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    gallery: list[Any] = field(default_factory=list)
    unchanged: bool = False
    missing: bool = False


def _stamp(run: dict[str, Any]) -> tuple:
    evaluation = run.get("evaluation") or {}
    return (run.get("state"), run.get("epochs_done"), run.get("best_epoch"),
            *((evaluation.get(s) or {}).get("evaluated") for s in ("validation", "test")))


def curve_keys(monitor: str | None) -> tuple[str, str]:
    """The train and validation keys of the monitored metric (``val_loss`` → ``loss``, ``val_loss``)."""
    name = (monitor or "val_loss").removeprefix("val_")
    return name, f"val_{name}"


def read_evaluation(store: Store, workspace: Workspace, run_id: int, shown: tuple | None) -> RunEvaluation:
    """The run, its monitored curves and its misclassified samples; only a stamp if nothing changed."""
    try:
        run = runs.get_run(store, run_id)
    except BluenoError:  # the run is gone: say so
        return RunEvaluation(run_id, (), missing=True)
    stamp = _stamp(run)
    if stamp == shown:
        return RunEvaluation(run_id, stamp, unchanged=True)
    curves = {key: metrics.history(store, run_id, key) for key in curve_keys(run.get("monitor"))}
    evaluation = run.get("evaluation") or {}
    gallery = runs.gallery(workspace, store, run_id, wrong=True) if evaluation.get("validation") else []
    return RunEvaluation(run_id, stamp, run, curves, gallery)


def _plot(title: str, x_label: str, y_label: str) -> pg.PlotWidget:
    widget = pg.PlotWidget(background="w")
    widget.setTitle(title, color="#202020", size="10pt")
    widget.setLabel("bottom", x_label)
    widget.setLabel("left", y_label)
    widget.showGrid(x=True, y=True, alpha=0.2)
    widget.addLegend(offset=(-10, -10), labelTextColor="#202020")  # no background: curves show through
    widget.setMinimumSize(280, 230)
    for side in ("left", "bottom"):
        widget.getAxis(side).enableAutoSIPrefix(False)
    return widget


def _xy(values: list[Any]) -> np.ndarray:
    return np.asarray([math.nan if v is None else v for v in values], dtype=float)


class QtRunEvaluation(QWidget):
    """The evaluation of the current run; ``show_run`` picks it, ``refresh`` re-reads after changes."""

    exported = Signal(object)  # the report's path
    status_message = Signal(str)

    def __init__(self, workspace: Workspace, store: Store, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._workspace, self._store = workspace, store
        self._run_id: int | None = None
        self._shown: RunEvaluation | None = None

        self.title = QLabel("Select a run to see its evaluation.", self)
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.title.setWordWrap(True)
        self.test_button = QPushButton("Evaluate on TEST split", self)
        self.test_button.setToolTip("blueno runs test RUN: reload the saved model and score the held-out test split")
        self.test_button.clicked.connect(self.evaluate_test)
        self.export_button = QPushButton("Export report…", self)
        self.export_button.setToolTip("Write a self-contained HTML report of this run (and a CSV)")
        self.export_button.clicked.connect(self.choose_and_export)
        self.message = QLabel(self)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.setWordWrap(True)

        self.figures = FiguresTableModel(self)
        self.figures_view = self._table(self.figures)
        self.curves = _plot("Training curves", "epoch", "")
        self.confusions = {split: ConfusionModel(self) for split in ("validation", "test")}
        self.confusion_views = {split: self._table(model, square=True) for split, model in self.confusions.items()}
        self.confusion_boxes = {
            "validation": self._box("Confusion matrix (validation) — rows: true, columns: predicted",
                                    self.confusion_views["validation"]),
            "test": self._box("TEST confusion matrix (held out)", self.confusion_views["test"], test=True),
        }
        self.roc = _plot("ROC", "false positive rate", "true positive rate")
        self.pr = _plot("Precision-recall", "recall", "precision")
        for plot in (self.roc, self.pr):
            plot.setXRange(0, 1)
            plot.setYRange(0, 1.02)
        self.gallery = GalleryModel(self)
        self.gallery_view = QListView(self)
        self.gallery_view.setModel(self.gallery)
        self.gallery_view.setViewMode(QListView.ViewMode.IconMode)
        self.gallery_view.setIconSize(QSize(64, 64))
        self.gallery_view.setGridSize(QSize(96, 108))
        self.gallery_view.setResizeMode(QListView.ResizeMode.Adjust)
        self.gallery_view.setMovement(QListView.Movement.Static)
        self.gallery_view.setWrapping(True)
        self.gallery_view.setMinimumHeight(120)
        self.gallery_box = self._box("Misclassified samples (validation)", self.gallery_view)

        self.content = content = QWidget(self)
        grid = QGridLayout(content)
        self.figures_box = self._box("Figures of the saved model", self.figures_view)
        grid.addWidget(self.figures_box, 0, 0)
        grid.addWidget(self.curves, 0, 1)
        grid.addWidget(self.confusion_boxes["validation"], 1, 0)
        grid.addWidget(self.confusion_boxes["test"], 1, 1)
        grid.addWidget(self.roc, 2, 0)
        grid.addWidget(self.pr, 2, 1)
        grid.addWidget(self.gallery_box, 3, 0, 1, 2)
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 1)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(content)
        header = QHBoxLayout()
        header.addWidget(self.title, 1)
        header.addWidget(self.test_button)
        header.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(header)
        layout.addWidget(self.message)
        layout.addWidget(scroll, 1)

        self.cli = CliProcess(workspace, self)
        self.cli.finished.connect(self._on_cli_finished)
        self._fetcher = Fetcher(self._plan, self)
        self._fetcher.ready.connect(self._on_evaluation)
        self._set_enabled(False)
        self._clear()

    # -- building --------------------------------------------------------------

    def _table(self, model: Any, square: bool = False) -> QTableView:
        view = QTableView(self)
        view.setModel(model)
        view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        view.verticalHeader().setDefaultSectionSize(22)
        view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        if square:
            view.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        view.setMinimumHeight(230 if square else 22 * (len(FIGURES) + 2) + 4)
        return view

    def _box(self, title: str, widget: QWidget, test: bool = False) -> QGroupBox:
        box = QGroupBox(title, self)
        if test:
            box.setStyleSheet(f"QGroupBox {{ color: {TEST_COLOUR}; font-weight: bold; }}")
        layout = QVBoxLayout(box)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(widget)
        return box

    # -- reading ---------------------------------------------------------------

    def show_run(self, run_id: int | None) -> None:
        if run_id == self._run_id:
            return
        self._run_id = run_id
        self._shown = None
        self._clear()
        self._set_enabled(False)
        self.refresh()

    def refresh(self) -> None:
        if self._run_id is not None:
            self._fetcher.request()  # a cheap read when nothing changed (see read_evaluation)

    def _plan(self) -> Any:
        run_id = self._run_id
        shown = self._shown.stamp if self._shown is not None and self._shown.run_id == run_id else None
        return lambda: read_evaluation(self._store, self._workspace, run_id, shown)

    def _on_evaluation(self, result: RunEvaluation) -> None:
        if result.run_id != self._run_id or result.unchanged:
            return
        self._shown = result
        if result.missing:
            self._clear(f"Run {result.run_id} is gone.")
            return
        self._show(result)

    # -- showing ---------------------------------------------------------------

    @property
    def shown_run_id(self) -> int | None:
        """The run whose evaluation is on screen (None until its read came back)."""
        return self._shown.run_id if self._shown is not None else None

    @property
    def evaluation(self) -> dict[str, Any]:
        return (self._shown.run.get("evaluation") or {}) if self._shown else {}

    def has_test(self) -> bool:
        return isinstance(self.evaluation.get("test"), dict)

    def _clear(self, text: str = "Select a run to see its evaluation.") -> None:
        self.title.setText(text)
        self.figures.set_evaluation(None)
        for model in self.confusions.values():
            model.set_matrix(None, None)
        self.confusion_boxes["test"].hide()
        for plot in (self.curves, self.roc, self.pr):
            plot.clear()
        self.roc.hide()
        self.pr.hide()
        self.gallery.set_samples([])

    def _set_enabled(self, finished: bool) -> None:
        self.export_button.setEnabled(finished)
        split = self.evaluation.get("split") or {}
        self.test_button.setEnabled(finished and bool(split.get("test")) and not self.cli.busy)
        if not finished:
            why = "The run has not finished training: its saved model is evaluated once it has."
        elif not split.get("test"):
            why = ("This run was trained without a held-out test split. Set a Test fraction in the Grid builder "
                   "and train again to evaluate on one.")
        elif self.cli.busy:
            why = "Another evaluation is running; try again when it ends."
        else:
            why = "blueno runs test RUN: reload the saved model and score the held-out test split"
        self.test_button.setToolTip(why)
        self.test_button.setText("Re-evaluate TEST split" if self.has_test() else "Evaluate on TEST split")

    def _show(self, result: RunEvaluation) -> None:
        run, evaluation = result.run, result.run.get("evaluation") or {}
        validation, test = evaluation.get("validation"), evaluation.get("test")
        split = evaluation.get("split") or {}
        head = f"<b>Run {run['id']}</b> · {run['model']} · {run['dataset']}"
        if validation:
            head += (f" · saved model of epoch {validation.get('epoch', run.get('best_epoch'))}"
                     f" · validation {split.get('validation', validation.get('n'))} samples")
            if split.get("test"):
                head += (f" · <span style='color:{TEST_COLOUR}'><b>TEST</b> {split['test']} held out"
                         + (", evaluated</span>" if test else ", not evaluated yet</span>"))
        elif run.get("best"):
            head += (" · <i>no evaluation of the saved model: it was trained before Blueno evaluated models, "
                     "or its evaluation failed (see its log)</i>")
        else:
            head += f" · no evaluation yet ({run.get('state') or 'unknown'})"
        for box in (self.figures_box, self.confusion_boxes["validation"], self.gallery_box):
            box.setVisible(bool(validation))
        self.title.setText(head)
        self.figures.set_evaluation(evaluation)
        self._show_curves(run, result.curves)
        for name, part in (("validation", validation), ("test", test)):
            self.confusions[name].set_matrix((part or {}).get("confusion"), (part or {}).get("classes"))
        self.confusion_boxes["test"].setVisible(bool(test))
        self._show_binary(validation or {}, test if isinstance(test, dict) else None)
        self.gallery.set_samples(result.gallery)
        shown = len(result.gallery)
        per_row = max(1, (self.gallery_view.viewport().width() or 900) // 96)
        self.gallery_view.setMinimumHeight(max(120, -(-shown // per_row) * 108 + 12))
        wrong = (validation or {}).get("n_wrong", shown)
        self.gallery_box.setTitle(f"Misclassified samples (validation): {shown} of {wrong}, surest mistakes first")
        self._set_enabled(bool(run.get("best") or validation))

    def _show_curves(self, run: dict[str, Any], curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        self.curves.clear()
        train, val = curve_keys(run.get("monitor"))
        self.curves.setLabel("left", train)
        for key, colour, style in ((train, TRAIN_COLOUR, Qt.PenStyle.SolidLine),
                                   (val, VALIDATION_COLOUR, Qt.PenStyle.DashLine)):
            steps, values = curves.get(key, (np.array([]), np.array([])))
            if len(steps):
                label = "train" if key == train else "validation"
                self.curves.plot(steps, values, pen=pg.mkPen(colour, width=2, style=style), name=label,
                                 connect="finite")
        legend = self.curves.getPlotItem().legend
        if legend is not None:  # mid-top over falling curves (a loss), mid-bottom over rising ones
            falling = not is_maximized(train)
            edge = 0 if falling else 1
            legend.anchor((0.5, edge), (0.5, edge), offset=(0, 10 if falling else -10))
        if run.get("best_epoch") is not None:
            self.curves.addItem(pg.InfiniteLine(
                run["best_epoch"], angle=90, pen=pg.mkPen("#2e7d32", width=1, style=Qt.PenStyle.DotLine),
                label="saved epoch", labelOpts={"position": 0.9, "color": "#2e7d32"}))
        self.curves.setVisible(run.get("kind") != "ensemble")

    def _show_binary(self, validation: dict[str, Any], test: dict[str, Any] | None) -> None:
        binary = bool(validation.get("roc"))
        self.roc.setVisible(binary)
        self.pr.setVisible(binary)
        self.roc.clear()
        self.pr.clear()
        if not binary:
            return
        self.roc.plot([0, 1], [0, 1], pen=pg.mkPen("#bdbdbd", style=Qt.PenStyle.DashLine))
        parts = [("validation", validation, VALIDATION_COLOUR, Qt.PenStyle.SolidLine)]
        if test and test.get("roc"):
            parts.append(("TEST", test, TEST_COLOUR, Qt.PenStyle.DashLine))
        auc_text, ap_text = [], []
        for name, part, colour, style in parts:
            pen = pg.mkPen(colour, width=2, style=style)
            self.roc.plot(_xy(part["roc"]["fpr"]), _xy(part["roc"]["tpr"]), pen=pen,
                          name=f"{name} (AUC {part['auc']:.3f})")
            self.pr.plot(_xy(part["pr"]["recall"]), _xy(part["pr"]["precision"]), pen=pen,
                         name=f"{name} (AP {part.get('average_precision') or math.nan:.3f})")
            auc_text.append(f"{name} {part['auc']:.3f}")
            ap_text.append(f"{name} {part.get('average_precision') or math.nan:.3f}")
        youden = validation.get("youden")
        if youden:
            self.roc.plot([1 - youden["specificity"]], [youden["sensitivity"]], pen=None, symbol="o",
                          symbolBrush=VALIDATION_COLOUR, symbolSize=8,
                          name=f"Youden's J at p ≥ {youden['threshold']:.2f}")
        suffix = " — TEST dashed" if len(parts) > 1 else ""
        self.roc.setTitle(f"ROC · AUC {' · '.join(auc_text)}{suffix}", color="#202020", size="10pt")
        self.pr.setTitle(f"Precision-recall · AP {' · '.join(ap_text)}{suffix}", color="#202020", size="10pt")

    # -- actions ---------------------------------------------------------------

    def evaluate_test(self) -> None:
        """``blueno runs test RUN`` in a child process (it loads Keras; the window never does)."""
        if self._run_id is None:
            return
        if self.cli.run(["runs", "test", str(self._run_id)]):
            self.test_button.setEnabled(False)
            self._say(f"Evaluating run {self._run_id} on the held-out TEST split…")

    def _on_cli_finished(self, ok: bool, command: str, output: str) -> None:
        last = output.splitlines()[-1] if output else ""
        self._say(f"{command}: done" if ok else f"{command} failed: {last}")
        self._shown = None if ok else self._shown
        self._set_enabled(self._run_id is not None)
        self.refresh()

    def choose_and_export(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Write the run's report to", str(self._workspace.root))
        if folder:
            self.export_to(Path(folder))

    def export_to(self, folder: Path) -> None:
        """Write the run's HTML report into ``folder`` off the GUI thread; says where it went."""
        if self._run_id is None:
            return
        run_id = self._run_id
        self._say(f"Writing the report of run {run_id}…")
        submit(report.write_run_report, self._workspace, self._store, run_id, folder,
               on_done=self._on_exported, on_error=lambda exc: self._say(f"The report failed: {exc}"))

    def _on_exported(self, path: Path) -> None:
        self._say(f"Report written to {path}")
        self.exported.emit(path)

    def _say(self, text: str) -> None:
        self.message.setText(text)
        self.status_message.emit(text)
