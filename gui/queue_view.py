"""The queue view: every job, its state and progress, and the actions on a selection.

``JobsTableModel`` adapts :class:`blueno.queue.JobQueue` to Qt; ``QtQueueView``
wires selection to the queue's cancel/retry/hold/release/prioritize, which
run off the GUI thread, and the scheduler buttons to :class:`SchedulerControl`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QModelIndex, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QBrush, QColor, QKeySequence, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QHeaderView,
    QLabel,
    QMessageBox,
    QSplitter,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from blueno import actions
from blueno.estimate import Estimate, estimate, plan_queue
from blueno.queue import PLACING, JobQueue
from blueno.scheduler import GpuStat, gpu_stats
from blueno.store import Store
from blueno.workspace import Workspace
from gui.formatting import STATE_COLOURS, format_duration, format_value
from gui.scheduler_control import SchedulerControl, SchedulerStatus
from gui.table_model import ID_ROLE, ROW_ROLE, Column, Row, RowsTableModel
from gui.workers import Fetcher, submit

GPU_POLL_MS = 2000
def elapsed(row: Row) -> float | None:
    if row["started"] is None:
        return None
    end = row["ended"] if row["ended"] is not None else time.time()
    return end - row["started"] if row["state"] != "queued" else None


def eta(row: Row) -> float | None:
    """Remaining time of a running attempt at its pace so far (epochs done vs planned)."""
    if row["state"] != "running" or not row["epoch"] or not row["epochs"] or row["claimed"] is None:
        return None
    per_epoch = (time.time() - row["claimed"]) / row["epoch"]
    return max(0.0, per_epoch * (row["epochs"] - row["epoch"]))


def progress(row: Row) -> str:
    return f"{row['epoch']} / {row['epochs']}" if row["epochs"] else str(row["epoch"] or "")


JOB_COLUMNS = [
    Column("Job", lambda r: r["id"], numeric=True),
    Column("State", lambda r: PLACING if r["state"] == "running" and r["slot"] == PLACING else r["state"],
           tooltip=lambda r: r["error"]),
    Column("Model", lambda r: r["model"]),
    Column("Dataset", lambda r: r["dataset"]),
    Column("Parameters", lambda r: r["differs"], tooltip=lambda r: r["params_text"]),
    Column("Priority", lambda r: r["priority"], numeric=True),
    Column("Slot", lambda r: r["slot"]),
    Column("GPU", lambda r: r["gpu"]),
    Column("Attempt", lambda r: r["attempt"], numeric=True),
    Column(
        "Progress",
        lambda r: (r["epoch"] / r["epochs"]) if r["epochs"] else None,
        text=lambda _: "",
        numeric=True,
    ),
    Column("Elapsed", elapsed, text=format_duration, numeric=True),
    Column("ETA", eta, text=format_duration, numeric=True),
    Column("Run", lambda r: r["run_id"], numeric=True),
    Column("Error", lambda r: r["error"], tooltip=lambda r: r["error"]),
]
TITLES = [column.title for column in JOB_COLUMNS]
WIDEST_TEXT_COLUMN = 360  # pixels a text column grows to by itself
PROGRESS_COLUMN = TITLES.index("Progress")
TICKING_COLUMNS = (TITLES.index("Elapsed"), TITLES.index("ETA"))


def differing_params(configs: list[dict[str, Any]]) -> list[str]:
    """Parameter names whose values are not the same in all these job configs (sorted)."""
    keys = sorted({key for config in configs for key in config.get("params", {})})
    return [key for key in keys
            if len({format_value(config.get("params", {}).get(key)) for config in configs}) > 1]


def read_jobs(store: Store) -> list[Row]:
    """All jobs as plain rows (runs on a worker thread).

    ``differs`` names the job by the parameters that differ between the jobs of its
    experiment ("hidden_units=16 · learning_rate=0.01"): two queued jobs of a grid
    never look the same.
    """
    jobs = JobQueue(store).jobs()
    by_experiment: dict[Any, list[dict[str, Any]]] = {}
    for job in jobs:
        by_experiment.setdefault(job.experiment_id, []).append(job.config or {})
    differing = {experiment: differing_params(configs) for experiment, configs in by_experiment.items()}
    rows = []
    for job in jobs:
        row = dict(vars(job))
        row["state"] = str(job.state)
        params = (row.pop("config") or {}).get("params", {})
        keys = differing[job.experiment_id]
        row["differs"] = " · ".join(f"{key}={format_value(params.get(key))}" for key in keys) or None
        row["params_text"] = ", ".join(f"{key}={format_value(value)}" for key, value in sorted(params.items()))
        rows.append(row)
    return rows


def read_remaining(store: Store, workspace: Workspace, slots: int) -> Estimate | None:
    """How long what is queued and running will take on ``slots`` slots, or on the configured
    slots when no scheduler runs (worker thread); None before a training has finished here."""
    if not slots:
        from blueno.scheduler import configured_slots

        try:
            slots = len(configured_slots(workspace))
        except Exception:  # a bad settings file is the settings dialog's to report, not the estimate's
            slots = 1
    return estimate(store, plan_queue(store), slots)


class JobsTableModel(RowsTableModel):
    """Jobs of the workspace, refreshed off the GUI thread when the database changes."""

    loaded = Signal()  # a fresh read of the jobs is in the model

    def __init__(self, store: Store, parent: QObject | None = None) -> None:
        super().__init__(JOB_COLUMNS, parent=parent)
        self._store = store
        self._fetcher = Fetcher(lambda: lambda: read_jobs(store), self)
        self._fetcher.ready.connect(self.replace)
        self._fetcher.ready.connect(lambda _: self.loaded.emit())
        self._ticker = QTimer(self)
        self._ticker.setInterval(1000)
        self._ticker.timeout.connect(self._tick)
        self._ticker.start()

    def refresh(self) -> None:
        self._fetcher.request()

    def extra_data(self, row: Row, column: Column, role: int) -> Any:
        if role == Qt.ItemDataRole.ForegroundRole and column.title == "State":
            return QBrush(QColor(STATE_COLOURS.get(row["state"], "#000000")))
        if role == Qt.ItemDataRole.ToolTipRole and column.title == "Progress":
            return progress(row)
        return None

    def _tick(self) -> None:
        """Elapsed and ETA move with the clock, not with the database."""
        for position, row in enumerate(self._rows):
            if row["state"] == "running":
                for column in TICKING_COLUMNS:
                    index = self.index(position, column)
                    self.dataChanged.emit(index, index, [Qt.ItemDataRole.DisplayRole])


class QtSlotPanel(QTableWidget):
    """Which job runs in which slot, on which GPU, and how busy that GPU is (NVML).

    A handful of rows: a plain table widget.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, 6, parent)
        self.setHorizontalHeaderLabels(["Slot", "GPU", "Job", "Progress", "GPU use", "GPU memory"])
        self._gpus: dict[str, GpuStat] = {}
        self._shown: tuple[tuple[str, ...], list[Row]] = ((), [])
        self.verticalHeader().hide()
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)

    def show_gpus(self, stats: list[GpuStat]) -> None:
        self._gpus = {str(stat.index): stat for stat in stats}
        self.show_slots(*self._shown)

    def show_slots(self, slots: tuple[str, ...], running: list[Row]) -> None:
        self._shown = (slots, running)
        by_slot = {str(row["slot"]): row for row in running}
        names = list(slots) + sorted(name for name in by_slot if name not in slots)
        self.setRowCount(len(names))
        for i, name in enumerate(names):
            job = by_slot.get(name)
            if job is None:
                cells = [name, "", "free", ""]
            else:
                cells = [name, job["gpu"] or "cpu", f"{job['id']} {job['model']}", progress(job)]
            stat = self._gpus.get(job["gpu"] if job else name.removeprefix("gpu"))
            if stat is None:
                cells += ["", ""]
            else:
                gib = 2**30
                cells += [
                    f"{stat.utilization}%",
                    f"{stat.memory_used / gib:.1f} / {stat.memory_total / gib:.1f} GiB",
                ]
            for j, text in enumerate(cells):
                self.setItem(i, j, QTableWidgetItem(text))


class QtQueueView(QWidget):
    """The jobs table with its actions, the scheduler buttons and the slot panel."""

    status_message = Signal(str)

    def __init__(
        self,
        store: Store,
        scheduler: SchedulerControl,
        on_written: Callable[[], None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._store = store
        self._workspace = scheduler.workspace
        self._scheduler = scheduler
        self._on_written = on_written
        self.model = JobsTableModel(store, self)

        self.table = QTableView(self)
        self.table.setModel(self.model)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setAlternatingRowColors(True)
        self.table.setItemDelegateForColumn(PROGRESS_COLUMN, _ProgressDelegate(self.table))
        self.table.selectionModel().selectionChanged.connect(self._update_actions)
        self.model.rowsInserted.connect(self._on_jobs_changed)
        self.model.dataChanged.connect(self._on_jobs_changed)
        self.model.modelReset.connect(self._on_jobs_changed)

        self.toolbar = QToolBar(self)
        self.actions_by_name: dict[str, QAction] = {}
        self._add_action("start", "Start", "Start the scheduler (or resume it)", "Ctrl+R", self._start)
        self._add_action(
            "pause", "Pause", "Claim no new jobs; running ones continue", "Ctrl+P", scheduler.pause
        )
        self._add_action(
            "stop",
            "Stop",
            "Stop the scheduler; running jobs stop and resume later",
            "Ctrl+Shift+R",
            lambda: scheduler.stop(False),
        )
        self.toolbar.addSeparator()
        self._add_action(
            "cancel",
            "Cancel",
            "Cancel the selected jobs",
            QKeySequence.StandardKey.Delete,
            self.cancel_selected,
        )
        self._add_action(
            "retry",
            "Retry",
            "Queue the selected failed or cancelled jobs again",
            "Ctrl+T",
            lambda ids: actions.TRANSITIONS["retry"](self._workspace, self._store, ids),
        )
        self._add_action(
            "hold",
            "Hold",
            "Keep the selected queued jobs from starting",
            "Ctrl+H",
            lambda ids: actions.TRANSITIONS["hold"](self._workspace, self._store, ids),
        )
        self._add_action(
            "release",
            "Release",
            "Let the selected held jobs start",
            "Ctrl+Shift+H",
            lambda ids: actions.TRANSITIONS["release"](self._workspace, self._store, ids),
        )
        self._add_action(
            "raise",
            "Priority +",
            "Run the selected jobs sooner",
            "Ctrl+Up",
            lambda ids: self._shift_priority(ids, +1),
        )
        self._add_action(
            "lower",
            "Priority −",
            "Run the selected jobs later",
            "Ctrl+Down",
            lambda ids: self._shift_priority(ids, -1),
        )
        self.scheduler_label = QLabel(self)
        self.toolbar.addSeparator()
        self.toolbar.addWidget(self.scheduler_label)
        self.remaining = QLabel(self)  # the time left for what is queued and running
        self.remaining.setContentsMargins(12, 0, 0, 0)
        self.toolbar.addWidget(self.remaining)
        self._remaining = Fetcher(
            lambda: lambda slots=len(scheduler.status.slots): read_remaining(store, scheduler.workspace, slots), self
        )
        self._remaining.ready.connect(self._show_remaining)
        self.model.loaded.connect(self._remaining.request)
        self.model.loaded.connect(self._widen_text_columns)

        self.slots = QtSlotPanel(self)
        self._gpu_stats = Fetcher(lambda: gpu_stats, self)
        self._gpu_stats.ready.connect(self.slots.show_gpus)
        self._gpu_timer = QTimer(self)
        self._gpu_timer.setInterval(GPU_POLL_MS)
        self._gpu_timer.timeout.connect(self._poll_gpus)
        self._gpu_timer.start()
        splitter = QSplitter(Qt.Orientation.Vertical, self)
        splitter.addWidget(self.table)
        splitter.addWidget(self.slots)
        splitter.setStretchFactor(0, 4)
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.toolbar)
        layout.addWidget(splitter)

        scheduler.status_changed.connect(self._on_scheduler)
        scheduler.failed.connect(self._show_error)
        self._on_scheduler(scheduler.status)
        self._update_actions()
        self.model.refresh()

    # -- building ------------------------------------------------------------

    def _add_action(self, name: str, text: str, tip: str, shortcut: Any, handler: Callable) -> None:
        action = QAction(text, self)
        action.setToolTip(f"{tip} ({QKeySequence(shortcut).toString()})")
        action.setShortcut(QKeySequence(shortcut))
        action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        if name in ("start", "pause", "stop", "cancel"):
            action.triggered.connect(handler)
        else:
            action.triggered.connect(lambda: self._on_selection(handler))
        self.addAction(action)
        self.toolbar.addAction(action)
        self.actions_by_name[name] = action

    # -- reacting --------------------------------------------------------------

    def refresh(self) -> None:
        self.model.refresh()

    def _poll_gpus(self) -> None:
        if self.isVisible():
            self._gpu_stats.request()

    def selected_ids(self) -> list[int]:
        rows = self.table.selectionModel().selectedRows()
        return sorted(index.data(ID_ROLE) for index in rows)

    def _selected_states(self) -> set[str]:
        return {self.model.row(index.row())["state"] for index in self.table.selectionModel().selectedRows()}

    def _update_actions(self) -> None:
        states = self._selected_states()
        enable = {name: bool(states & actions.APPLIES_TO[name]) for name in actions.TRANSITIONS}
        enable["raise"] = enable["lower"] = bool(states)
        for name, on in enable.items():
            self.actions_by_name[name].setEnabled(on)

    def _widen_text_columns(self) -> None:
        """Parameters and Dataset grow to their text (up to a limit), never shrink under the user.

        Only the longest text of each column is measured: ``sizeHintForColumn`` lays out
        every row, 100+ ms on the GUI thread with 500 jobs (reliability case 7).
        """
        metrics = self.table.fontMetrics()
        margin = 2 * self.table.style().pixelMetric(self.table.style().PixelMetric.PM_FocusFrameHMargin) + 12
        for title in ("Dataset", "Parameters"):
            column = TITLES.index(title)
            spec = JOB_COLUMNS[column]
            longest = max((spec.value(row) or "" for row in self.model.rows()), key=len, default="")
            longest = spec.text(longest) if longest else ""
            wanted = min(metrics.horizontalAdvance(longest) + margin, WIDEST_TEXT_COLUMN)
            if wanted > self.table.columnWidth(column):
                self.table.setColumnWidth(column, wanted)

    def _show_remaining(self, found: Estimate | None) -> None:
        busy = any(row["state"] in ("queued", "running") for row in self.model.rows())
        if found is None or not busy:
            self.remaining.setText("")
            self.remaining.setToolTip("")
            return
        self.remaining.setText(f"left: {found.describe()}")
        self.remaining.setToolTip(f"Estimated from {found.basis}.")

    def _on_jobs_changed(self, *_: Any) -> None:
        self._update_actions()
        running = [row for row in self.model.rows() if row["state"] == "running"]
        self.slots.show_slots(self._scheduler.status.slots, running)

    def _on_scheduler(self, status: SchedulerStatus) -> None:
        self.actions_by_name["start"].setEnabled(status.state in ("stopped", "paused"))
        self.actions_by_name["start"].setText("Resume" if status.state == "paused" else "Start")
        self.actions_by_name["pause"].setEnabled(status.state == "running")
        self.actions_by_name["stop"].setEnabled(status.state in ("running", "paused"))
        self.scheduler_label.setText(status.describe())
        self._on_jobs_changed()

    def _start(self) -> None:
        self._scheduler.start()

    def _on_selection(self, action: Callable[[list[int]], Any]) -> None:
        ids = self.selected_ids()
        if ids:
            submit(action, ids, on_done=self._done, on_error=lambda exc: self._show_error(str(exc)))

    def cancel_selected(self) -> None:
        """Cancel the selection; a running training is only stopped after the user confirms it."""
        ids = self.selected_ids()
        running = [index.data(ID_ROLE) for index in self.table.selectionModel().selectedRows()
                   if self.model.row(index.row())["state"] == "running"]
        cancel = lambda: self._on_selection(  # noqa: E731
            lambda chosen: actions.cancel_jobs(self._workspace, self._store, chosen))
        if not ids:
            return
        if not running:
            cancel()
            return
        names = ", ".join(str(i) for i in sorted(running))
        box = QMessageBox(QMessageBox.Icon.Question, "Cancel running trainings?",
                          f"Job{'s' * (len(running) > 1)} {names} {'are' if len(running) > 1 else 'is'} training "
                          "now. Cancelling stops the training and discards its progress.", parent=self)
        stop = box.addButton("Cancel the training", QMessageBox.ButtonRole.DestructiveRole)
        keep = box.addButton("Keep training", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(keep)
        box.setEscapeButton(keep)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.buttonClicked.connect(lambda button: cancel() if button is stop else None)
        self.confirm = box  # the open question, for tests and for a second Delete press
        box.open()

    def _shift_priority(self, ids: list[int], step: int) -> None:
        actions.shift_priority(self._store, ids, step)

    def _done(self, result: Any) -> None:
        self._on_written()
        if isinstance(result, dict) and result.get("unchanged"):
            unchanged = ", ".join(str(i) for i in result["unchanged"])
            self.status_message.emit(f"unchanged (not in a state that allows it): jobs {unchanged}")

    def _show_error(self, message: str) -> None:
        QMessageBox.warning(self, "Blueno", message)


class _ProgressDelegate(QStyledItemDelegate):
    """Draws epoch / epochs as a progress bar in the Progress column."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        row = index.data(ROW_ROLE)
        if not row or not row["epochs"]:
            super().paint(painter, option, index)
            return
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(2, 3, -2, -3)
        bar.minimum, bar.maximum = 0, int(row["epochs"])
        bar.progress = min(int(row["epoch"]), int(row["epochs"]))
        bar.text = progress(row)
        bar.textVisible = True
        bar.state = QStyle.StateFlag.State_Enabled | QStyle.StateFlag.State_Horizontal
        QApplication.style().drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter)
