"""A table model over rows keyed by id, updated in place as the database changes.

The queue and runs tables are both this: rows read from the store off the
GUI thread, merged here so that unchanged rows emit nothing, changed rows
emit ``dataChanged``, new rows ``beginInsertRows`` (ERT's snapshot model), and
selection survives every update and every sort.  Sorting happens here, in
one Python ``list.sort`` with a key, because a ``QSortFilterProxyModel``
calling ``data()`` per comparison takes seconds on 100,000 rows.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

from gui.formatting import format_value

ID_ROLE = Qt.ItemDataRole.UserRole + 1  # the row's key (job id, run id)
VALUE_ROLE = Qt.ItemDataRole.UserRole + 2  # the raw, sortable value behind the text
ROW_ROLE = Qt.ItemDataRole.UserRole + 3  # the whole row record

Row = Any  # a dict or a tuple: whatever the columns' getters read
AnyIndex = QModelIndex | QPersistentModelIndex


def sort_key(value: Any) -> tuple[int, Any]:
    """Orders numbers, then text, then missing values, without comparing across types."""
    if value is None:
        return (2, 0)
    if isinstance(value, (int, float)):
        return (0, value)
    return (1, str(value).lower())


def sorted_order(values: list[Any], descending: bool) -> list[int]:
    """Positions of ``values`` in sorted order, missing values last in both directions.

    A column of one kind (numbers, or text) sorts with C-level comparisons;
    only mixed columns pay for a Python key per value.
    """
    present = [i for i, value in enumerate(values) if value is not None]
    missing = [i for i, value in enumerate(values) if value is None]
    kinds = {type(values[i]) for i in present}
    if kinds <= {int, float, bool}:
        keys = values
    elif kinds == {str}:
        keys = [value.lower() if value is not None else None for value in values]
    else:
        keys = [sort_key(value) for value in values]
    present.sort(key=keys.__getitem__, reverse=descending)  # stable: ties keep their order
    return present + missing


@dataclass(frozen=True)
class Column:
    """One column: its title, the value it shows, and how to show it."""

    title: str
    value: Callable[[Row], Any]
    text: Callable[[Any], str] = format_value
    numeric: bool = False
    tooltip: Callable[[Row], str | None] | None = None


class RowsTableModel(QAbstractTableModel):
    """Rows keyed by ``key(row)``; :meth:`merge` applies a batch of new and changed rows."""

    def __init__(
        self,
        columns: list[Column],
        key: Callable[[Row], Hashable] = itemgetter("id"),
        parent=None,
    ) -> None:
        super().__init__(parent)
        self._columns = list(columns)
        self._key = key
        self._rows: list[Row] = []
        self._pos: dict[Hashable, int] = {}
        self._sort: tuple[int, Qt.SortOrder] | None = None

    # -- Qt interface ------------------------------------------------------

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._columns)

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self._rows[index.row()]
        column = self._columns[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return column.text(column.value(row))
        if role == Qt.ItemDataRole.TextAlignmentRole:
            horizontal = Qt.AlignmentFlag.AlignRight if column.numeric else Qt.AlignmentFlag.AlignLeft
            return int(horizontal | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole and column.tooltip is not None:
            return column.tooltip(row)
        if role == ID_ROLE:
            return self._key(row)
        if role == VALUE_ROLE:
            return column.value(row)
        if role == ROW_ROLE:
            return row
        return self.extra_data(row, column, role)

    def extra_data(self, row: Row, column: Column, role: int) -> Any:
        """Subclasses add roles (colours, icons) here."""
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal:
            return self._columns[section].title if 0 <= section < len(self._columns) else None
        return str(section + 1)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        if not 0 <= column < len(self._columns):
            self._sort = None
            return
        self._sort = (column, order)
        self._resort()

    # -- rows --------------------------------------------------------------

    @property
    def columns(self) -> list[Column]:
        return list(self._columns)

    def rows(self) -> list[Row]:
        return list(self._rows)

    def row(self, position: int) -> Row:
        return self._rows[position]

    def position(self, key: Hashable) -> int | None:
        return self._pos.get(key)

    def keys(self) -> list[Hashable]:
        return [self._key(row) for row in self._rows]

    def set_columns(self, columns: list[Column]) -> None:
        """Change the columns (rare: a new parameter or metric appeared)."""
        if [c.title for c in columns] == [c.title for c in self._columns]:
            self._columns = list(columns)
            return
        self.beginResetModel()
        self._columns = list(columns)
        self.endResetModel()

    def merge(self, rows: Iterable[Row], removed: Iterable[Hashable] = ()) -> None:
        """Insert new rows, update changed ones, drop ``removed``; emit only what changed."""
        for key in removed:
            position = self._pos.get(key)
            if position is not None:
                self.beginRemoveRows(QModelIndex(), position, position)
                del self._rows[position]
                del self._pos[key]
                for i in range(position, len(self._rows)):
                    self._pos[self._key(self._rows[i])] = i
                self.endRemoveRows()
        if not self._rows:
            self._load([*rows])
            return
        fresh: list[Row] = []
        sort_touched = False
        sort_column = self._columns[self._sort[0]] if self._sort else None
        last_column = len(self._columns) - 1
        for row in rows:
            position = self._pos.get(self._key(row))
            if position is None:
                fresh.append(row)
                continue
            old = self._rows[position]
            if old == row:
                continue
            if sort_column is not None and sort_column.value(old) != sort_column.value(row):
                sort_touched = True
            self._rows[position] = row
            self.dataChanged.emit(self.index(position, 0), self.index(position, last_column))
        if fresh:
            first = len(self._rows)
            self.beginInsertRows(QModelIndex(), first, first + len(fresh) - 1)
            self._rows.extend(fresh)
            for offset, row in enumerate(fresh):
                self._pos[self._key(row)] = first + offset
            self.endInsertRows()
        if self._sort is not None and (fresh or sort_touched):
            self._resort()

    def _load(self, rows: list[Row]) -> None:
        """The first batch: one reset instead of an insert per row."""
        if not rows:
            return
        self.beginResetModel()
        self._rows = rows
        self._pos = {self._key(row): i for i, row in enumerate(rows)}
        self.endResetModel()
        if self._sort is not None:
            self._resort()

    def replace(self, rows: list[Row]) -> None:
        """Make the model hold exactly ``rows`` (merging, so selection survives)."""
        keys = {self._key(row) for row in rows}
        self.merge(rows, removed=[key for key in self._pos if key not in keys])

    def _resort(self) -> None:
        assert self._sort is not None
        column_no, order = self._sort
        column = self._columns[column_no]
        self.layoutAboutToBeChanged.emit()
        persistent = self.persistentIndexList()
        keyed = [(self._key(self._rows[index.row()]), index.column()) for index in persistent]
        self._rows = [
            self._rows[i]
            for i in sorted_order(list(map(column.value, self._rows)), order == Qt.SortOrder.DescendingOrder)
        ]
        self._pos = {self._key(row): i for i, row in enumerate(self._rows)}
        self.changePersistentIndexList(persistent, [self.index(self._pos[key], col) for key, col in keyed])
        self.layoutChanged.emit()
