"""The banner an empty workspace opens with: the short path to a first experiment.

Three steps, each one click: data (create the digits demo dataset, or
import one), a grid (build one, or take the demo grid), training (start the
scheduler and watch the curves).  "Run the demo" does all three at once.
The banner reads the workspace's counts off the GUI thread on every database
change, ticks the steps that are done, and hides itself for good once the
workspace has jobs or runs: it never stands between a user and their work.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from blueno import demo
from blueno.store import Store
from blueno.workspace import Workspace
from gui.workers import Fetcher, submit

DONE = "✓"


class QtWelcome(QFrame):
    """Steps to a first experiment; ``demo_queued`` when the demo grid is in the queue."""

    demo_queued = Signal(object)  # blueno.queue.SubmitResult
    import_requested = Signal()
    build_requested = Signal()
    status_message = Signal(str)

    def __init__(self, workspace: Workspace, store: Store, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._workspace, self._store = workspace, store
        self.setObjectName("welcome")
        self.setStyleSheet("#welcome { background: #e3f2fd; border: 1px solid #90caf9; border-radius: 6px; }")
        self.state: dict[str, int] | None = None
        self.title = QLabel("<b>Welcome to Blueno.</b> Three steps to a first experiment, or the demo in one click:",
                            self)
        self.run_demo = QPushButton("▶  Run the demo: 8 small trainings on the digits (a few minutes)", self)
        self.run_demo.setDefault(True)
        self.run_demo.setToolTip("Creates the digits dataset if needed, queues resources/examples/demo.toml, "
                                 "starts the scheduler and shows the curves as they grow.")
        self.steps = {
            "data": QLabel(self),
            "grid": QLabel(self),
            "train": QLabel(self),
        }
        self.create_demo = QPushButton("Create the demo dataset", self)
        self.import_button = QPushButton("Import a dataset…", self)
        self.build_button = QPushButton("Build a grid", self)
        self.hide_button = QPushButton("Hide", self)
        self.hide_button.setFlat(True)
        for label in self.steps.values():
            label.setTextFormat(Qt.TextFormat.RichText)

        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.run_demo)  # on the title's row: both rows fit a 1280-pixel screen
        top.addWidget(self.hide_button)
        steps = QHBoxLayout()
        steps.addWidget(self.steps["data"])
        steps.addWidget(self.create_demo)
        steps.addWidget(self.import_button)
        steps.addSpacing(18)
        steps.addWidget(self.steps["grid"])
        steps.addWidget(self.build_button)
        steps.addSpacing(18)
        steps.addWidget(self.steps["train"])
        steps.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.addLayout(top)
        layout.addLayout(steps)

        self.run_demo.clicked.connect(self.queue_demo)
        self.create_demo.clicked.connect(self._create_demo_dataset)
        self.import_button.clicked.connect(self.import_requested)
        self.build_button.clicked.connect(self.build_requested)
        self.hide_button.clicked.connect(self.dismiss)
        self.dismissed = False
        self._fetcher = Fetcher(lambda: lambda: demo.workspace_state(store), self)
        self._fetcher.ready.connect(self._show_state)
        self.hide()
        self.refresh()

    def refresh(self) -> None:
        """Re-read the counts (the database changed); a dismissed banner stays hidden."""
        if not self.dismissed:
            self._fetcher.request()

    def dismiss(self) -> None:
        self.dismissed = True
        self.hide()

    def _show_state(self, state: dict[str, int]) -> None:
        self.state = state
        if state["jobs"] or state["runs"]:
            self.dismiss()  # there is work: out of the way, for good
            return
        have_data = state["datasets"] > 0
        self.steps["data"].setText(f"{DONE} <b>1.</b> {state['datasets']} dataset{'s' * (state['datasets'] != 1)}"
                                   if have_data else "<b>1.</b> Data:")
        self.create_demo.setVisible(not have_data)
        self.import_button.setVisible(not have_data)
        self.steps["grid"].setText("<b>2.</b> A grid of trainings:")
        self.steps["train"].setText("<b>3.</b> Start (Queue tab) and watch the Runs tab")
        self.show()

    def _create_demo_dataset(self) -> None:
        from blueno import datasets

        self.create_demo.setEnabled(False)
        self.status_message.emit("creating the digits demo dataset…")
        submit(datasets.make_demo, self._workspace, self._store,
               on_done=lambda version: self._done(f"created the demo dataset {version.ref}"),
               on_error=self._failed)

    def queue_demo(self) -> None:
        """Dataset, grid and queue in one worker call; the window then starts the scheduler."""
        self.run_demo.setEnabled(False)
        self.status_message.emit("queuing the demo grid…")
        submit(demo.queue_demo, self._workspace, self._store, on_done=self._queued, on_error=self._failed)

    def _queued(self, result: Any) -> None:
        self.run_demo.setEnabled(True)
        self.demo_queued.emit(result)

    def _done(self, text: str) -> None:
        self.create_demo.setEnabled(True)
        self.status_message.emit(text)
        self.refresh()

    def _failed(self, exc: BaseException) -> None:
        self.run_demo.setEnabled(True)
        self.create_demo.setEnabled(True)
        self.status_message.emit(f"The demo could not be set up: {exc}")
