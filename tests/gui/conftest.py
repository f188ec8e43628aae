"""Qt fixtures: an offscreen platform, isolated QSettings, a main window over a fresh workspace."""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before anything imports Qt

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402

from blueno.store import Store  # noqa: E402
from blueno.workspace import Workspace  # noqa: E402
from gui.workers import wait_for_pool  # noqa: E402


@pytest.fixture
def qsettings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "gui.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def window(qtbot, workspace: Workspace, store: Store, qsettings: QSettings) -> Iterator:
    from gui.main_window import MainWindow

    win = MainWindow(workspace, store, qsettings)
    win.keep_training_on_close = False  # pytest-qt closes it at teardown: no question, no scheduler left
    qtbot.addWidget(win)
    win.show()
    yield win
    win.shutdown(keep_training=False)  # a scheduler process a test started ends with it
    wait_for_pool()
