"""The longest event-loop stall while the GUI is busy: ``python benchmarks/gui_stall.py [SECONDS]``.

The scenario of issue 4: the main window shows the runs view with four
running runs selected, while four trainer-like processes stream metrics
into the workspace database (a ``batch_loss`` point every 10 ms, flushed in
batches, plus one epoch's metrics a second), a dataset import of 3,000
files runs in the window, and the window's sync thread sends 200 finished
runs to an Elasticsearch stand-in.  A 5 ms timer on the GUI thread
records how late each tick fires; the longest gap minus 5 ms is the stall.
``BLUENO_STALL_TRACE=1`` prints, on stderr, every thread's stack while the
GUI thread is stalled, and the stalls over 50 ms with when they happened.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "gui")]

import numpy as np  # noqa: E402
from PySide6.QtCore import QItemSelectionModel, QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from blueno.store import add_outbox  # noqa: E402
from blueno.workspace import Workspace  # noqa: E402

TICK_MS = 5
WRITER = textwrap.dedent("""
    import sys, time
    from blueno.metrics import MetricsRecorder
    from blueno.store import Store
    store, run_id, seconds = Store(sys.argv[1], migrate=False), int(sys.argv[2]), float(sys.argv[3])
    with MetricsRecorder(store, run_id, flush_seconds=0.5) as recorder:
        step, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            recorder.log("batch_loss", step, 1.0 / (1 + step / 100))
            if step % 100 == 99:
                epoch = step // 100
                recorder.log("loss", epoch, 1.0 / (1 + epoch))
                recorder.log("val_loss", epoch, 1.2 / (1 + epoch))
                with store.write() as conn:
                    conn.execute(
                        "UPDATE jobs SET epoch = ? WHERE id = (SELECT job_id FROM runs WHERE id = ?)",
                        (epoch + 1, run_id),
                    )
            step += 1
            time.sleep(0.01)
""")


def dataset_folder(root: Path, samples: int = 3000) -> Path:
    folder = root / "incoming"
    folder.mkdir()
    rng = np.random.default_rng(0)
    lines = ["id,label"]
    for i in range(samples):
        np.save(folder / f"s{i}.npy", rng.random((28, 28), dtype=np.float32))
        lines.append(f"s{i},{i % 10}")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return folder


def _watch_gui_thread(last: list[float], until: float) -> None:
    """Print the GUI thread's stack whenever a tick is 50 ms late (BLUENO_STALL_TRACE=1)."""
    import threading
    import traceback

    gui_thread = threading.get_ident()

    def watch() -> None:
        while time.monotonic() < until:
            time.sleep(0.05)
            if time.perf_counter() - last[0] > 0.05:
                for ident, frame in sys._current_frames().items():
                    if ident != threading.get_ident():
                        where = "GUI" if ident == gui_thread else "worker"
                        stack = "".join(traceback.format_stack(frame)[-4:])
                        print(f"--- stall, {where}:", stack, file=sys.stderr)

    threading.Thread(target=watch, daemon=True).start()


def main(seconds: float = 15.0) -> int:
    from es_server import EsTestServer
    from gui_helpers import add_runs

    from gui.app import freeze_startup_heap, prepare_interpreter
    from gui.main_window import MainWindow
    from gui.table_model import ID_ROLE
    from gui.workers import wait_for_pool

    prepare_interpreter()  # as gui.app.run does
    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as folder:
        workspace = Workspace(Path(folder) / "ws").ensure()
        store = workspace.open_store()
        running = add_runs(store, 4, state="running", epochs=100)
        finished = add_runs(store, 200)
        with store.write() as conn:
            for run_id in finished:
                add_outbox(conn, "run", run_id)
        incoming = dataset_folder(Path(folder))
        server = EsTestServer().up()
        workspace.settings_path.write_text(f'[elasticsearch]\nurl = "{server.url}"\n')

        window = MainWindow(
            workspace, store, QSettings(str(Path(folder) / "gui.ini"), QSettings.Format.IniFormat)
        )
        window.resize(1280, 800)
        window.show()
        freeze_startup_heap()  # as gui.app.run does
        window.tabs.setCurrentWidget(window.runs_view)
        deadline = time.monotonic() + 10
        while window.runs_view.model.rowCount() < 204 and time.monotonic() < deadline:
            app.processEvents()
        view = window.runs_view
        for row in range(view.proxy.rowCount()):
            index = view.proxy.index(row, 0)
            if index.data(ID_ROLE) in running:
                view.table.selectionModel().select(
                    index, QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
                )

        settle = time.monotonic() + 2  # the first paint of the window is not part of the scenario
        while time.monotonic() < settle:
            app.processEvents()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "BLUENO_HOME": str(workspace.root)}
        writers = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, str(workspace.db_path), str(run_id), str(seconds)], env=env
            )
            for run_id in running
        ]
        window.datasets_view.import_paths([incoming], confirm=False)

        gaps: list[float] = []
        last = [time.perf_counter()]

        started = time.perf_counter()
        worst: list[tuple[float, float]] = []

        def tick() -> None:
            now = time.perf_counter()
            gaps.append((now - last[0]) * 1000 - TICK_MS)
            if gaps[-1] > 50:
                worst.append((round(last[0] - started, 2), round(gaps[-1])))
            last[0] = now

        if os.environ.get("BLUENO_STALL_TRACE"):
            _watch_gui_thread(last, time.monotonic() + seconds)
        timer = QTimer()
        timer.setInterval(TICK_MS)
        timer.timeout.connect(tick)
        timer.start()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.001)
        timer.stop()
        imported = window.datasets_view.model.rowCount()
        if os.environ.get("BLUENO_STALL_TRACE"):
            print("stalls over 50 ms (seconds in, ms):", worst, file=sys.stderr)
        points = len(view.plot.live.series)
        for process in writers:
            process.wait(timeout=60)
        window.shutdown()
        wait_for_pool()
        window.close()
        store.close()
        server.down()

    gaps.sort()
    print(f"cpu cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}\n")
    print("| measure | value | target |")
    print("| --- | ---: | --- |")
    scenario = f"longest event-loop stall over {seconds:.0f} s (4 writers, import, sync)"
    print(f"| {scenario} | {gaps[-1]:.0f} ms | <= 100 ms |")
    print(f"| 99th percentile stall | {gaps[int(len(gaps) * 0.99)]:.0f} ms | |")
    print(f"| median stall | {statistics.median(gaps):.1f} ms | |")
    print(f"| dataset versions after the import / curves on screen | {imported} / {points} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 15.0))
