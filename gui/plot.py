"""Live training curves: many runs, many points, redrawn a few times a second.

The pyqtgraph ``PanningPlot`` way: each curve is created once and fed with
``setData`` from a timer; arrays are preallocated and grow by doubling; only
new points are read from the database (``blueno.metrics.since``).  What makes
100 curves of 10,000 points fluid is drawing no more than the screen can
show: each curve is clipped to the visible x range and decimated to the
plot's pixel width, keeping the minimum and maximum of every pixel column
(so spikes stay visible), and only curves whose data or view changed are
decimated again.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QImage, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from blueno import metrics
from blueno.store import Store
from gui.workers import Fetcher

REDRAW_MS = 100
SETTLE_S = 2.0  # a curve unchanged this long is painted from the settled layer's image
LEGEND_MAX = 24
VALIDATION_PREFIX = "val_"
SHOW_BOTH, SHOW_TRAIN, SHOW_VALIDATION = "train + validation", "train", "validation"


def decimate(
    x: np.ndarray, y: np.ndarray, x0: float, x1: float, columns: int
) -> tuple[np.ndarray, np.ndarray]:
    """Clip a sorted series to [x0, x1] and keep each pixel column's min and max.

    One point either side of the range is kept so lines run to the edges.
    Each column is drawn from the extreme nearer its first point to the other,
    so the line from one column to the next stays short (cheap to rasterize).
    Returns at most ``2 * columns + 2`` points; fewer pass through as they are.
    """
    start = max(int(np.searchsorted(x, x0, side="left")) - 1, 0)
    stop = min(int(np.searchsorted(x, x1, side="right")) + 1, len(x))
    x, y = x[start:stop], y[start:stop]
    if len(x) <= 2 * columns or x1 <= x0:
        return x, y
    first = 1 if x[0] < x0 else 0
    last = len(x) - 1 if x[-1] > x1 else len(x)
    xi, yi = x[first:last], y[first:last]
    column = ((xi - x0) * (columns / (x1 - x0))).astype(np.int64)
    starts = np.flatnonzero(np.diff(column, prepend=-1))
    with np.errstate(invalid="ignore"):
        low = np.fmin.reduceat(yi, starts)
        high = np.fmax.reduceat(yi, starts)
    rising = np.abs(yi[starts] - low) <= np.abs(yi[starts] - high)
    out_y = np.empty(2 * len(starts))
    out_y[0::2] = np.where(rising, low, high)
    out_y[1::2] = np.where(rising, high, low)
    return (
        np.concatenate([x[:first], np.repeat(xi[starts], 2), x[last:]]),
        np.concatenate([y[:first], out_y, y[last:]]),
    )


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """Exponential moving average (TensorBoard's smoothing); NaNs are skipped, not spread."""
    finite = np.isfinite(values)
    if weight <= 0 or not finite.any():
        return values
    from scipy.signal import lfilter  # scipy comes with scikit-learn; loaded on first use only

    kept = values[finite]
    out = np.full_like(values, np.nan)
    out[finite] = lfilter([1 - weight], [1, -weight], kept, zi=[weight * kept[0]])[0]
    return out


@dataclass
class Series:
    """A growing (step, value) series with capacity doubling, as in PanningPlot."""

    x: np.ndarray = field(default_factory=lambda: np.empty(64))
    y: np.ndarray = field(default_factory=lambda: np.empty(64))
    n: int = 0

    def extend(self, steps: np.ndarray, values: np.ndarray) -> None:
        if len(steps) == 0:
            return
        if self.n and steps[0] <= self.x[self.n - 1]:  # a resumed run rewrote steps: keep it sorted
            keep = self.x[: self.n] < steps[0]
            steps = np.concatenate([self.x[: self.n][keep], steps])
            values = np.concatenate([self.y[: self.n][keep], values])
            self.n = 0
        need = self.n + len(steps)
        if need > len(self.x):
            capacity = max(need, 2 * len(self.x))
            self.x = np.resize(self.x, capacity)
            self.y = np.resize(self.y, capacity)
        self.x[self.n : need] = steps
        self.y[self.n : need] = values
        self.n = need

    @property
    def last_step(self) -> int | None:
        return int(self.x[self.n - 1]) if self.n else None

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        return self.x[: self.n], self.y[: self.n]


CurveKey = tuple[int, str]  # (run id, metric key)


class SettledLayer(pg.GraphicsObject):
    """Curves that stopped changing, painted once into an image and then only copied.

    With 100 runs selected and 4 of them training, a frame repaints 4 curves
    and copies one image instead of stroking 100 paths.  The image is redrawn
    when the view moves, the widget resizes, or a curve joins or leaves.
    """

    def __init__(self) -> None:
        super().__init__()
        self._paths: dict[CurveKey, tuple[QPainterPath, QPen]] = {}
        self._bounds = QRectF()
        self._image: QImage | None = None
        self._image_key: tuple | None = None

    def set_curves(self, curves: dict[CurveKey, tuple[np.ndarray, np.ndarray, QPen]]) -> None:
        self.prepareGeometryChange()
        self._paths = {
            key: (pg.arrayToQPath(x, y, connect="finite"), pen) for key, (x, y, pen) in curves.items()
        }
        self._bounds = QRectF()
        for path, _ in self._paths.values():
            self._bounds = self._bounds.united(path.boundingRect())
        self._image_key = None
        self.update()

    def boundingRect(self) -> QRectF:
        return QRectF(self._bounds)

    def dataBounds(self, axis: int, frac: float = 1.0, orthoRange=None) -> tuple[float, float] | None:
        if not self._paths:
            return None
        rect = self._bounds
        return (rect.left(), rect.right()) if axis == 0 else (rect.top(), rect.bottom())

    def paint(self, painter: QPainter, option, widget=None) -> None:
        if not self._paths:
            return
        device = painter.device()
        ratio = device.devicePixelRatioF()
        transform = painter.transform()
        key = (transform, device.width(), device.height(), ratio)
        if key != self._image_key or self._image is None:
            image = QImage(
                int(device.width() * ratio),
                int(device.height() * ratio),
                QImage.Format.Format_ARGB32_Premultiplied,
            )
            image.setDevicePixelRatio(ratio)
            image.fill(0)
            cache = QPainter(image)
            cache.setTransform(transform)
            for path, pen in self._paths.values():
                cache.setPen(pen)
                cache.drawPath(path)
            cache.end()
            self._image, self._image_key = image, key
        painter.save()
        painter.resetTransform()
        painter.drawImage(0, 0, self._image)
        painter.restore()


class LivePlot(QObject):
    """The curves of a set of runs inside one ``pg.PlotItem``, decimated to its width.

    A curve whose data changed in the last ``SETTLE_S`` seconds is a live
    ``PlotCurveItem``; the others are painted by one :class:`SettledLayer`.
    """

    redrawn = Signal(int)  # how many curves were decimated again
    legend_changed = Signal(str)  # rich text naming the shown curves in their colours

    def __init__(self, plot: pg.PlotItem, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.plot = plot
        self.series: dict[CurveKey, Series] = {}
        self.curves: dict[CurveKey, pg.PlotCurveItem] = {}
        self._drawn: dict[CurveKey, tuple[np.ndarray, np.ndarray]] = {}
        self._changed_at: dict[CurveKey, float] = {}
        self._dirty: set[CurveKey] = set()
        self._settled: frozenset[CurveKey] = frozenset()
        self._labels: dict[int, str] = {}
        self._smoothing = 0.0
        self._log_y = False
        self._view: tuple | None = None
        self._legend_stale = False  # the legend text is rebuilt once per redraw
        self.layer = SettledLayer()
        plot.addItem(self.layer)
        plot.getViewBox().sigRangeChanged.connect(lambda *_: self._view_changed())
        plot.getViewBox().sigResized.connect(lambda *_: self._view_changed())

    # -- data ---------------------------------------------------------------

    def add_points(self, key: CurveKey, steps: np.ndarray, values: np.ndarray) -> None:
        series = self.series.setdefault(key, Series())
        series.extend(np.asarray(steps, dtype=np.float64), np.asarray(values, dtype=np.float64))
        self._changed_at[key] = time.monotonic()
        self._ensure_curve(key)
        self._dirty.add(key)

    def show(self, keys: Sequence[CurveKey], labels: dict[int, str]) -> None:
        """Show exactly these curves (the selection); data of hidden ones is kept."""
        self._labels = dict(labels)
        wanted = set(keys)
        for key in list(self.curves):
            if key not in wanted:
                self.plot.removeItem(self.curves.pop(key))
                self._drawn.pop(key, None)
        for key in keys:
            if key in self.series:
                self._ensure_curve(key)
        self._legend_stale = True

    def clear(self) -> None:
        self.show([], {})
        self.series.clear()

    def set_smoothing(self, weight: float) -> None:
        self._smoothing = weight
        self._dirty.update(self.curves)

    def set_log_y(self, on: bool) -> None:
        self._log_y = on
        for name in ("left", "right"):
            self.plot.getAxis(name).setLogMode(False, on)
        self._dirty.update(self.curves)
        self.plot.enableAutoRange()

    def _ensure_curve(self, key: CurveKey) -> None:
        if key in self.curves:
            return
        run_id, metric = key
        # Consecutive runs get distant hues (7 is prime to 24); a run keeps its colour everywhere.
        pen = pg.mkPen(color=pg.intColor(run_id * 7 % 24, hues=24, values=1, maxValue=220), width=1)
        if metric.startswith(VALIDATION_PREFIX):
            pen.setStyle(Qt.PenStyle.DashLine)
        curve = pg.PlotCurveItem(pen=pen, antialias=False, connect="finite", skipFiniteCheck=True)
        self.curves[key] = curve
        self.plot.addItem(curve)
        self._dirty.add(key)
        self._legend_stale = True

    def legend_html(self) -> str:
        """The shown curves as coloured rich text: cheaper than a pyqtgraph legend item per curve."""
        entries = []
        for number, ((run_id, metric), curve) in enumerate(sorted(self.curves.items())):
            if number == LEGEND_MAX:
                entries.append(f"… {len(self.curves) - LEGEND_MAX} more")
                break
            colour = curve.opts["pen"].color().name()
            line = "╌╌" if metric.startswith(VALIDATION_PREFIX) else "——"
            label = html.escape(f"{self._labels.get(run_id, f'run {run_id}')} {metric}")
            entries.append(f"<span style='color:{colour}'>{line}</span>&nbsp;{label}")
        return " &nbsp; ".join(entries)

    # -- drawing --------------------------------------------------------------

    def _view_changed(self) -> None:
        """Re-decimate everything only when what decimation depends on moved."""
        box = self.plot.getViewBox()
        view: tuple = (self.pixel_columns(),)
        if not box.autoRangeEnabled()[0]:  # following the data, each curve spans its own extent
            view += tuple(box.viewRange()[0])
        if view != self._view:
            self._view = view
            self._dirty.update(self.curves)

    def pixel_columns(self) -> int:
        return max(16, int(self.plot.getViewBox().width()))

    def redraw(self) -> int:
        """Decimate the curves that changed, and move curves between live and settled; how many changed."""
        if self._legend_stale:
            self._legend_stale = False
            self.legend_changed.emit(self.legend_html())
        done = self._decimate(self._dirty & set(self.curves))
        self._dirty.clear()
        now = time.monotonic()
        settled = frozenset(k for k in self.curves if now - self._changed_at.get(k, 0.0) >= SETTLE_S)
        if settled != self._settled or (done & settled):
            for key, curve in self.curves.items():
                curve.setVisible(key not in settled)
                if key not in settled and key not in done and key in self._drawn:
                    curve.setData(*self._drawn[key])  # it was settled: its item has no data yet
            self.layer.set_curves({k: (*self._drawn[k], self.curves[k].opts["pen"]) for k in settled})
            self._settled = settled
        for key in done - settled:
            self.curves[key].setData(*self._drawn[key])
        self.redrawn.emit(len(done))
        return len(done)

    def _decimate(self, keys: set[CurveKey]) -> set[CurveKey]:
        if not keys:
            return set()
        columns = self.pixel_columns()
        box = self.plot.getViewBox()
        (x0, x1), _ = box.viewRange()
        follow = box.autoRangeEnabled()[0]  # the view follows the data: draw it all
        for key in keys:
            x, y = self.series[key].view()
            if self._smoothing:
                y = smooth(y, self._smoothing)
            if self._log_y:
                with np.errstate(divide="ignore", invalid="ignore"):
                    y = np.where(y > 0, np.log10(y), np.nan)
            if not follow:
                x, y = decimate(x, y, x0, x1, columns)
            elif len(x):
                x, y = decimate(x, y, float(x[0]), float(x[-1]), columns)
            self._drawn[key] = (x, y)
        return keys


def _metric_names(keys: Iterable[str]) -> list[str]:
    """Metric names without the validation prefix: ``val_loss`` and ``loss`` are one entry."""
    return sorted({k[len(VALIDATION_PREFIX) :] if k.startswith(VALIDATION_PREFIX) else k for k in keys})


def read_new_points(store: Store, plan: list[tuple[CurveKey, int | None]]) -> dict:
    """Points after the last step the plot holds, per curve, plus the metric names (worker thread)."""
    points = {}
    fresh: dict[str, list[int]] = {}
    for (run_id, key), after in plan:
        if after is None:
            fresh.setdefault(key, []).append(run_id)
        else:
            steps, values = metrics.since(store, run_id, key, after)
            if len(steps):
                points[(run_id, key)] = (steps, values)
    for key, run_ids in fresh.items():
        for run_id, (steps, values) in metrics.histories(store, run_ids, key).items():
            points[(run_id, key)] = (steps, values)
    run_ids = sorted({run_id for (run_id, _), _ in plan})
    names = {name for run_id in run_ids for name in metrics.keys(store, run_id)}
    return {"points": points, "keys": names}


class QtLivePlot(QWidget):
    """Metric picker, train/validation, smoothing, log axis, and the plot of the selected runs."""

    def __init__(self, store: Store, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._store = store
        self._runs: dict[int, str] = {}
        self._known_keys: set[str] = set()

        self.widget = pg.PlotWidget(self, background="w")
        self.widget.showGrid(x=True, y=True, alpha=0.25)
        self.widget.setLabel("bottom", "step (epoch, or batch for batch_* metrics)")
        self.live = LivePlot(self.widget.getPlotItem(), self)

        self.metric = QComboBox(self)
        self.metric.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.metric.setMinimumContentsLength(12)
        self.metric.addItem("loss")
        self.split = QComboBox(self)
        self.split.addItems([SHOW_BOTH, SHOW_TRAIN, SHOW_VALIDATION])
        self.smoothing = QDoubleSpinBox(self)
        self.smoothing.setRange(0.0, 0.99)
        self.smoothing.setSingleStep(0.1)
        self.smoothing.setToolTip("exponential moving average weight (0: raw values)")
        self.log_y = QCheckBox("log y", self)

        controls = QHBoxLayout()
        for label, widget in (("Metric", self.metric), ("Show", self.split), ("Smoothing", self.smoothing)):
            controls.addWidget(QLabel(label, self))
            controls.addWidget(widget)
        controls.addWidget(self.log_y)
        controls.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(controls)
        layout.addWidget(self.widget)
        self.legend = QLabel(self)
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.live.legend_changed.connect(self.legend.setText)
        layout.addWidget(self.legend)

        self.metric.currentTextChanged.connect(lambda _: self._reshow())
        self.split.currentTextChanged.connect(lambda _: self._reshow())
        self.smoothing.valueChanged.connect(self.live.set_smoothing)
        self.log_y.toggled.connect(self.live.set_log_y)

        self._fetcher = Fetcher(self._plan_fetch, self)
        self._fetcher.ready.connect(self._on_points)
        self._timer = QTimer(self)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self.live.redraw)
        self._timer.start()

    def shown_keys(self) -> list[str]:
        name = self.metric.currentText() or "loss"
        split = self.split.currentText()
        keys = []
        if split in (SHOW_BOTH, SHOW_TRAIN):
            keys.append(name)
        if split in (SHOW_BOTH, SHOW_VALIDATION):
            keys.append(VALIDATION_PREFIX + name)
        return keys

    def set_runs(self, runs: dict[int, str]) -> None:
        """Plot these runs (run id → legend label): the selection of the runs table."""
        self._runs = dict(runs)
        self._reshow()

    def refresh(self) -> None:
        """The database changed: read the new points of the shown curves."""
        if self._runs:
            self._fetcher.request()

    def _wanted(self) -> list[CurveKey]:
        return [(run_id, key) for run_id in self._runs for key in self.shown_keys()]

    def _reshow(self) -> None:
        self.live.show(self._wanted(), self._runs)
        self.refresh()

    def _plan_fetch(self) -> Callable[[], dict]:
        plan = []
        for key in self._wanted():
            series = self.live.series.get(key)
            plan.append((key, series.last_step if series else None))
        return lambda: read_new_points(self._store, plan)

    def _on_points(self, result: dict) -> None:
        wanted = set(self._wanted())
        for key, (steps, values) in result["points"].items():
            if key in wanted:
                self.live.add_points(key, steps, values)
        names = _metric_names(result["keys"])
        if set(names) - self._known_keys:
            self._known_keys.update(names)
            current = self.metric.currentText()
            self.metric.blockSignals(True)
            self.metric.clear()
            self.metric.addItems(sorted(self._known_keys))
            preferred = [current, "loss", *sorted(self._known_keys)]
            self.metric.setCurrentText(next(name for name in preferred if name in self._known_keys))
            self.metric.blockSignals(False)
            if self.metric.currentText() != current:
                self._reshow()
