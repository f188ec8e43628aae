"""Starting the desktop app: ``gui.app.run(workspace, argv)``, called by ``main.py``."""

from __future__ import annotations

import gc
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QMessageBox

from blueno import BluenoError
from blueno.workspace import Workspace
from gui.workers import wait_for_pool

RESOURCES = Path(__file__).resolve().parent.parent / "resources"


# The scheduler runs in a process of its own (blueno.service), so neither setting below is
# for it: both were measured with the scheduler in another process (tests/reliability/
# test_gui_stall.py runs `--batch` beside the window) and serve the window itself.
# Worker threads (imports, reads, the sync) run Python too.  With the default 5 ms GIL switch
# interval a paint, which calls into Python for every item, can wait 5 ms at each call: a
# 1 ms interval keeps the event loop's worst case well under 100 ms while they work.
GIL_SWITCH_INTERVAL_S = 0.001


def prepare_interpreter() -> None:
    """Interpreter settings for a responsive GUI process (``run`` and the benchmarks call it)."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


def freeze_startup_heap() -> None:
    """Exempt everything built at start-up from the cyclic garbage collector.

    Full collections walked the ~200,000 objects of the imported modules and the
    window each time, 110–155 ms on the GUI thread (the longest stalls seen
    while a batch enqueued 500 jobs).  Frozen, they are never scanned again;
    what the app makes later is collected as usual.
    """
    gc.collect()
    gc.freeze()


def run(workspace: Workspace, argv: Sequence[str] | None = None) -> int:
    """Open the main window on ``workspace`` and run the event loop; the exit status."""
    prepare_interpreter()
    app = QApplication.instance() or QApplication(list(argv if argv is not None else sys.argv))
    app.setApplicationName("Blueno")
    app.setOrganizationName("Blueno")
    style = RESOURCES / "style.qss"
    if style.is_file():
        app.setStyleSheet(style.read_text(encoding="utf-8"))
    icon = RESOURCES / "icons" / "blueno.svg"
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    try:
        store = workspace.open_store()
    except BluenoError as exc:
        QMessageBox.critical(None, "Blueno", str(exc))
        return 2
    from gui.main_window import MainWindow  # after QApplication: the views build widgets

    window = MainWindow(workspace, store)
    window.show()
    freeze_startup_heap()
    # Ctrl+C in the terminal closes the window the normal way (Python handles signals only
    # between Qt events, hence the idle timer).
    signal.signal(signal.SIGINT, lambda *_: window.close())
    wake = QTimer()
    wake.start(250)
    wake.timeout.connect(lambda: None)
    try:
        return app.exec()
    finally:
        window.shutdown()
        wait_for_pool()
        store.close()
