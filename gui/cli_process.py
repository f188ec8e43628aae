"""Blueno commands that need Keras, run as a child process so the window never loads TensorFlow.

``blueno runs test`` reloads saved models and ``blueno runs ensemble`` may
have to predict: both import TensorFlow.  The window starts them through a
``QProcess`` (asynchronous: nothing waits on the GUI thread) and hears back
through :attr:`CliProcess.finished`; the database change they make reaches
the views through the store watcher like any other.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, Signal

from blueno.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent


def cli_arguments(workspace: Workspace, args: list[str]) -> list[str]:
    """The interpreter's arguments for ``blueno --home ROOT ARGS…``."""
    return ["-P", "-m", "blueno", "--home", str(workspace.root), *args]  # -P: the workspace (cwd) is not on sys.path


class CliProcess(QObject):
    """One ``blueno`` command at a time; ``finished(ok, command, output)`` when it ends."""

    started = Signal(str)
    finished = Signal(bool, str, str)

    def __init__(self, workspace: Workspace, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._workspace = workspace
        self._command = ""
        self.process = QProcess(self)
        self.process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        self.process.finished.connect(self._on_finished)
        self.process.errorOccurred.connect(self._on_error)

    @property
    def busy(self) -> bool:
        return self.process.state() != QProcess.ProcessState.NotRunning

    def run(self, args: list[str]) -> bool:
        """Start ``blueno ARGS…``; False (and nothing started) while another command runs."""
        if self.busy:
            return False
        self._command = "blueno " + " ".join(args)
        self.process.setWorkingDirectory(str(self._workspace.root))
        environment = QProcessEnvironment.systemEnvironment()  # this very Blueno, installed or not
        environment.insert("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), environment.value("PYTHONPATH")])))
        self.process.setProcessEnvironment(environment)
        self.process.start(sys.executable, cli_arguments(self._workspace, args))
        self.started.emit(self._command)
        return True

    def _output(self) -> str:
        return bytes(self.process.readAll().data()).decode("utf-8", errors="replace").strip()

    def _on_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        ok = status == QProcess.ExitStatus.NormalExit and code == 0
        self.finished.emit(ok, self._command, self._output())

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.finished.emit(False, self._command, self.process.errorString())

    def stop(self) -> None:
        if self.busy:
            self.process.kill()
            self.process.waitForFinished(2000)
