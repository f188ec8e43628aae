"""Drive the real app in a real X window: ``python tests/gui/real_window_driver.py HOME``.

``tests/gui/test_real_window.py`` runs this under Xvfb with ``QT_QPA_PLATFORM=xcb``.
It starts the app through ``main.main`` (the path ``python main.py`` takes),
then, from inside its event loop, works the window as a user would with
QTest mouse clicks and key presses on the real widgets: create the demo
dataset from the welcome banner, Ctrl+2 to the grid builder, a one-training
grid, Enqueue, Start, wait for success, Stop, Ctrl+Q.  Each step prints a
line; a failed step prints its traceback and closes the window with exit 3.
"""

from __future__ import annotations

import faulthandler
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QEventLoop, Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QWidget

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

TRAINING_TIMEOUT_S = 240
failure: list[str] = []


def step(text: str) -> None:
    print(f"driver: {text}", flush=True)


def wait_until(what: str, condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Run the event loop until ``condition()`` holds, else fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            faulthandler.dump_traceback(all_threads=True)  # where the app was stuck
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        pause(50)


def pause(ms: int) -> None:
    """Let the event loop run for ``ms`` (a nested loop, which lets worker threads have the GIL:
    ``QTest.qWait`` keeps it, and the app's background reads then never finish)."""
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def click(widget: QWidget) -> None:
    """A left click in the middle of a visible, enabled widget (a real mouse event through X)."""
    wait_until(f"{widget.objectName() or type(widget).__name__} to be clickable",
               lambda: widget.isVisible() and widget.isEnabled())
    QTest.mouseClick(widget, Qt.MouseButton.LeftButton)


def type_into(line_edit: QWidget, text: str) -> None:
    click(line_edit)
    QTest.keyClick(line_edit, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    QTest.keyClicks(line_edit, text)


def drive(app: QApplication) -> None:
    from gui.main_window import MainWindow

    wait_until("the main window", lambda: any(isinstance(w, MainWindow) and w.isVisible()
                                               for w in app.topLevelWidgets()))
    window = next(w for w in app.topLevelWidgets() if isinstance(w, MainWindow))
    window.statusBar().messageChanged.connect(lambda text: text and step(f"status bar: {text}"))
    try:
        assert QApplication.platformName() == "xcb", QApplication.platformName()
        assert QTest.qWaitForWindowExposed(window, 5000), "the window was never exposed"
        screen = window.screen().availableGeometry()
        assert window.width() <= screen.width(), f"{window.width()} px wide on a {screen.width()} px screen"
        window.activateWindow()  # Xvfb has no window manager to give it the focus
        wait_until("the window to be active", window.isActiveWindow)
        step(f"window exposed on {QApplication.platformName()} at {window.width()}x{window.height()}")

        welcome = window.welcome
        wait_until("the welcome banner", welcome.isVisible)
        click(welcome.create_demo)
        wait_until("the demo dataset", lambda: (welcome.state or {}).get("datasets", 0) > 0, 180)
        step("demo dataset created from the banner")

        QTest.keyClick(window, Qt.Key.Key_2, Qt.KeyboardModifier.ControlModifier)
        builder = window.grid_view
        wait_until("the grid builder tab", lambda: window.tabs.currentWidget() is builder)
        wait_until("digits in the dataset list", lambda: builder.dataset.findText("digits") >= 0)
        builder.dataset.setCurrentIndex(builder.dataset.findText("digits"))
        for name, box in builder.model_boxes.items():
            if box.isChecked() != (name == "mlp"):
                click(box)
        for key, value in (("params.epochs", "1"), ("models.mlp.hidden_units", "8")):
            row = builder.rows[key]
            row.mode.setCurrentText("fixed")
            type_into(row.text, value)
        wait_until("a one-training grid", lambda: builder.summary.text().startswith("1 training"))
        step(f"grid: {builder.summary.text()}")
        click(builder.enqueue_button)

        queue = window.queue_view
        wait_until("the queue tab", lambda: window.tabs.currentWidget() is queue)
        wait_until("one queued job", lambda: queue.model.rowCount() == 1)
        click(queue.toolbar.widgetForAction(queue.actions_by_name["start"]))
        step("started")
        wait_until("the training to succeed",
                   lambda: [r["state"] for r in queue.model.rows()] == ["succeeded"], TRAINING_TIMEOUT_S)
        step("succeeded")
        QTest.keyClick(window, Qt.Key.Key_4, Qt.KeyboardModifier.ControlModifier)
        wait_until("the run in the runs table", lambda: window.runs_view.model.rowCount() == 1)

        QTest.keyClick(window, Qt.Key.Key_3, Qt.KeyboardModifier.ControlModifier)
        click(queue.toolbar.widgetForAction(queue.actions_by_name["stop"]))
        wait_until("the scheduler to stop", lambda: window.scheduler.status.state == "stopped", 30)
        step("stopped; quitting with Ctrl+Q")
    except BaseException:  # noqa: BLE001 - reported, then the window closes and the exit says so
        failure.append(traceback.format_exc())
        print(failure[-1], file=sys.stderr, flush=True)
        if window.scheduler.status.state != "stopped":  # quit without the question
            window.scheduler.stop(cancel_running=True)
            wait_until("the scheduler to stop", lambda: window.scheduler.status.state == "stopped", 30)
    QTest.keyClick(window, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    if window.isVisible():
        failure.append("Ctrl+Q left the window open")
        window.close()

def main(home: str) -> int:
    import main as blueno_main

    app = QApplication(sys.argv[:1])
    QTimer.singleShot(0, lambda: drive(app))
    status = blueno_main.main(["--home", home])
    step(f"event loop left with {status}")
    return 3 if failure else status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
