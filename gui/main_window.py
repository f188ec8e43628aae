"""The main window: navigation between the four views, menus, status bar, dropping.

It owns the pieces every view shares: the store, the :class:`StoreWatcher`
that tells views to re-read, and the :class:`SchedulerControl`.  Window
geometry and state live in ``QSettings`` between sessions; everything else
is in the database.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings, Qt
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import QLabel, QMainWindow, QMessageBox, QTabWidget, QVBoxLayout, QWidget

from blueno import __version__
from blueno.queue import JobQueue, JobState
from blueno.scheduler import active_scheduler
from blueno.settings import UserSettings, read_settings
from blueno.store import Store
from blueno.workspace import Workspace
from gui.datasets_view import QtDatasetsView
from gui.desktop import open_folder
from gui.grid_builder import QtGridBuilder
from gui.nodes_view import QtNodesView
from gui.queue_view import QtQueueView
from gui.runs_view import QtRunsView
from gui.scheduler_control import SchedulerControl, SchedulerStatus
from gui.settings_dialog import QtSettingsDialog
from gui.watcher import StoreWatcher
from gui.welcome import QtWelcome
from gui.workers import Fetcher, lower_priority, submit

DEFAULT_SIZE = (1280, 800)
SYNC_THREAD = "blueno-es-sync"  # the name blueno.elastic gives its thread


def read_status(store: Store) -> dict[str, Any]:
    """Job counts and pending syncs for the status bar (a worker-thread read)."""
    from blueno import elastic  # imports the Elasticsearch client: only once a worker needs it

    counts = {str(state): n for state, n in JobQueue(store).counts().items()}
    return {"counts": counts, "sync": elastic.status(store, parked_limit=0)}


def start_sync(workspace: Workspace, store: Store) -> Any:
    """The Elasticsearch sync thread when the settings name a server, else None (worker thread).

    While a scheduler process syncs the workspace (it holds the sync lock), this thread only
    stands by, and takes over when that process ends: one sender at a time, nothing left behind.

    It runs in this process, so it runs at the pool's lower priority too.
    """
    from blueno import elastic

    sync = elastic.start_background_sync(workspace, store)
    for thread in threading.enumerate():
        if thread.name == SYNC_THREAD and thread.native_id is not None:
            lower_priority(thread.native_id)
    return sync


class MainWindow(QMainWindow):
    """Datasets, Grid builder, Queue and Runs over one workspace."""

    def __init__(
        self,
        workspace: Workspace,
        store: Store,
        settings: QSettings | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.workspace = workspace
        self.store = store
        self._settings = settings or QSettings()
        self.setWindowTitle(f"Blueno — {workspace.root}")
        self.resize(*DEFAULT_SIZE)
        self.setAcceptDrops(True)

        self.watcher = StoreWatcher(store, parent=self)
        self.scheduler = SchedulerControl(workspace, store, self)

        self.datasets_view = QtDatasetsView(workspace, store, self.watcher.poke, self)
        self.grid_view = QtGridBuilder(workspace, store, self.watcher.poke, self)
        self.queue_view = QtQueueView(store, self.scheduler, self.watcher.poke, self)
        self.runs_view = QtRunsView(workspace, store, self)
        self.nodes_view = QtNodesView(store, self)
        self.tabs = QTabWidget(self)
        self.tabs.setDocumentMode(True)
        for view, title in (
            (self.datasets_view, "&Datasets"),
            (self.grid_view, "&Grid builder"),
            (self.queue_view, "&Queue"),
            (self.runs_view, "R&uns"),
            (self.nodes_view, "&Nodes"),
        ):
            self.tabs.addTab(view, title)
        self.welcome = QtWelcome(workspace, store, self)
        central = QWidget(self)
        central_layout = QVBoxLayout(central)
        central_layout.setContentsMargins(6, 6, 6, 0)
        central_layout.addWidget(self.welcome)
        central_layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        self.welcome.status_message.connect(self.show_message)
        self.welcome.import_requested.connect(self.datasets_view.choose_and_import)
        self.welcome.build_requested.connect(lambda: self.tabs.setCurrentWidget(self.grid_view))
        self.welcome.demo_queued.connect(self._on_demo_queued)
        self._select_new_runs = False
        self._demo_runs = 0

        for view in (self.datasets_view, self.grid_view, self.queue_view, self.runs_view, self.nodes_view):
            view.status_message.connect(self.show_message)
        self.grid_view.enqueued.connect(lambda: self.tabs.setCurrentWidget(self.queue_view))
        self.watcher.changed.connect(self.refresh)

        self._scheduler_label = QLabel(self)
        self._slots_label = QLabel(self)
        self._jobs_label = QLabel(self)
        self._sync_label = QLabel(self)
        for label in (self._jobs_label, self._slots_label, self._sync_label, self._scheduler_label):
            self.statusBar().addPermanentWidget(label)
        self._status = Fetcher(lambda: lambda: read_status(store), self)
        self._status.ready.connect(self._show_status)
        self.scheduler.status_changed.connect(self._on_scheduler)
        self._counts: dict[str, int] = {}
        self._on_scheduler(self.scheduler.status)

        self._build_menus()
        self._restore()
        self.refresh()
        self._sync: Any = None
        self.close_question: QMessageBox | None = None
        # Close without asking: keep (True) or stop (False) running trainings; None asks.
        self.keep_training_on_close: bool | None = None
        self._shut_down = False
        submit(
            start_sync,
            workspace,
            store,
            on_done=self._on_sync_started,
            on_error=lambda exc: self.show_message(f"Elasticsearch sync is off: {exc}"),
        )

    # -- menus -----------------------------------------------------------------

    def _action(self, menu, text: str, shortcut: Any, handler, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(handler)
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(
            file_menu,
            "&Import dataset…",
            "Ctrl+I",
            self.datasets_view.choose_and_import,
            "Import .npz, .csv files or .zip/.tar.gz archives as datasets",
        )
        self._action(
            file_menu,
            "Import dataset &folder…",
            "Ctrl+Shift+I",
            self.datasets_view.choose_folder_and_import,
            "Import a folder (.npy arrays with labels.csv, or one sub-folder of images per class)",
        )
        self._action(file_menu, "&Open grid…", QKeySequence.StandardKey.Open, self.grid_view.load_dialog)
        self._action(file_menu, "&Save grid…", QKeySequence.StandardKey.Save, self.grid_view.save_dialog)
        file_menu.addSeparator()
        self._action(
            file_menu,
            "Open &workspace folder",
            None,
            self.open_workspace_folder,
        )
        self._action(file_menu, "Se&ttings…", "Ctrl+,", self.open_settings)
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", QKeySequence.StandardKey.Quit, self.close)

        view_menu = bar.addMenu("&View")
        for number in range(self.tabs.count()):
            title = self.tabs.tabText(number).replace("&", "")
            self._action(
                view_menu, title, f"Ctrl+{number + 1}", lambda _=False, n=number: self.tabs.setCurrentIndex(n)
            )
        view_menu.addSeparator()
        self._action(view_menu, "&Refresh", QKeySequence.StandardKey.Refresh, self.watcher.poke)

        runs_menu = bar.addMenu("&Runs")
        for action in self.runs_view.actions_by_name.values():
            runs_menu.addAction(action)
        runs_menu.addSeparator()
        self._action(runs_menu, "Export run &report…", None, self.runs_view.detail.evaluation.choose_and_export,
                     "Write the current run's HTML report to a folder")
        self._action(runs_menu, "Export e&xperiment report…", None, self.runs_view.parallel.choose_and_export,
                     "Write the experiment's HTML report (top runs, parameter effects) to a folder")

        scheduler_menu = bar.addMenu("&Scheduler")
        for name in ("start", "pause", "stop"):
            scheduler_menu.addAction(self.queue_view.actions_by_name[name])

        help_menu = bar.addMenu("&Help")
        self._action(
            help_menu,
            "&About Blueno",
            None,
            lambda: QMessageBox.about(
                self, "Blueno", f"Blueno {__version__}\nWorkspace: {self.workspace.root}"
            ),
        )

    # -- state -----------------------------------------------------------------

    def refresh(self) -> None:
        """Something changed in the database: every view re-reads what is new."""
        self._status.request()
        self.queue_view.refresh()
        self.runs_view.refresh()
        self.datasets_view.refresh()
        self.grid_view.refresh()
        self.welcome.refresh()
        self.nodes_view.refresh()

    def _on_demo_queued(self, result: Any) -> None:
        """The demo grid is queued: start training and show its runs' curves as they grow."""
        self.show_message(f"queued {len(result.added)} demo trainings; starting the scheduler")
        self._demo_runs = len(result.added) + len(result.requeued)
        self.welcome.dismiss()
        self.watcher.poke()
        if self.scheduler.status.state in ("stopped", "paused"):
            self.scheduler.start()
        self.tabs.setCurrentWidget(self.runs_view)
        self._select_new_runs = True
        self.runs_view.model.rowsInserted.connect(self._select_runs_when_loaded)
        self.runs_view.model.modelReset.connect(self._select_runs_when_loaded)
        self._select_runs_when_loaded()
        self.watcher.poke()

    def _select_runs_when_loaded(self, *_: Any) -> None:
        """Select every run as the demo's arrive in the table, so all their curves show and grow."""
        if not self._select_new_runs:
            return
        self.runs_view.table.selectAll()
        if len(self.runs_view.selected_ids()) >= self._counts_total():
            self._select_new_runs = False
            self.runs_view.model.rowsInserted.disconnect(self._select_runs_when_loaded)
            self.runs_view.model.modelReset.disconnect(self._select_runs_when_loaded)

    def _counts_total(self) -> int:
        return max(self._demo_runs, 1)

    def _on_sync_started(self, sync: Any) -> None:
        self._sync = sync

    def shutdown(self, keep_training: bool = True) -> None:
        """Stop what runs in this process (the watcher, the sync thread); the scheduler process
        goes on unless ``keep_training`` is False."""
        self._shut_down = True
        self.watcher.stop()
        self.runs_view.shutdown()
        self.scheduler.shutdown(keep_running=keep_training)
        sync, self._sync = self._sync, None
        if sync is not None:
            sync.stop()

    def open_workspace_folder(self) -> None:
        problem = open_folder(self.workspace.root)
        if problem:
            self.show_message(problem)

    def show_message(self, text: str) -> None:
        self.statusBar().showMessage(text, 8000)

    def open_settings(self) -> None:
        """Read the settings off the GUI thread, then show them in the dialog."""
        submit(read_settings, self.workspace, on_done=self._edit_settings,
               on_error=lambda exc: QMessageBox.warning(self, "Blueno", str(exc)))

    def _edit_settings(self, current: UserSettings) -> None:
        dialog = QtSettingsDialog(self.workspace, current, parent=self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self.show_message(f"settings saved to {self.workspace.settings_path}"))
        dialog.open()  # window-modal without a nested event loop

    def _on_scheduler(self, status: SchedulerStatus) -> None:
        self._scheduler_label.setText(status.describe())
        self._show_slots()

    def _show_status(self, status: dict[str, Any]) -> None:
        self._counts = status["counts"]
        states = ("running", "queued", "held", "failed", "succeeded")
        parts = [f"{self._counts[s]} {s}" for s in states if self._counts.get(s)]
        self._jobs_label.setText(", ".join(parts) or "no jobs")
        # Only a configured sync has anything to say; unsent results simply wait in the outbox.
        self._sync_label.setText(status["sync"].summary() if self._sync is not None else "")
        self._show_slots()

    def _show_slots(self) -> None:
        total = len(self.scheduler.status.slots)
        busy = self._counts.get("running", 0)
        self._slots_label.setText(f"slots {busy} busy / {max(total - busy, 0)} free" if total else "")

    def _restore(self) -> None:
        geometry = self._settings.value("window/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        state = self._settings.value("window/state")
        if isinstance(state, QByteArray):
            self.restoreState(state)
        self.tabs.setCurrentIndex(int(self._settings.value("window/tab", 2)))
        self.runs_view.restore(self._settings)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._shut_down:  # already shut down (by whoever owns the window): nothing left to ask
            super().closeEvent(event)
            return
        keep = self.ask_keep_training()
        if keep is None:
            event.ignore()
            return
        self._settings.setValue("window/geometry", self.saveGeometry())
        self._settings.setValue("window/state", self.saveState())
        self._settings.setValue("window/tab", self.tabs.currentIndex())
        self.runs_view.save(self._settings)
        self.shutdown(keep_training=keep)
        super().closeEvent(event)

    def ask_keep_training(self) -> bool | None:
        """Closing with trainings running: keep them going without the window (True), stop them
        (False: they checkpoint and are requeued), or stay open (None).  Nothing running: no question."""
        running = JobQueue(self.store).counts()[JobState.RUNNING]
        if running and active_scheduler(self.workspace, self.store) is None:
            running = 0  # left over from a scheduler that died: the next one settles them
        if running and self.keep_training_on_close is not None:
            return self.keep_training_on_close
        if not running:
            # A scheduler this window started and left with nothing to do ends with it.
            return not (self.scheduler.started_here and not JobQueue(self.store).has_runnable())
        text = f"{running} job{'s' * (running != 1)} running."
        box = QMessageBox(QMessageBox.Icon.Question, "Blueno", text, parent=self)
        box.setInformativeText("The scheduler runs on its own: it can go on training while the window is closed, "
                               "and the app attaches to it when opened again. Stopped trainings resume from their "
                               "last checkpoint at the next Start.")
        keep = box.addButton("&Keep training in the background", QMessageBox.ButtonRole.AcceptRole)
        stop = box.addButton("&Stop them", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(keep)
        self.close_question = box  # tests answer it like a user
        box.exec()
        self.close_question = None
        clicked = box.clickedButton()
        return True if clicked is keep else False if clicked is stop else None

    # -- dropping files anywhere ---------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.tabs.setCurrentWidget(self.datasets_view)
            self.datasets_view.import_paths(paths)
