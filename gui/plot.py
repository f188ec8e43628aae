"""Live training curves: many runs, many points, redrawn a few times a second.

The pyqtgraph ``PanningPlot`` way: each curve is created once and fed with
``setData`` from a timer; arrays are preallocated and grow by doubling; only
new points are read from the database (``blueno.metrics.since``).  What makes
100 curves of 10,000 points fluid is drawing no more than the screen can
show: each curve is clipped to the visible x range and decimated to the
plot's pixel width, keeping the minimum and maximum of every pixel column
(so spikes stay visible), and only curves whose data or view changed are
decimated again.  The curves that are not growing (all but a few) are
decimated and stroked off the GUI thread into one image: after a zoom or a
pan the GUI thread repaints at once from the previous image, moved and
scaled to the new view, and swaps in the exact one when it is ready.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QImage, QPainter, QPen, QTransform
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from blueno import metrics
from blueno.store import Store
from gui.workers import Fetcher

REDRAW_MS = 100
SETTLE_S = 2.0  # a curve unchanged this long is painted from the settled layer's image
LIVE_MAX = 8  # at most this many growing curves are live items; the layer draws the rest
LEGEND_MAX = 24
VALIDATION_PREFIX = "val_"
SHOW_BOTH, SHOW_TRAIN, SHOW_VALIDATION = "train + validation", "train", "validation"


def decimate(
    x: np.ndarray, y: np.ndarray, x0: float, x1: float, columns: int
) -> tuple[np.ndarray, np.ndarray]:
    """Clip a sorted series to [x0, x1] and keep each pixel column's first, minimum, maximum and last point.

    This is M4 aggregation (Jugel et al., VLDB 2014): a line through these
    points covers the same pixels as the line through all of them, since
    inside a column the extremes bound every segment and the segment between
    two columns joins the same two raw points.  One point either side of the
    range is kept so lines run to the edges.  Returns at most
    ``4 * columns + 2`` points; fewer pass through as they are.
    """
    start = max(int(np.searchsorted(x, x0, side="left")) - 1, 0)
    stop = min(int(np.searchsorted(x, x1, side="right")) + 1, len(x))
    x, y = x[start:stop], y[start:stop]
    if len(x) <= 4 * columns or x1 <= x0:
        return x, y
    first = 1 if x[0] < x0 else 0
    last = len(x) - 1 if x[-1] > x1 else len(x)
    xi, yi = x[first:last], y[first:last]
    column = np.minimum(((xi - x0) * (columns / (x1 - x0))).astype(np.int64), columns - 1)  # x1 is inside
    starts = np.flatnonzero(np.diff(column, prepend=-1))
    ends = np.append(starts[1:], len(xi)) - 1
    with np.errstate(invalid="ignore"):
        low = np.fmin.reduceat(yi, starts)
        high = np.fmax.reduceat(yi, starts)
    rising = np.abs(yi[starts] - low) <= np.abs(yi[starts] - high)  # nearer extreme first: short strokes
    out_x = np.repeat(xi[starts], 4)
    out_x[3::4] = xi[ends]
    out_y = np.empty(4 * len(starts))
    out_y[0::4] = yi[starts]
    out_y[1::4] = np.where(rising, low, high)
    out_y[2::4] = np.where(rising, high, low)
    out_y[3::4] = yi[ends]
    return np.concatenate([x[:first], out_x, x[last:]]), np.concatenate([y[:first], out_y, y[last:]])


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


# Tableau 10 without its olive and yellow: strong on white, told apart by colour-blind readers too.
RUN_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
               "#7f7f7f", "#393b79", "#843c39", "#637939")


def run_colour(run_id: int) -> str:
    """The colour of a run's curves, the same in every plot."""
    return RUN_COLOURS[run_id % len(RUN_COLOURS)]


@dataclass
class Series:
    """A growing (step, value) series with capacity doubling, as in PanningPlot."""

    x: np.ndarray = field(default_factory=lambda: np.empty(64))
    y: np.ndarray = field(default_factory=lambda: np.empty(64))
    n: int = 0
    low: float = np.inf  # running extremes of the finite values: the plot's bounds without a scan
    high: float = -np.inf

    def extend(self, steps: np.ndarray, values: np.ndarray) -> None:
        if len(steps) == 0:
            return
        if self.n and steps[0] <= self.x[self.n - 1]:  # a resumed run rewrote steps: keep it sorted
            keep = self.x[: self.n] < steps[0]
            steps = np.concatenate([self.x[: self.n][keep], steps])
            values = np.concatenate([self.y[: self.n][keep], values])
            # New arrays, never a rewrite in place: the layer's worker may be reading the old ones.
            self.x, self.y, self.n = np.empty(len(self.x)), np.empty(len(self.y)), 0
            self.low, self.high = np.inf, -np.inf
        need = self.n + len(steps)
        if need > len(self.x):
            capacity = max(need, 2 * len(self.x))
            self.x = np.resize(self.x, capacity)
            self.y = np.resize(self.y, capacity)
        self.x[self.n : need] = steps
        self.y[self.n : need] = values
        self.n = need
        finite = values[np.isfinite(values)]
        if len(finite):
            self.low, self.high = min(self.low, float(finite.min())), max(self.high, float(finite.max()))

    @property
    def last_step(self) -> int | None:
        return int(self.x[self.n - 1]) if self.n else None

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        return self.x[: self.n], self.y[: self.n]

    def extent(self, log_y: bool = False) -> tuple[float, float, float, float] | None:
        """(first step, last step, lowest value, highest value); None when nothing finite is drawn."""
        if not self.n:
            return None
        low, high = self.low, self.high
        if log_y:
            y = self.y[: self.n]
            positive = y[y > 0]
            if not len(positive):
                return None
            low, high = float(np.log10(positive.min())), float(np.log10(positive.max()))
        if not (np.isfinite(low) and np.isfinite(high)):
            return None
        return float(self.x[0]), float(self.x[self.n - 1]), low, high


CurveKey = tuple[int, str]  # (run id, metric key)


def prepare_curve(
    x: np.ndarray, y: np.ndarray, view: tuple[float, float] | None, columns: int, smoothing: float, log_y: bool
) -> tuple[np.ndarray, np.ndarray]:
    """What one curve draws: smoothed, on a log scale if asked, decimated to ``view`` (None: its own extent)."""
    if smoothing:
        y = smooth(y, smoothing)
    if log_y:
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.where(y > 0, np.log10(y), np.nan)
    if view is not None:
        return decimate(x, y, view[0], view[1], columns)
    if len(x):
        return decimate(x, y, float(x[0]), float(x[-1]), columns)
    return x, y


def pixel_grid(transform: QTransform, x0: float, x1: float) -> tuple[tuple[float, float], int]:
    """The x range and column count whose columns are exactly the device's pixel columns over [x0, x1].

    Decimating on the device's own column borders puts each column's minimum
    and maximum in the pixel column where the raw points would be drawn.
    """
    scale, offset = transform.m11(), transform.dx()
    if scale <= 0 or not (np.isfinite(x0) and np.isfinite(x1)) or x1 <= x0:
        return (x0, x1), 16
    first, last = np.floor(scale * x0 + offset), np.ceil(scale * x1 + offset)
    return ((first - offset) / scale, (last - offset) / scale), max(int(last - first), 1)


def draw_curves(
    curves: Sequence[tuple[np.ndarray, np.ndarray, QPen]],
    view: tuple[float, float],
    smoothing: float,
    log_y: bool,
    transform: QTransform,
    size: tuple[int, int, float],
) -> tuple[QImage, QTransform]:
    """Decimate and stroke curves into an image of the view (worker thread: QImage, not QPixmap)."""
    width, height, ratio = size
    image = QImage(int(width * ratio), int(height * ratio), QImage.Format.Format_ARGB32_Premultiplied)
    image.setDevicePixelRatio(ratio)
    image.fill(0)
    painter = QPainter(image)
    painter.setTransform(transform)
    grid, columns = pixel_grid(transform, *view)
    for x, y, pen in curves:
        x, y = prepare_curve(x, y, grid, columns, smoothing, log_y)
        if len(x) > 1:
            painter.setPen(pen)
            painter.drawPath(pg.arrayToQPath(x, y, connect="finite"))
    painter.end()
    return image, transform


class SettledLayer(pg.GraphicsObject):
    """Curves that are not growing, drawn off the GUI thread into one image that paint only copies.

    With 100 runs selected and 4 of them training, a frame repaints 4 curves
    and copies one image instead of stroking 100 paths.  The image remembers
    the item-to-device transform it was drawn with; while the view moves (a
    zoom, a pan, a resize) the image is mapped onto the new view until the
    worker delivers one drawn for it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._bounds = QRectF()
        self._empty = True
        self._image: QImage | None = None
        self._transform = QTransform()  # item → device pixels, when the image was drawn

    @property
    def has_image(self) -> bool:
        return self._image is not None

    def set_bounds(self, bounds: QRectF | None) -> None:
        """The data extent of the curves the layer stands for (what auto-range follows)."""
        self.prepareGeometryChange()
        self._empty = bounds is None
        self._bounds = QRectF() if bounds is None else bounds
        if self._empty:
            self._image = None
        self.update()

    def set_image(self, image: QImage, transform: QTransform) -> None:
        self._image, self._transform = (None if self._empty else image), transform
        self.update()

    def boundingRect(self) -> QRectF:
        return QRectF(self._bounds)

    def dataBounds(self, axis: int, frac: float = 1.0, orthoRange=None) -> tuple[float, float] | None:
        if self._empty:
            return None
        rect = self._bounds
        return (rect.left(), rect.right()) if axis == 0 else (rect.top(), rect.bottom())

    def paint(self, painter: QPainter, option, widget=None) -> None:
        if self._image is None:
            return
        inverse, invertible = self._transform.inverted()
        if not invertible:
            return
        moved = inverse * painter.transform()  # the image's pixels → now's device pixels
        if abs(moved.m11() - 1) < 1e-6 and abs(moved.m22() - 1) < 1e-6 and not moved.m12() and not moved.m21():
            moved = QTransform.fromTranslate(round(moved.dx()), round(moved.dy()))  # a plain copy: Qt's blit
        painter.save()
        painter.setTransform(moved)
        painter.drawImage(QPointF(0, 0), self._image)
        painter.restore()


class LivePlot(QObject):
    """The curves of a set of runs inside one ``pg.PlotItem``, decimated to its width.

    A curve whose data changed in the last ``SETTLE_S`` seconds (at most
    ``LIVE_MAX`` of them, the most recent) is a live ``PlotCurveItem``; the
    others are painted by one :class:`SettledLayer`, drawn by a worker.
    """

    redrawn = Signal(int)  # how many curves were decimated again
    rendered = Signal()  # the layer's worker delivered an image drawn for the current curves
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
        self._layer_stale = True  # the layer's image is drawn again (off the GUI thread)
        self.layer = SettledLayer()
        plot.addItem(self.layer)
        self._renderer = Fetcher(self._plan_render, self)  # one drawing at a time; requests coalesce
        self._render_asked = self._render_done = 0  # requests made, and the newest one drawn
        self._renderer.ready.connect(self._on_rendered)
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
        self._layer_stale = True

    def set_log_y(self, on: bool) -> None:
        self._log_y = on
        for name in ("left", "right"):
            self.plot.getAxis(name).setLogMode(False, on)
        self._dirty.update(self.curves)
        self._layer_stale = True
        self.plot.enableAutoRange()

    def _ensure_curve(self, key: CurveKey) -> None:
        if key in self.curves:
            return
        run_id, metric = key
        # A run keeps its colour everywhere; the palette has no yellow (illegible on the white plot).
        pen = pg.mkPen(color=run_colour(run_id), width=1)
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
            label = html.escape(f"{self._labels.get(run_id, f'run {run_id}')} {metric}").replace(" ", "&nbsp;")
            # One entry never wraps inside itself: lines break only between entries.
            entries.append(f"<span style='color:{colour}'>{line}</span>&nbsp;{label}")
        return " &nbsp; &#8203;".join(entries)

    # -- drawing --------------------------------------------------------------

    def _view_changed(self) -> None:
        """Re-decimate live curves only when what decimation depends on moved; the layer on any move."""
        self._layer_stale = True
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
        """Decimate the live curves that changed, move curves between live and settled; how many changed."""
        if self._legend_stale:
            self._legend_stale = False
            self.legend_changed.emit(self.legend_html())
        box = self.plot.getViewBox()
        box.prepareForPaint()  # apply a pending auto-range now: decimate for the view that will show
        now = time.monotonic()
        growing = sorted((k for k in self.curves if now - self._changed_at.get(k, 0.0) < SETTLE_S),
                         key=lambda k: self._changed_at[k], reverse=True)
        live = set(growing[:LIVE_MAX])
        settled = frozenset(self.curves) - live
        if settled != self._settled or self._dirty & settled:
            self._layer_stale = True
        todo = {k for k in live if k in self._dirty or k not in self._drawn}
        self._dirty.clear()
        self._decimate(todo)
        for key, curve in self.curves.items():
            if key in settled:
                self._drawn.pop(key, None)
            if curve.isVisible() != (key in live):
                curve.setVisible(key in live)
        for key in todo:
            self.curves[key].setData(*self._drawn[key])
        self._settled = settled
        if self._layer_stale:
            self.layer.set_bounds(self._bounds(settled))
            box.prepareForPaint()  # the new bounds may move the auto-range; the worker draws for that
            self._layer_stale = False
            self._render_asked += 1
            self._renderer.request()
        self.redrawn.emit(len(todo))
        return len(todo)

    def _decimate(self, keys: set[CurveKey]) -> None:
        if not keys:
            return
        view = self._decimation_view()
        for key in keys:
            self._drawn[key] = prepare_curve(
                *self.series[key].view(), view, self.pixel_columns(), self._smoothing, self._log_y
            )

    def _decimation_view(self) -> tuple[float, float] | None:
        """The x range to decimate to; None while the view follows the data (each curve: all of it)."""
        box = self.plot.getViewBox()
        return None if box.autoRangeEnabled()[0] else tuple(box.viewRange()[0])

    def _bounds(self, keys: Iterable[CurveKey]) -> QRectF | None:
        """The data extent of these curves, from each series' running minimum and maximum."""
        spans = [self.series[k].extent(self._log_y) for k in keys if k in self.series]
        spans = [span for span in spans if span is not None]
        if not spans:
            return None
        left, right, low, high = np.array(spans).T
        return QRectF(float(left.min()), float(low.min()), float(right.max() - left.min()),
                      float(high.max() - low.min()))

    @property
    def layer_current(self) -> bool:
        """Whether the layer shows an image drawn for the latest curves and view (not a moved old one)."""
        return self._render_done == self._render_asked and not self._layer_stale

    def _plan_render(self) -> Callable[[], tuple[int, tuple[QImage, QTransform] | None]]:
        """What the worker draws: the settled curves' series (views, never copied) and the view."""
        asked = self._render_asked
        self.plot.getViewBox().prepareForPaint()
        transform = self.layer.deviceTransform_()
        view_widget = self.layer.getViewWidget()
        curves = [(*self.series[k].view(), QPen(self.curves[k].opts["pen"]))
                  for k in sorted(self._settled) if k in self.series]
        if transform is None or view_widget is None or not curves:
            return lambda: (asked, None)
        port = view_widget.viewport()
        args = (curves, tuple(self.plot.getViewBox().viewRange()[0]), self._smoothing, self._log_y,
                QTransform(transform), (port.width(), port.height(), port.devicePixelRatioF()))
        return lambda: (asked, draw_curves(*args))

    def _on_rendered(self, result: tuple[int, tuple[QImage, QTransform] | None]) -> None:
        asked, drawn = result
        if drawn is not None:
            self.layer.set_image(*drawn)
        self._render_done = asked
        if self.layer_current:
            self.rendered.emit()


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
