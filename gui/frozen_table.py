"""A table view whose first column stays put when the table scrolls sideways.

Qt's "frozen column" example: a second view over the same model and the
same selection model, showing only column 0, laid over the left edge of the
main view and scrolled with it vertically.  With many parameter columns a
researcher scrolls right and still reads which run each row is.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QModelIndex, QPoint, Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QAbstractItemView, QFrame, QHeaderView, QTableView, QWidget

PINNED = 0  # the logical column kept in view


class FrozenColumnTableView(QTableView):
    """A ``QTableView`` with its first column pinned (``frozen`` is the overlay)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.frozen = QTableView(self)
        frozen = self.frozen
        frozen.setObjectName("frozenColumn")
        frozen.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        frozen.verticalHeader().hide()
        frozen.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        frozen.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        frozen.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        frozen.setFrameShape(QFrame.Shape.NoFrame)
        frozen.setStyleSheet("#frozenColumn { border-right: 1px solid #9e9e9e; }")
        frozen.setWordWrap(False)
        self.viewport().stackUnder(frozen)

        self.horizontalHeader().sectionResized.connect(self._on_section_resized)
        self.horizontalHeader().sectionMoved.connect(self._keep_pinned_first)
        self.horizontalHeader().sortIndicatorChanged.connect(self._show_sort)
        frozen.horizontalHeader().sectionClicked.connect(self._sort_pinned)
        frozen.horizontalHeader().setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        frozen.horizontalHeader().customContextMenuRequested.connect(self._forward_menu)
        frozen.verticalScrollBar().valueChanged.connect(self.verticalScrollBar().setValue)
        self.verticalScrollBar().valueChanged.connect(frozen.verticalScrollBar().setValue)

    # -- model -----------------------------------------------------------------------

    def setModel(self, model: Any) -> None:
        super().setModel(model)
        self.frozen.setModel(model)
        self.frozen.setSelectionModel(self.selectionModel())
        for signal in (model.columnsInserted, model.columnsRemoved, model.modelReset, model.layoutChanged):
            signal.connect(self._hide_other_columns)
        self._hide_other_columns()

    def _hide_other_columns(self, *_: Any) -> None:
        model = self.model()
        for column in range(model.columnCount() if model is not None else 0):
            self.frozen.setColumnHidden(column, column != PINNED)
        self._place()

    # -- keeping the overlay on the pinned column --------------------------------------

    def setAlternatingRowColors(self, enable: bool) -> None:
        super().setAlternatingRowColors(enable)
        self.frozen.setAlternatingRowColors(enable)

    def setSelectionBehavior(self, behavior: QAbstractItemView.SelectionBehavior) -> None:
        super().setSelectionBehavior(behavior)
        self.frozen.setSelectionBehavior(behavior)

    def setSelectionMode(self, mode: QAbstractItemView.SelectionMode) -> None:
        super().setSelectionMode(mode)
        self.frozen.setSelectionMode(mode)

    def _on_section_resized(self, logical: int, _old: int, size: int) -> None:
        if logical == PINNED:
            self.frozen.setColumnWidth(PINNED, size)
            self._place()

    def _keep_pinned_first(self, *_: Any) -> None:
        header = self.horizontalHeader()
        if header.visualIndex(PINNED) != 0:
            header.moveSection(header.visualIndex(PINNED), 0)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._place()

    def updateGeometries(self) -> None:
        super().updateGeometries()
        self._place()

    def _place(self) -> None:
        if not hasattr(self, "frozen"):
            return  # QTableView's constructor lays out before ours has run
        frozen = self.frozen
        frozen.verticalHeader().setDefaultSectionSize(self.verticalHeader().defaultSectionSize())
        frozen.horizontalHeader().setFixedHeight(self.horizontalHeader().height())
        frozen.setColumnWidth(PINNED, self.columnWidth(PINNED))
        hidden = self.isColumnHidden(PINNED) or self.model() is None
        frozen.setVisible(not hidden)
        frame = self.frameWidth()
        frozen.setGeometry(self.verticalHeader().width() + frame, frame, self.columnWidth(PINNED),
                           self.viewport().height() + self.horizontalHeader().height())

    def scrollTo(self, index: QModelIndex, hint: Any = QAbstractItemView.ScrollHint.EnsureVisible) -> None:
        """A cell of the pinned column is always in view: scroll only vertically for it."""
        sideways = self.horizontalScrollBar().value()
        super().scrollTo(index, hint)
        if index.column() == PINNED:
            self.horizontalScrollBar().setValue(sideways)

    # -- the overlay's header acts as the main header -----------------------------------

    def _sort_pinned(self, logical: int) -> None:
        header = self.horizontalHeader()
        ascending = (header.sortIndicatorSection() == logical
                     and header.sortIndicatorOrder() == Qt.SortOrder.DescendingOrder)
        self.sortByColumn(logical, Qt.SortOrder.AscendingOrder if ascending else Qt.SortOrder.DescendingOrder)

    def _show_sort(self, logical: int, order: Qt.SortOrder) -> None:
        header = self.frozen.horizontalHeader()
        header.setSortIndicatorShown(logical == PINNED)
        header.setSortIndicator(logical, order)

    def _forward_menu(self, at: QPoint) -> None:
        header = self.horizontalHeader()
        header.customContextMenuRequested.emit(header.mapFromGlobal(self.frozen.horizontalHeader().mapToGlobal(at)))
