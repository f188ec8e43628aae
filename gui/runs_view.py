"""The runs view: every run with its parameters and metrics, curves of the selection, details.

``RunsTableModel`` loads all runs in one query and afterwards re-reads only
runs that are new or whose job may still change, so a workspace with 100,000
runs stays responsive.  Sorting is done by the model (one keyed
``list.sort``); ``RunsFilterProxy`` only filters, with the matcher of
:mod:`blueno.run_filter` (the grammar ``blueno runs ls --where`` takes too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any

from PySide6.QtCore import (
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSettings,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QAction, QBrush, QColor, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from blueno import run_filter, run_table
from blueno.export import export_runs
from blueno.store import Store
from blueno.workspace import Workspace
from gui.cli_process import CliProcess
from gui.compare import QtCompareView
from gui.formatting import STATE_COLOURS, format_duration, format_value
from gui.frozen_table import FrozenColumnTableView
from gui.parallel_coordinates import QtParallelCoordinates
from gui.plot import QtLivePlot
from gui.run_detail import QtRunDetail
from gui.runs_columns import RunsColumns
from gui.table_model import ID_ROLE, ROW_ROLE, Column, Row, RowsTableModel
from gui.workers import Fetcher, submit

BASE_COLUMNS = [
    Column("Run", itemgetter(0), numeric=True),
    Column("State", itemgetter(1)),
    Column("Experiment", itemgetter(2)),
    Column("Model", itemgetter(3)),
    Column("Dataset", itemgetter(4)),
    Column("Epochs", itemgetter(5), numeric=True),
    Column("Duration", itemgetter(6), text=format_duration, numeric=True),
]
assert [c.title for c in BASE_COLUMNS] == [title for title, _ in run_table.BASE_COLUMNS]
STATE = run_table.STATE


class RunsTableModel(RowsTableModel):
    """All runs: fixed columns, then one per parameter, then best and final metrics."""

    def __init__(self, store: Store, parent: QObject | None = None) -> None:
        super().__init__(BASE_COLUMNS, key=itemgetter(0), parent=parent)
        self._store = store
        self.keys_shown = run_table.RunKeys()
        self._fetcher = Fetcher(self._plan, self)
        self._fetcher.ready.connect(self.add_batch)
        self.loaded = False

    def refresh(self) -> None:
        self._fetcher.request()

    def _plan(self) -> Callable[[], run_table.RunsBatch]:
        after = max(self._pos, default=0)
        open_ids = [row[0] for row in self._rows if row[STATE] in run_table.OPEN_STATES]
        known = self.keys_shown
        return lambda: run_table.read_table(self._store, after, open_ids, known)

    def add_batch(self, batch: run_table.RunsBatch) -> None:
        """Merge rows read from the store; new parameter or metric names rebuild the columns."""
        if batch.full and batch.keys != self.keys_shown:
            self.beginResetModel()
            self.keys_shown = batch.keys
            self._columns = self._build_columns(batch.keys)
            self._rows, self._pos = [], {}
            self.endResetModel()
        self.merge(batch.rows)
        self.loaded = True

    @staticmethod
    def _build_columns(keys: run_table.RunKeys) -> list[Column]:
        columns = list(BASE_COLUMNS)
        at = len(columns)
        columns += [Column(k, itemgetter(at + i)) for i, k in enumerate(keys.params)]
        at = len(columns)
        for section in ("best", "final"):
            columns += [
                Column(f"{section} {k}", itemgetter(at + i), numeric=True) for i, k in enumerate(keys.metrics)
            ]
            at = len(columns)
        return columns

    def titles(self) -> list[str]:
        return [column.title for column in self._columns]

    def column_number(self, title: str) -> int | None:
        for number, column in enumerate(self._columns):
            if column.title == title:
                return number
        return None

    def extra_data(self, row: Row, column: Column, role: int) -> Any:
        if role == Qt.ItemDataRole.ForegroundRole and column.title == "State":
            return QBrush(QColor(STATE_COLOURS.get(row[STATE], "#000000")))
        return None


class RunsFilterProxy(QSortFilterProxyModel):
    """Keeps rows matching the filter (the grammar of :mod:`blueno.run_filter`, shared with
    ``blueno runs ls --where``) and, when brushed, in the parallel coordinates' selection.

    Sorting is the source model's (see :mod:`gui.table_model`).  A row's
    searchable text is built once, on the first filter word that needs it.
    """

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._filter = run_filter.RunFilter()
        self._match: Callable[[Row], bool] | None = None
        self._titles: list[str] = []
        self.error: str | None = None  # why the filter cannot apply (an unknown key), shown by the view
        self._text: dict[int, tuple[tuple, str]] = {}  # run id → (the row it was built from, text)
        self.run_ids: set[int] | None = None  # brushed in the parallel coordinates; None keeps all

    def set_run_ids(self, run_ids: Iterable[int] | None) -> None:
        """Keep only these runs (on top of the text filter); None lifts the restriction."""
        self.beginFilterChange()
        self.run_ids = None if run_ids is None else set(run_ids)
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def set_filter_text(self, text: str) -> None:
        self.beginFilterChange()
        self._filter = run_filter.parse(text)
        self._titles = []  # compiled against the columns on the next row
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def _row_text(self, row: Row) -> str:
        cached = self._text.get(row[0])
        if cached is None or cached[0] is not row:  # rows are replaced, never changed in place
            cached = self._text[row[0]] = (row, " ".join(map(format_value, row)).lower())
        return cached[1]

    def _matcher(self) -> Callable[[Row], bool] | None:
        model: RunsTableModel = self.sourceModel()
        titles = model.titles()
        if titles != self._titles:  # a new filter, or new columns
            self._titles = titles
            try:
                self._match, self.error = self._filter.matcher(titles, self._row_text), None
            except run_filter.FilterError as exc:
                self._match, self.error = None, str(exc)
        return self._match

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex | QPersistentModelIndex) -> bool:
        row = self.sourceModel().row(source_row)
        if self.run_ids is not None and row[0] not in self.run_ids:
            return False
        if not self._filter:
            return True
        match = self._matcher()
        return match is not None and match(row)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        self.sourceModel().sort(column, order)


def run_labels(rows: list[Row], params: tuple[str, ...], limit: int = 3) -> dict[int, str]:
    """Legend names: the run and its model, then the parameters that differ between these runs.

    "12 cnn2d loss" told two runs apart by id alone; "12 cnn2d · learning_rate=0.01"
    says what changed.  At most ``limit`` parameters, in column order.
    """
    at = len(BASE_COLUMNS)
    differing = [i for i, _ in enumerate(params) if len({format_value(row[at + i]) for row in rows}) > 1]
    models_differ = len({row[3] for row in rows}) > 1
    labels = {}
    for row in rows:
        parts = [f"{params[i]}={format_value(row[at + i])}" for i in differing[:limit] if row[at + i] is not None]
        head = f"{row[0]} {row[3]}" if models_differ or not parts else str(row[0])
        labels[row[0]] = " · ".join([head, *parts])
    return labels


class QtRunsView(QWidget):
    """Runs table with a filter box; the selection's curves, comparison and parallel coordinates;
    the current run's evaluation and details."""

    status_message = Signal(str)

    def __init__(self, workspace: Workspace, store: Store, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._store = store
        self.model = RunsTableModel(store, self)
        self.proxy = RunsFilterProxy(self)
        self.proxy.setSourceModel(self.model)

        self.filter = QLineEdit(self)
        self.filter.setPlaceholderText(
            "Filter runs: words, key=value or key>number, e.g. state=failed  model=mlp  val_accuracy>0.9  (Ctrl+F)"
        )
        self.filter.setToolTip(run_filter.__doc__.split("\n\n", 1)[1])
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self.proxy.set_filter_text)
        self.filter.textChanged.connect(lambda _: self._update_count())
        QShortcut(QKeySequence.StandardKey.Find, self, self.filter.setFocus)
        self.count = QLabel(self)

        self.table = FrozenColumnTableView(self)  # the Run column stays in view when scrolling sideways
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.columns = RunsColumns(self.table, self.model, len(BASE_COLUMNS), self)
        self.table.selectionModel().selectionChanged.connect(self._on_selection)
        self.table.selectionModel().currentRowChanged.connect(self._on_current)
        self.model.rowsInserted.connect(lambda *_: self._update_count())
        self.model.modelReset.connect(self._update_count)

        self.plot = QtLivePlot(store, self)
        self.compare = QtCompareView(store, self)
        self.parallel = QtParallelCoordinates(workspace, store, self)
        self.parallel.brushed.connect(self.filter_run_ids)
        self.parallel.status_message.connect(self.status_message)
        self.views = QTabWidget(self)
        self.views.setDocumentMode(True)
        self.views.addTab(self.plot, "Curves")
        self.views.addTab(self.compare, "Compare")
        self.views.addTab(self.parallel, "Parallel coordinates")
        self.detail = QtRunDetail(workspace, store, self)
        self.detail.evaluation.status_message.connect(self.status_message)
        self.brushed = QLabel(self)
        self.unbrush = QPushButton("Show all runs", self)
        self.unbrush.clicked.connect(self.parallel.plot.clear_brushes)
        self.brushed.hide()
        self.unbrush.hide()
        self.cli = CliProcess(workspace, self)
        self.cli.finished.connect(self._on_cli_finished)
        self._add_actions()

        left = QWidget(self)
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.filter)
        left_layout.addWidget(self.table)
        bottom = QHBoxLayout()
        bottom.addWidget(self.count)
        bottom.addStretch(1)
        bottom.addWidget(self.brushed)
        bottom.addWidget(self.unbrush)
        left_layout.addLayout(bottom)
        self.right = QSplitter(Qt.Orientation.Vertical, self)
        self.right.addWidget(self.views)
        self.right.addWidget(self.detail)
        self.right.setSizes([500, 300])
        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.right)
        self.splitter.setSizes([700, 600])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter)
        self.model.refresh()

    def refresh(self) -> None:
        self.model.refresh()
        self.plot.refresh()
        self.detail.refresh()
        self.compare.refresh()
        self.parallel.refresh()

    def _add_actions(self) -> None:
        """Context-menu actions on the selected runs; the Keras ones run the CLI as a child process."""
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.actions_by_name: dict[str, QAction] = {}
        for name, text, shortcut, handler in (
            ("compare", "&Compare selected runs", "Ctrl+Shift+C", self.show_comparison),
            ("test", "Evaluate on the held-out &TEST split", None, self.evaluate_test),
            ("ensemble", "&Ensemble selected runs", None, self.ensemble),
            ("export", "E&xport selected runs…", None, self.choose_and_export),
        ):
            action = QAction(text, self)
            if shortcut:
                action.setShortcut(QKeySequence(shortcut))
                action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            action.triggered.connect(handler)
            self.table.addAction(action)
            self.actions_by_name[name] = action

    def selected_ids(self) -> list[int]:
        return [row[0] for row in self.selected_rows()]

    def show_comparison(self) -> None:
        self.views.setCurrentWidget(self.compare)

    def evaluate_test(self) -> None:
        """``blueno runs test RUN…`` for the selected runs (a child process: it loads Keras)."""
        ids = self.selected_ids()
        if ids:
            self._run_cli(["runs", "test", *map(str, ids)])

    def ensemble(self) -> None:
        """``blueno runs ensemble RUN…``: the selected runs' mean probabilities become a run of their own."""
        ids = self.selected_ids()
        if len(ids) >= 2:
            self._run_cli(["runs", "ensemble", *map(str, ids)])
        else:
            self.status_message.emit("Select two or more finished runs to ensemble them.")

    def choose_and_export(self) -> None:
        """Write the selected runs (all shown ones when none is selected) through :func:`blueno.export.export_runs`."""
        ids = self.selected_ids() or [
            self.proxy.index(row, 0).data(ID_ROLE) for row in range(self.proxy.rowCount())]
        if not ids:
            self.status_message.emit("No runs to export.")
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Export runs", "runs.csv", "CSV (*.csv);;SQLite for Datasette or pandas (*.db);;Parquet (*.parquet)")
        if path:
            self.export_to(path, ids)

    def export_to(self, path: str, run_ids: list[int]) -> None:
        """The export itself, off the GUI thread; the status bar says where it went."""
        submit(export_runs, self._store, path, run_ids=run_ids,
               on_done=lambda r: self.status_message.emit(f"exported {r.runs} runs to {r.path}"),
               on_error=lambda exc: self.status_message.emit(f"export failed: {exc}"))

    def _run_cli(self, args: list[str]) -> None:
        if self.cli.run(args):
            self.status_message.emit(f"running blueno {' '.join(args)}…")
        else:
            self.status_message.emit("Another blueno command is still running; try again when it ends.")

    def _on_cli_finished(self, ok: bool, command: str, output: str) -> None:
        last = output.splitlines()[-1] if output else ""
        self.status_message.emit(f"{command}: done" if ok else f"{command} failed: {last}")

    def filter_run_ids(self, run_ids: list[int] | None) -> None:
        """Show only these runs (brushed in the parallel coordinates); None shows all again."""
        self.proxy.set_run_ids(run_ids)
        self.brushed.setVisible(run_ids is not None)
        self.unbrush.setVisible(run_ids is not None)
        if run_ids is not None:
            self.brushed.setText(f"brushed in parallel coordinates: {len(run_ids)} runs")
        self._update_count()

    def selected_rows(self) -> list[Row]:
        return [index.data(ROW_ROLE) for index in self.table.selectionModel().selectedRows()]

    def _on_selection(self, *_: Any) -> None:
        rows = self.selected_rows()
        self.plot.set_runs(run_labels(rows, self.model.keys_shown.params))
        self.compare.set_runs(sorted(row[0] for row in rows))

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self.detail.show_run(current.data(ID_ROLE) if current.isValid() else None)

    def _update_count(self) -> None:
        shown, total = self.proxy.rowCount(), self.model.rowCount()
        if self.proxy.error:
            self.count.setText(f"filter: {self.proxy.error}")
            return
        self.count.setText(f"{total} runs" if shown == total else f"{shown} of {total} runs")

    def save(self, settings: QSettings) -> None:
        self.columns.save(settings)
        settings.setValue("runs/splitter", self.splitter.saveState())
        settings.setValue("runs/right", self.right.saveState())
        settings.setValue("runs/view", self.views.currentIndex())

    def restore(self, settings: QSettings) -> None:
        self.columns.restore(settings)
        for key, splitter in (("runs/splitter", self.splitter), ("runs/right", self.right)):
            state = settings.value(key)
            if state is not None:
                splitter.restoreState(state)
        self.views.setCurrentIndex(int(settings.value("runs/view", 0)))

    def shutdown(self) -> None:
        """Stop blueno commands this view started (a test or ensemble in progress is abandoned)."""
        self.cli.stop()
        self.detail.evaluation.cli.stop()
