"""GUI benchmarks: live-plot redraw against bare pyqtgraph, and a 100,000-run table.

    python benchmarks/gui_plot.py            (offscreen; prints a markdown table)

Plot: 100 runs x 10,000 points (noisy, decaying like training losses) at
1280x800.  Bare pyqtgraph gets one PlotDataItem per run with the same data;
each redraw is a full ``grab()`` of the widget, median of several.  A zoom or
pan: the x range moves through a cycle of zooms and pans, then the widget is
grabbed.  Blueno's plot is measured as the GUI thread sees it after a zoom
(the redraw tick plus the repaint, which shows the previous image moved to
the new view while a worker draws the exact one), until the exact picture is
painted, a live frame (4 of the 100 runs get a new point; the other 96 are
settled and copied from the layer image), and a repaint once every run has
finished.
Table: the 100,000 runs are read and loaded into ``RunsTableModel`` (one
query), then sorted by a parameter column.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "gui")]

import numpy as np  # noqa: E402
import pyqtgraph as pg  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

import gui.plot as plot  # noqa: E402
from blueno.run_table import RunKeys, read_table  # noqa: E402
from blueno.workspace import Workspace  # noqa: E402
from gui.runs_view import RunsTableModel  # noqa: E402

RUNS, POINTS, SIZE, REPEATS = 100, 10_000, (1280, 800), 7
LIVE_RUNS = 4


def curves(rng: np.random.Generator) -> list[np.ndarray]:
    steps = np.arange(POINTS, dtype=float)
    return [
        np.exp(-steps / 3000) * (1 + i / 100) + np.cumsum(rng.normal(size=POINTS)) * 0.005
        for i in range(RUNS)
    ]


def median_ms(fn, repeats: int = REPEATS) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


VIEWS = [(2000.0, 8000.0), (1000.0, 5000.0), (3000.0, 7000.0), (0.0, 10000.0)]  # zoom, pan, zoom, out


def bare_redraw(app: QApplication, values: list[np.ndarray]) -> tuple[float, float]:
    """Bare pyqtgraph: a repaint, and a zoom or pan (the x range moves, then the widget is painted)."""
    widget = pg.PlotWidget(background="w")
    widget.resize(*SIZE)
    widget.show()
    steps = np.arange(POINTS, dtype=float)
    for i, y in enumerate(values):
        widget.plot(steps, y, pen=pg.mkPen(pg.intColor(i % 24, hues=24), width=1))
    app.processEvents()
    repaint = median_ms(widget.grab)
    turn = [0]

    def zoom() -> None:
        widget.setXRange(*VIEWS[turn[0] % len(VIEWS)], padding=0)
        turn[0] += 1
        widget.grab()

    result = median_ms(zoom)
    widget.close()
    return repaint, result


def blueno_zoom(app: QApplication, values: list[np.ndarray]) -> tuple[float, float]:
    """Blueno after a zoom or pan: GUI-thread time (redraw tick + repaint), and until the exact picture."""
    widget = pg.PlotWidget(background="w")
    widget.resize(*SIZE)
    widget.show()
    live = plot.LivePlot(widget.getPlotItem())
    steps = np.arange(POINTS, dtype=float)
    for i, y in enumerate(values):
        live.add_points((i, "loss"), steps, y)
        live._changed_at[(i, "loss")] -= 10.0  # finished runs: all drawn by the layer
    turn = [0]

    def exact() -> None:
        while not live.layer_current:  # as the app's event loop: idle (no GIL held) between ticks
            time.sleep(0.002)
            app.processEvents()
            live.redraw()
        widget.grab()

    def zoom_gui() -> None:
        widget.setXRange(*VIEWS[turn[0] % len(VIEWS)], padding=0)
        turn[0] += 1
        live.redraw()
        widget.grab()

    live.redraw()
    exact()
    gui_times, exact_times = [], []
    for _ in range(REPEATS + 1):
        started = time.perf_counter()
        zoom_gui()
        gui_times.append(time.perf_counter() - started)
        exact()
        exact_times.append(time.perf_counter() - started)
    widget.close()
    return statistics.median(gui_times[1:]) * 1000, statistics.median(exact_times[1:]) * 1000


def blueno_redraws(app: QApplication, values: list[np.ndarray]) -> tuple[float, float]:
    widget = pg.PlotWidget(background="w")
    widget.resize(*SIZE)
    widget.show()
    live = plot.LivePlot(widget.getPlotItem())
    steps = np.arange(POINTS, dtype=float)
    head = POINTS - 2 * REPEATS - 2  # the live runs are still training: room to grow inside the view
    for i, y in enumerate(values):
        live.add_points(
            (i, "loss"), steps if i >= LIVE_RUNS else steps[:head], y if i >= LIVE_RUNS else y[:head]
        )
    app.processEvents()

    plot.SETTLE_S, settle = 0.5, plot.SETTLE_S
    for key in live.curves:
        live._changed_at[key] = time.monotonic() - (0.0 if key[0] < LIVE_RUNS else 10.0)
    live.redraw()
    widget.grab()
    while not live.layer_current:  # the 96 settled runs are drawn off the GUI thread, once
        time.sleep(0.002)
        app.processEvents()
        live.redraw()
    step = [head]

    def frame() -> None:  # 4 runs each get a new point, the view is repainted
        for i in range(LIVE_RUNS):
            live.add_points((i, "loss"), np.array([float(step[0])]), values[i][step[0] : step[0] + 1])
        step[0] += 1
        live.redraw()
        widget.grab()

    frame_ms = median_ms(frame)
    for key in live.curves:  # now every run has finished: the whole plot is one image
        live._changed_at[key] = time.monotonic() - 10.0
    live.redraw()
    while not live.layer_current:
        time.sleep(0.002)
        app.processEvents()
        live.redraw()
    repaint_ms = median_ms(widget.grab)
    plot.SETTLE_S = settle
    widget.close()
    return frame_ms, repaint_ms


def table_times() -> tuple[float, float]:
    from gui_helpers import add_runs

    with tempfile.TemporaryDirectory() as folder:
        store = Workspace(Path(folder)).ensure().open_store()
        add_runs(store, 100_000)
        started = time.perf_counter()
        model = RunsTableModel(store)
        model.add_batch(read_table(store, 0, [], RunKeys()))
        load = time.perf_counter() - started
        column = model.column_number("learning_rate")
        started = time.perf_counter()
        model.sort(column, Qt.SortOrder.DescendingOrder)
        sort = time.perf_counter() - started
        store.close()
    return load * 1000, sort * 1000


def main() -> int:
    app = QApplication.instance() or QApplication([])
    values = curves(np.random.default_rng(0))
    bare, bare_zoom = bare_redraw(app, values)
    zoom_gui, zoom_exact = blueno_zoom(app, values)
    frame, repaint = blueno_redraws(app, values)
    load, sort = table_times()
    print(f"cpu cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}\n")
    print("| measure | time | speed-up over bare pyqtgraph | target |")
    print("| --- | ---: | ---: | --- |")
    rows = [
        (f"bare pyqtgraph 0.14, redraw {RUNS} x {POINTS:,} points at {SIZE[0]}x{SIZE[1]}", bare, ""),
        ("bare pyqtgraph 0.14, zoom or pan + redraw (the baseline of the next two rows)", bare_zoom, ""),
        ("Blueno plot, full redraw after a zoom or pan, GUI thread (old image moved; exact one drawn by a worker)",
         zoom_gui, ">= 3x"),
        ("Blueno plot, full redraw after a zoom or pan, until the exact picture is painted", zoom_exact, ""),
        (
            f"Blueno plot, live frame ({LIVE_RUNS} runs grow, {RUNS - LIVE_RUNS} settled)",
            frame,
            ">= 3x, <= 40 ms",
        ),
        (f"Blueno plot, repaint of {RUNS} settled runs", repaint, ""),
    ]
    for number, (name, ms, target) in enumerate(rows):
        baseline = bare_zoom if number in (2, 3) else bare
        print(f"| {name} | {ms:.1f} ms | {baseline / ms:.1f}x | {target} |")
    print(f"| load 100,000 runs into the table | {load:.0f} ms | | <= 1000 ms |")
    print(f"| sort 100,000 runs by a parameter | {sort:.0f} ms | | <= 200 ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
