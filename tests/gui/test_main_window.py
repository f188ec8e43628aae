"""The main window: the five views, the status bar, shortcuts, and remembered state."""

from __future__ import annotations

from gui_helpers import add_runs
from PySide6.QtCore import Qt

from gui.main_window import MainWindow
from gui.workers import wait_for_pool


def test_that_the_window_opens_on_an_empty_workspace_with_five_views(window: MainWindow) -> None:
    titles = [window.tabs.tabText(i).replace("&", "") for i in range(window.tabs.count())]
    assert titles == ["Datasets", "Grid builder", "Queue", "Runs", "Nodes"]


def test_that_ctrl_number_switches_views(qtbot, window: MainWindow) -> None:
    qtbot.keyClick(window, Qt.Key.Key_4, Qt.KeyboardModifier.ControlModifier)
    assert window.tabs.currentWidget() is window.runs_view
    qtbot.keyClick(window, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert window.tabs.currentWidget() is window.datasets_view


def test_that_the_status_bar_counts_jobs_written_by_another_connection(qtbot, window, workspace) -> None:
    with workspace.open_store() as other:  # another process's connection, as far as SQLite knows
        add_runs(other, 2, state="queued")
    qtbot.waitUntil(lambda: "2 queued" in window._jobs_label.text(), timeout=5000)


def test_that_the_tab_and_geometry_survive_a_restart(qtbot, workspace, store, qsettings) -> None:
    first = MainWindow(workspace, store, qsettings)
    qtbot.addWidget(first)
    first.show()
    first.resize(900, 600)
    first.tabs.setCurrentIndex(3)
    first.close()
    second = MainWindow(workspace, store, qsettings)
    qtbot.addWidget(second)
    second.show()
    assert second.tabs.currentIndex() == 3
    assert not qsettings.value("window/geometry").isEmpty()  # offscreen Qt does not honour it all
    second.shutdown()
    wait_for_pool()


def test_that_a_window_reopened_mid_grid_shows_the_jobs_as_they_are(
    qtbot, workspace, store, qsettings
) -> None:
    add_runs(store, 3, state="queued")
    first = MainWindow(workspace, store, qsettings)
    qtbot.addWidget(first)
    qtbot.waitUntil(lambda: first.queue_view.model.rowCount() == 3, timeout=5000)
    first.close()
    with store.write() as conn:  # the grid moves on while no window is open
        conn.execute("UPDATE jobs SET state = 'succeeded' WHERE id = (SELECT min(id) FROM jobs)")
    second = MainWindow(workspace, store, qsettings)
    qtbot.addWidget(second)
    model = second.queue_view.model
    qtbot.waitUntil(lambda: model.rowCount() == 3, timeout=5000)
    assert sorted(row["state"] for row in model.rows()) == ["queued", "queued", "succeeded"]
    second.shutdown()
    wait_for_pool()  # no background read may outlive the store the fixture closes next
