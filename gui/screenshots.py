"""Save a PNG of each view: ``python -m gui.screenshots OUTDIR [--home DIR] [--grid FILE]``.

``make screenshots`` runs it under ``xvfb-run`` on the demo workspace, after
running ``resources/examples/screenshots.toml`` (4 short trainings) when the
workspace has no finished run; it works offscreen too
(``QT_QPA_PLATFORM=offscreen``).  The window is 1280 x 800, the size the
views must work at.  Each view is shown as a user would leave it: the first
dataset selected with its preview, the grid builder holding a grid file, the
queue, every run selected in the runs view with its curves, then one run's
evaluation (``--run``, default the best finished run of the experiment with
the most finished runs: the pane alone in full as ``*-full.png`` too), the
comparison of up to four of its experiment's runs, and the parallel
coordinates of that experiment with one axis brushed (the runs table
filtered to the brushed runs).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, QSettings
from PySide6.QtWidgets import QApplication

from blueno.monitor import is_maximized
from blueno.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
DEMO_GRID = ROOT / "resources" / "examples" / "demo.toml"
SIZE = (1280, 800)


def settle(app: QApplication, until: Callable[[], bool] = lambda: False, seconds: float = 3.0) -> None:
    """Run the event loop until ``until()`` holds (workers report back) or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not until():
        app.processEvents()
        time.sleep(0.02)
    app.processEvents()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gui.screenshots", description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--home", help="workspace (default: as blueno locates it)")
    parser.add_argument("--grid", type=Path, default=DEMO_GRID, help="grid file shown in the grid builder")
    parser.add_argument("--run", type=int, help="run whose evaluation is shown (default: a representative run)")
    args = parser.parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)

    app = QApplication.instance() or QApplication(sys.argv[:1])
    from gui.main_window import MainWindow
    from gui.workers import wait_for_pool

    workspace = Workspace.locate(args.home)
    store = workspace.open_store()
    chosen = representative_runs(store)
    if args.run is None and chosen:
        args.run = chosen[0]
    settings = QSettings(str(args.outdir / ".screenshots.ini"), QSettings.Format.IniFormat)
    window = MainWindow(workspace, store, settings)
    window.resize(*SIZE)
    window.show()
    settle(app, lambda: window.runs_view.model.loaded, seconds=10)

    view = window.runs_view
    shots: list[tuple[str, Callable[[], None], Callable[[], bool]]] = [
        (
            "datasets",
            lambda: window.datasets_view.table.selectRow(0),
            lambda: window.datasets_view.preview_layout.count() > 1,
        ),
        (
            "grid-builder",
            lambda: window.grid_view.load(args.grid) if args.grid.is_file() else None,
            lambda: "training" in window.grid_view.summary.text(),
        ),
        (
            "queue",
            lambda: window.queue_view.table.selectRow(0),
            lambda: window.queue_view.model.rowCount() > 0,
        ),
        ("runs", lambda: _select_all_runs(window), lambda: bool(window.runs_view.plot.live.series)),
        (
            "run-evaluation",
            lambda: _show_evaluation(window, args.run),
            lambda: view.detail.evaluation.shown_run_id is not None,
        ),
        ("compare", lambda: _compare(window, chosen), lambda: view.compare.model.columnCount() > 1),
        ("parallel-coordinates", lambda: _parallel(window), lambda: view.proxy.run_ids is not None),
    ]
    tabs = [0, 1, 2, 3, 3, 3, 3]
    for number, (name, prepare, ready) in enumerate(shots):
        window.tabs.setCurrentIndex(tabs[number])
        settle(app, seconds=0.3)
        prepare()
        settle(app, ready, seconds=10)
        settle(app, seconds=0.5)  # the plot's redraw timer, late repaints
        path = args.outdir / f"{number + 1}-{name}.png"
        window.grab().save(str(path))
        print(path)
        if name == "run-evaluation":  # the whole pane, as it scrolls
            content = view.detail.evaluation.content
            scroll = content.parentWidget().parentWidget()  # viewport, then the QScrollArea
            scroll.setWidgetResizable(False)  # else it squeezes the pane back into the window
            content.resize(max(1100, content.minimumSizeHint().width()), content.sizeHint().height())
            settle(app, seconds=0.5)
            full = args.outdir / f"{number + 1}-{name}-full.png"
            content.grab().save(str(full))
            scroll.setWidgetResizable(True)
            print(full)
    window.shutdown()
    window.close()
    wait_for_pool()
    store.close()
    return 0


def representative_runs(store) -> list[int]:
    """The best four finished runs of the experiment with the most finished runs, best first
    (so parallel coordinates have lines to draw and the evaluation shows a success)."""
    from blueno import runs

    finished = runs.list_runs(store, state="succeeded")
    counts: dict[int, int] = {}
    for run in finished:
        if run["experiment_id"] is not None and run["best"]:
            counts[run["experiment_id"]] = counts.get(run["experiment_id"], 0) + 1
    if not counts:
        return [run["id"] for run in finished[:1]]
    experiment = max(counts, key=lambda e: (counts[e], e))
    return [run["id"] for run in runs.top_runs(store, experiment, limit=4)]


def _select_all_runs(window) -> None:
    view = window.runs_view
    view.table.selectAll()
    if view.proxy.rowCount():
        view.table.selectionModel().setCurrentIndex(
            view.proxy.index(0, 0), QItemSelectionModel.SelectionFlag.NoUpdate
        )


def _show_evaluation(window, run_id: int | None) -> None:
    view = window.runs_view
    view.filter_run_ids(None)
    view.splitter.setSizes([300, 980])
    view.right.setSizes([0, 760])
    view.detail.setCurrentWidget(view.detail.evaluation)
    row = view.proxy.index(0, 0)
    if run_id is not None:
        position = view.model.position(run_id)
        if position is not None:
            row = view.proxy.mapFromSource(view.model.index(position, 0))
    view.table.clearSelection()
    view.table.selectRow(row.row())


def _compare(window, run_ids: list[int]) -> None:
    view = window.runs_view
    view.splitter.setSizes([380, 900])
    view.right.setSizes([760, 0])  # every parameter and metric row, TEST ones included
    view.detail.setCurrentIndex(0)
    view.table.clearSelection()
    selection = view.table.selectionModel()
    positions = [view.model.position(run_id) for run_id in run_ids]
    rows = [view.proxy.mapFromSource(view.model.index(p, 0)).row() for p in positions if p is not None]
    for row in rows or range(min(4, view.proxy.rowCount())):
        selection.select(
            view.proxy.index(row, 0), QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
        )
    view.show_comparison()


def _parallel(window) -> None:
    view = window.runs_view
    view.views.setCurrentWidget(view.parallel)
    view.right.setSizes([540, 220])
    plot = view.parallel.plot

    def brush() -> None:
        if plot.coords is not None:  # the better half of the metric
            better_half = (0.5, 1.0) if is_maximized(plot.coords.metric) else (0.0, 0.5)
            plot.brush(plot.names[-1], *better_half)

    settle(QApplication.instance(), lambda: plot.coords is not None, seconds=10)
    brush()


if __name__ == "__main__":
    sys.exit(main())
