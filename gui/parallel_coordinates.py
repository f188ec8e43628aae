"""Parallel coordinates of an experiment: each varying hyperparameter an axis, the metric the last.

The data is :func:`blueno.runs.parallel_coordinates` (numeric, log and
categorical axes), read off the GUI thread.  Each axis is scaled to [0, 1]:
linear, log10 when the engine says the values span decades, or one position
per category.  Lines are coloured by the metric (pale the worst, deep indigo
the best, drawn on top; dashed grey where a run has no value); axis labels sit
above the lines.  Dragging along an axis **brushes** a range on it; the runs
passing every brush are emitted as :attr:`QtParallelCoordinates.brushed`
(``None`` when nothing is brushed) and the runs table filters to them.  A
click on an axis clears its brush.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from blueno import report, runs
from blueno.monitor import is_maximized
from blueno.runs import ParallelCoordinates
from blueno.store import Store
from blueno.workspace import Workspace
from gui.formatting import format_value
from gui.workers import Fetcher, submit

HALF_WIDTH = 0.12  # an axis's brushable strip, in axis spacings
# Pale to deep: the best runs stand out on white and nothing is yellow (illegible on a white background).
COLOURS = pg.ColorMap([0.0, 0.5, 1.0], [(207, 216, 220), (92, 107, 192), (26, 35, 126)])
LABEL_Z = 20  # axis titles and ticks above the lines and brushes
NO_VALUE = "#9e9e9e"


def scale_axis(axis: dict[str, Any]) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """An axis's values in [0, 1] (NaN where a run has none) and its tick labels at their heights."""
    if axis["categorical"]:
        k = len(axis["categories"])
        positions = np.asarray(axis["positions"], dtype=float)
        heights = positions / (k - 1) if k > 1 else np.full(len(positions), 0.5)
        ticks = [(i / (k - 1) if k > 1 else 0.5, "—" if c is None else str(c))
                 for i, c in enumerate(axis["categories"])]
        return heights, ticks
    return _scale_numbers([float(v) for v in axis["values"]], bool(axis.get("log")))


def _scale_numbers(values: list[float | None], log: bool) -> tuple[np.ndarray, list[tuple[float, str]]]:
    raw = np.asarray([math.nan if v is None else v for v in values], dtype=float)
    shown = np.log10(raw, where=raw > 0, out=np.full(len(raw), math.nan)) if log else raw
    finite = shown[np.isfinite(shown)]
    if not finite.size:
        return np.full(len(raw), math.nan), []
    low, high = float(finite.min()), float(finite.max())
    if high == low:
        return np.where(np.isfinite(shown), 0.5, math.nan), [(0.5, format_value(float(raw[np.isfinite(shown)][0])))]
    heights = (shown - low) / (high - low)
    ticks = []
    for fraction in (0.0, 0.5, 1.0):
        value = low + fraction * (high - low)
        ticks.append((fraction, format_value(10**value if log else value)))
    return heights, ticks


class AxisBrush(pg.GraphicsObject):
    """The brushable strip around one axis: drag to choose a range, click to clear it."""

    def __init__(self, x: float, changed: Callable[[], None]) -> None:
        super().__init__()
        self.x = x
        self.range: tuple[float, float] | None = None
        self._changed = changed
        self.setZValue(10)

    def boundingRect(self) -> QRectF:
        return QRectF(self.x - HALF_WIDTH, -0.05, 2 * HALF_WIDTH, 1.1)

    def paint(self, painter: QPainter, *args: Any) -> None:
        if self.range is None:
            return
        low, high = self.range
        painter.setPen(pg.mkPen("#e65100", width=2))
        painter.setBrush(pg.mkBrush(230, 81, 0, 50))
        painter.drawRect(QRectF(self.x - HALF_WIDTH * 0.6, low, HALF_WIDTH * 1.2, high - low))

    def set_range(self, range_: tuple[float, float] | None, notify: bool = True) -> None:
        if range_ is not None:
            low, high = sorted(range_)
            range_ = (max(low, -0.02), min(high, 1.02))
        self.prepareGeometryChange()
        self.range = range_
        self.update()
        if notify:
            self._changed()

    def mouseDragEvent(self, ev: Any) -> None:
        if ev.button() != Qt.MouseButton.LeftButton:
            ev.ignore()
            return
        ev.accept()
        self.set_range((ev.buttonDownPos().y(), ev.pos().y()), notify=ev.isFinish())

    def mouseClickEvent(self, ev: Any) -> None:
        if ev.button() == Qt.MouseButton.LeftButton and self.range is not None:
            ev.accept()
            self.set_range(None)

    def passes(self, heights: np.ndarray) -> np.ndarray:
        if self.range is None:
            return np.ones(len(heights), dtype=bool)
        with np.errstate(invalid="ignore"):
            return (heights >= self.range[0]) & (heights <= self.range[1])


class ParallelCoordinatesPlot(pg.PlotWidget):
    """The axes, one line per run, and a brush per axis."""

    brushed = Signal(object)  # list[int] of runs inside every brush, or None when nothing is brushed

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent, background="w")
        self.coords: ParallelCoordinates | None = None
        self.names: list[str] = []
        self.heights = np.zeros((0, 0))
        self.brushes: list[AxisBrush] = []
        self.lines: list[pg.PlotCurveItem] = []
        item = self.getPlotItem()
        item.hideAxis("left")
        item.hideAxis("bottom")
        item.hideButtons()
        item.setMenuEnabled(False)
        item.getViewBox().setMouseEnabled(False, False)
        self.setMinimumSize(400, 260)

    def set_coordinates(self, coords: ParallelCoordinates) -> None:
        """Draw ``coords``; brushes on axes of the same name survive a redraw."""
        kept = {name: brush.range for name, brush in zip(self.names, self.brushes, strict=True) if brush.range}
        self.clear()
        self.coords = coords
        axes = [*coords.axes, {"name": coords.metric, "values": coords.scores, "categorical": False, "log": False}]
        self.names = [axis["name"] for axis in axes]
        scaled = [scale_axis(axis) if i < len(coords.axes) else _scale_numbers(coords.scores, False)
                  for i, axis in enumerate(axes)]
        self.heights = np.array([h for h, _ in scaled]).reshape(len(axes), len(coords.run_ids))
        n = len(axes)
        self.setXRange(-0.5, n - 0.5, padding=0)
        self.setYRange(-0.06, 1.12, padding=0)
        self.lines = []
        for j in range(len(coords.run_ids)):
            line = pg.PlotCurveItem(np.arange(n, dtype=float), self.heights[:, j], connect="finite")
            self.addItem(line)
            self.lines.append(line)
        self.brushes = []
        for i, (axis, (_, ticks)) in enumerate(zip(axes, scaled, strict=True)):
            self.plot([i, i], [0, 1], pen=pg.mkPen("#424242", width=2))
            is_metric = i == n - 1
            title = f"{axis['name']}{' (log)' if axis.get('log') else ''}"
            label = pg.TextItem(title, color="#1565c0" if is_metric else "#202020", anchor=(0.5, 1.0))
            label.setPos(i, 1.03)
            label.setZValue(LABEL_Z)
            self.addItem(label)
            for height, text in ticks:
                tick = pg.TextItem(text, color="#424242", anchor=(1.0, 0.5), fill=pg.mkBrush(255, 255, 255, 210))
                tick.setPos(i - 0.03, height)
                tick.setZValue(LABEL_Z)
                self.addItem(tick)
            brush = AxisBrush(float(i), self._emit)
            self.addItem(brush)
            self.brushes.append(brush)
            if axis["name"] in kept:
                brush.set_range(kept[axis["name"]], notify=False)
        self._restyle()

    def reset(self) -> None:
        """Nothing to show: no lines, no axes, no brushes."""
        self.clear()
        self.coords, self.names, self.brushes, self.lines = None, [], [], []
        self.heights = np.zeros((0, 0))

    def goodness(self) -> np.ndarray:
        """Each run's metric scaled so that 1 is the best (a loss is turned upside down): its colour."""
        if self.coords is None or not len(self.heights):
            return np.zeros(0)
        scores = self.heights[-1]
        return scores if is_maximized(self.coords.metric) else 1.0 - scores

    def brush(self, name: str, low: float | None, high: float | None = None) -> None:
        """Brush axis ``name`` over [low, high] in its scaled units (0-1); ``low=None`` clears it."""
        index = self.names.index(name)
        self.brushes[index].set_range(None if low is None else (low, high if high is not None else low))

    def clear_brushes(self) -> None:
        for brush in self.brushes:
            brush.set_range(None, notify=False)
        self._emit()

    def selected(self) -> list[int] | None:
        """Runs inside every brush, or None when no axis is brushed."""
        if self.coords is None or not any(brush.range for brush in self.brushes):
            return None
        keep = np.ones(len(self.coords.run_ids), dtype=bool)
        for brush, heights in zip(self.brushes, self.heights, strict=True):
            keep &= brush.passes(heights)
        return [run_id for run_id, ok in zip(self.coords.run_ids, keep, strict=True) if ok]

    def _restyle(self) -> None:
        chosen = self.selected()
        chosen_set = None if chosen is None else set(chosen)
        scores = self.goodness()
        for run_id, line, score in zip(self.coords.run_ids if self.coords else [], self.lines, scores, strict=False):
            if chosen_set is None or run_id in chosen_set:
                if np.isfinite(score):
                    pen = pg.mkPen(COLOURS.map(float(score), mode="qcolor"), width=1.5 + 1.5 * float(score))
                    line.setZValue(1 + float(score))  # the better, the higher: the best are never hidden
                else:
                    pen = pg.mkPen(NO_VALUE, width=1, style=Qt.PenStyle.DashLine)
                    line.setZValue(0.5)
                line.setPen(pen)
            else:
                line.setPen(pg.mkPen(200, 200, 200, 120, width=1))
                line.setZValue(0)

    def _emit(self) -> None:
        self._restyle()
        self.brushed.emit(self.selected())


def read_parallel(store: Store, experiment_id: int | None, metric: str | None) -> dict[str, Any]:
    """The experiments, the chosen one's coordinates and the metrics it can show (worker thread)."""
    experiments = runs.finished_experiments(store)
    if experiment_id not in {e for e, _ in experiments}:
        experiment_id = experiments[0][0] if experiments else None
    if experiment_id is None:
        return {"experiments": experiments, "experiment_id": None, "coords": None, "metrics": []}
    finished = [r for r in runs.list_runs(store, experiment_id=experiment_id) if r["best"] and r["kind"] == "train"]
    names = sorted({k for r in finished for k in runs.figures(r)}, key=lambda k: (k.startswith("test."), k))
    coords = runs.parallel_coordinates(store, experiment_id, metric if metric in names else None)
    return {"experiments": experiments, "experiment_id": experiment_id, "coords": coords, "metrics": names}


class QtParallelCoordinates(QWidget):
    """Experiment and metric pickers, the plot, and the experiment's report export."""

    brushed = Signal(object)  # list[int] | None
    status_message = Signal(str)

    def __init__(self, workspace: Workspace, store: Store, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._workspace, self._store = workspace, store
        self.experiment = QComboBox(self)
        self.experiment.setMinimumContentsLength(16)
        self.metric = QComboBox(self)
        self.metric.setMinimumContentsLength(16)
        self.clear_button = QPushButton("Clear brushing", self)
        self.export_button = QPushButton("Export experiment report…", self)
        self.message = QLabel("Drag along an axis to keep only the runs in that range; click an axis to clear.", self)
        self.message.setWordWrap(True)
        self.plot = ParallelCoordinatesPlot(self)
        controls = QHBoxLayout()
        for text, widget in (("Experiment", self.experiment), ("Colour by", self.metric)):
            controls.addWidget(QLabel(text, self))
            controls.addWidget(widget)
        controls.addStretch(1)
        controls.addWidget(self.clear_button)
        controls.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(controls)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.message)

        self.plot.brushed.connect(self._on_brushed)
        self.clear_button.clicked.connect(self.plot.clear_brushes)
        self.export_button.clicked.connect(self.choose_and_export)
        self.experiment.activated.connect(lambda _: self.refresh(force=True))
        self.metric.activated.connect(lambda _: self.refresh(force=True))
        self._fetcher = Fetcher(self._plan, self)
        self._fetcher.ready.connect(self._on_data)
        self.loaded = False

    def refresh(self, force: bool = False) -> None:
        """Re-read when shown (or asked); a hidden plot waits until it is shown."""
        if force or self.isVisible() or not self.loaded:
            self._fetcher.request()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self.refresh(force=True)

    def _plan(self) -> Callable[[], dict[str, Any]]:
        experiment_id, metric = self.experiment.currentData(), self.metric.currentText() or None
        return lambda: read_parallel(self._store, experiment_id, metric)

    def _on_data(self, data: dict[str, Any]) -> None:
        self.loaded = True
        self._fill(self.experiment, [(f"{i} · {name}", i) for i, name in data["experiments"]], data["experiment_id"])
        coords = data["coords"]
        self._fill(self.metric, [(m, m) for m in data["metrics"]], coords.metric if coords else None)
        self.export_button.setEnabled(data["experiment_id"] is not None)
        if coords is None:
            self.plot.reset()
            self.message.setText("No experiment has finished runs yet: they appear here when the first run ends.")
            return
        old = self.plot.coords
        if old is None or (old.run_ids, old.scores, old.axes, old.metric) != (
            coords.run_ids, coords.scores, coords.axes, coords.metric
        ):
            self.plot.set_coordinates(coords)
        self.message.setText(self.caption())

    def caption(self) -> str:
        """What the plot shows now: set from the current state every time, never left from an earlier one."""
        coords = self.plot.coords
        if coords is None:
            return "No experiment has finished runs yet: they appear here when the first run ends."
        n = len(coords.run_ids)
        if not coords.axes:
            return (f"{n} finished run{'s' * (n != 1)}; no hyperparameter varies between them: "
                    "only the metric axis is drawn.")
        chosen = self.plot.selected()
        if chosen is not None:
            return (f"{len(chosen)} of {n} runs inside the brushed ranges; the runs table shows only them. "
                    "Darker lines are better.")
        return (f"{n} finished runs, {len(coords.axes)} varying hyperparameter{'s' * (len(coords.axes) != 1)}. "
                "Darker lines are better. Drag along an axis to keep only the runs in that range; click it to clear.")

    @staticmethod
    def _fill(combo: QComboBox, items: list[tuple[str, Any]], current: Any) -> None:
        if [(combo.itemText(i), combo.itemData(i)) for i in range(combo.count())] != items:
            combo.blockSignals(True)
            combo.clear()
            for text, data in items:
                combo.addItem(text, data)
            combo.blockSignals(False)
        at = combo.findData(current)
        if at >= 0:
            combo.setCurrentIndex(at)

    def _on_brushed(self, run_ids: list[int] | None) -> None:
        self.message.setText(self.caption())
        self.brushed.emit(run_ids)

    def choose_and_export(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Write the experiment's report to", str(self._workspace.root))
        if folder:
            self.export_to(Path(folder))

    def export_to(self, folder: Path) -> None:
        """Write the chosen experiment's HTML report into ``folder`` off the GUI thread."""
        experiment_id = self.experiment.currentData()
        if experiment_id is None:
            return
        self._say(f"Writing the report of experiment {experiment_id}…")
        submit(report.write_experiment_report, self._workspace, self._store, experiment_id, folder,
               on_done=lambda path: self._say(f"Report written to {path}"),
               on_error=lambda exc: self._say(f"The report failed: {exc}"))

    def _say(self, text: str) -> None:
        self.message.setText(text)
        self.status_message.emit(text)
