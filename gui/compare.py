"""Runs side by side: parameters (differences highlighted) and metrics (the best value marked).

A thin view over :func:`blueno.runs.compare_runs`, read off the GUI thread
whenever the runs table's selection changes.  Test figures are rows of their
own, titled ``TEST …`` and tinted; they are never marked best, because runs
are chosen on validation.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import QAbstractItemView, QLabel, QTableView, QVBoxLayout, QWidget

from blueno import runs
from blueno.runs import Comparison
from blueno.store import Store
from gui.evaluation_models import TEST_TEXT, TEST_TINT
from gui.formatting import format_value
from gui.workers import Fetcher

AnyIndex = QModelIndex | QPersistentModelIndex
DIFFERS_ROLE = Qt.ItemDataRole.UserRole + 20  # on a parameter cell: the runs disagree on it
BEST_ROLE = Qt.ItemDataRole.UserRole + 21  # on a metric cell: the best value of its row
DIFFERS_TINT = QColor("#fff59d")
BEST_TINT = QColor("#c8e6c9")
BEST_MARK = " ★"
MAX_COMPARED = 50  # columns; selecting every one of 100,000 runs compares none


class ComparisonModel(QAbstractTableModel):
    """Rows: the parameters, then the metrics; columns: the compared runs."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.comparison = Comparison([], [], [], [])
        self._rows: list[tuple[str, dict[str, Any]]] = []  # ("param" | "metric", row)

    def set_comparison(self, comparison: Comparison) -> None:
        self.beginResetModel()
        self.comparison = comparison
        self._rows = [("param", row) for row in comparison.params] + [("metric", row) for row in comparison.metrics]
        self.endResetModel()

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.comparison.run_ids)

    def _is_best(self, kind: str, row: dict[str, Any], column: int) -> bool:
        return kind == "metric" and not row["test"] and column in row.get("best_columns", ())

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        kind, row = self._rows[index.row()]
        value = row["values"][index.column()]
        best = self._is_best(kind, row, index.column())
        differs = kind == "param" and row["differs"]
        if role == Qt.ItemDataRole.DisplayRole:
            return format_value(value) + (BEST_MARK if best else "")
        if role == DIFFERS_ROLE:
            return differs
        if role == BEST_ROLE:
            return best
        if role == Qt.ItemDataRole.TextAlignmentRole:
            horizontal = Qt.AlignmentFlag.AlignRight if kind == "metric" else Qt.AlignmentFlag.AlignLeft
            return int(horizontal | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.BackgroundRole:
            if differs:
                return QBrush(DIFFERS_TINT)
            if best:
                return QBrush(BEST_TINT)
            if kind == "metric" and row["test"]:
                return QBrush(TEST_TINT)
        if role == Qt.ItemDataRole.ForegroundRole and kind == "metric" and row["test"]:
            return QBrush(TEST_TEXT)
        if role == Qt.ItemDataRole.FontRole and best:
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.ToolTipRole:
            if differs:
                return f"{row['name']} differs between these runs"
            if best:
                return f"the best {row['name']} of these runs"
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal:
            if role == Qt.ItemDataRole.DisplayRole and 0 <= section < len(self.comparison.labels):
                return self.comparison.labels[section]
            return None
        if not 0 <= section < len(self._rows):
            return None
        kind, row = self._rows[section]
        test = kind == "metric" and row["test"]
        if role == Qt.ItemDataRole.DisplayRole:
            return "TEST " + row["name"].removeprefix("test.") if test else row["name"]
        if role == Qt.ItemDataRole.ForegroundRole and test:
            return QBrush(TEST_TEXT)
        if role == Qt.ItemDataRole.FontRole and (test or (kind == "param" and row["differs"])):
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.ToolTipRole:
            return "parameter" if kind == "param" else ("metric on the held-out TEST split" if test else "metric")
        return None


def read_comparison(store: Store, run_ids: list[int]) -> Comparison:
    """The comparison of ``run_ids`` (worker thread); runs gone meanwhile are left out."""
    present = {run["id"] for run in runs.list_runs(store, ids=run_ids)} if run_ids else set()
    kept = [run_id for run_id in run_ids if run_id in present]
    return runs.compare_runs(store, kept) if kept else Comparison([], [], [], [])


class QtCompareView(QWidget):
    """The selected runs side by side; ``set_runs`` follows the runs table's selection."""

    def __init__(self, store: Store, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._run_ids: list[int] = []
        self._too_many = False
        self.model = ComparisonModel(self)
        self.hint = QLabel(self)
        self.hint.setWordWrap(True)
        self.table = QTableView(self)
        self.table.setModel(self.model)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setWordWrap(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.hint)
        layout.addWidget(self.table, 1)
        self._fetcher = Fetcher(lambda: lambda ids=list(self._run_ids): read_comparison(store, ids), self)
        self._fetcher.ready.connect(self._on_comparison)
        self._show_hint()

    def set_runs(self, run_ids: list[int]) -> None:
        """Compare these runs (the table's selection); more than :data:`MAX_COMPARED` compares none."""
        self._too_many = len(run_ids) > MAX_COMPARED
        run_ids = [] if self._too_many else list(run_ids)
        if run_ids == self._run_ids:
            self._show_hint()
            return
        self._run_ids = run_ids
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        """Re-read the comparison; a hidden view waits until it is shown."""
        if force or self.isVisible():
            self._fetcher.request()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self.refresh()

    def _on_comparison(self, comparison: Comparison) -> None:
        if comparison.run_ids != [i for i in self._run_ids if i in comparison.run_ids]:
            return  # an older selection's answer
        if (comparison.run_ids, comparison.params, comparison.metrics) != (
            self.model.comparison.run_ids, self.model.comparison.params, self.model.comparison.metrics
        ):
            self.model.set_comparison(comparison)
            self.table.resizeColumnsToContents()
        self._show_hint()

    def _show_hint(self) -> None:
        n = self.model.columnCount()
        if self._too_many:
            self.hint.setText(f"Select at most {MAX_COMPARED} runs to compare them side by side.")
            return
        if n < 2:
            self.hint.setText("Select two or more runs in the table to compare them side by side.")
            return
        differing = sum(1 for row in self.model.comparison.params if row["differs"])
        self.hint.setText(
            f"{n} runs · <span style='background:{DIFFERS_TINT.name()}'>&nbsp;{differing} parameters differ"
            "&nbsp;</span>"
            f" · <span style='background:{BEST_TINT.name()}'>&nbsp;<b>best{BEST_MARK}</b>&nbsp;</span> on validation"
            + (f" · <span style='color:{TEST_TEXT.name()}'><b>TEST</b> rows: held-out split, never ranked</span>"
               if any(row["test"] for row in self.model.comparison.metrics) else "")
        )
