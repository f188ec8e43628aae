"""Which columns the runs table shows, in what order, and how wide: the researcher's choice, remembered.

Right-click a header for the menu: every column with a check box, **Show
constant parameters** and **Reset columns**.  By default parameters that are
the same in every run are hidden (they tell the runs apart in no way) and the
monitored metric (best, then final) follows the identity columns.  A header is
never narrower than its title.  The choice is kept by column *title* in
QSettings, so it survives new parameters and metrics appearing.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, QPoint, QSettings, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QHeaderView, QMenu, QTableView

from gui.table_model import RowsTableModel

IDENTITY = ("Run", "State", "Experiment", "Model", "Dataset")
MONITORED = ("val_loss", "val_accuracy")  # the metric put first: the trainer's default monitor, then accuracy


class RunsColumns(QObject):
    """Hides, shows, orders and sizes the runs table's columns; ``save``/``restore`` keep the choice."""

    def __init__(self, table: QTableView, model: RowsTableModel, first_param: int, parent: QObject | None = None):
        super().__init__(parent)
        self.table, self.model, self.first_param = table, model, first_param
        self.hidden: set[str] = set()  # titles hidden by the user
        self.shown: set[str] = set()  # titles shown by the user although constant
        self.show_constant = False
        self.order: list[str] = []  # titles in the user's order (dragged headers), empty: the default order
        self._moving = False
        header = self.header
        header.setSectionsMovable(True)
        header.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        header.customContextMenuRequested.connect(self._menu)
        header.sectionMoved.connect(self._on_moved)
        model.modelReset.connect(self.apply)
        model.rowsInserted.connect(lambda *_: self.apply())

    @property
    def header(self) -> QHeaderView:
        return self.table.horizontalHeader()

    def titles(self) -> list[str]:
        return [self.model.headerData(i, Qt.Orientation.Horizontal) for i in range(self.model.columnCount())]

    def constant(self) -> set[str]:
        """Parameter columns whose value is the same in every run."""
        rows = self.model.rows()
        out = set()
        for column, title in enumerate(self.titles()):
            if column < self.first_param or title.startswith(("best ", "final ")):
                continue
            if len({repr(row[column]) for row in rows}) <= 1:
                out.add(title)
        return out

    def is_hidden(self, title: str) -> bool:
        if title in self.hidden:
            return True
        return not self.show_constant and title not in self.shown and title in self.constant()

    def apply(self) -> None:
        """Hide what should be hidden, put the monitored metric after the identity columns, widen cut headers."""
        titles = self.titles()
        constant = self.constant()
        fm = self.header.fontMetrics()
        for column, title in enumerate(titles):
            hidden = title in self.hidden or (not self.show_constant and title not in self.shown and title in constant)
            self.header.setSectionHidden(column, hidden)
            wanted = fm.horizontalAdvance(title) + 28  # the title and the sort arrow
            if not hidden and self.header.sectionSize(column) < wanted:
                self.header.resizeSection(column, wanted)
        self._moving = True
        try:
            if self.order:  # a dragged order wins
                self._place([t for t in self.order if t in titles], titles, 0)
                return
            monitored = next((m for m in MONITORED if f"best {m}" in titles), None)
            if monitored is not None:
                at = max(self.header.visualIndex(titles.index(t)) for t in IDENTITY if t in titles) + 1
                self._place([t for t in (f"best {monitored}", f"final {monitored}") if t in titles], titles, at)
        finally:
            self._moving = False

    def _place(self, chosen: list[str], titles: list[str], at: int) -> None:
        for title in chosen:
            visual = self.header.visualIndex(titles.index(title))
            if visual != at:
                self.header.moveSection(visual, at)
            at += 1

    def _on_moved(self, *_: Any) -> None:
        if not self._moving:  # the user dragged a header: remember the whole order
            titles = self.titles()
            self.order = [titles[self.header.logicalIndex(v)] for v in range(self.header.count())]

    def set_visible(self, title: str, visible: bool) -> None:
        if visible:
            self.hidden.discard(title)
            self.shown.add(title)
        else:
            self.hidden.add(title)
            self.shown.discard(title)
        self.apply()

    def _menu(self, at: QPoint) -> None:
        menu = QMenu(self.table)
        constant = QAction("Show constant parameters", menu, checkable=True, checked=self.show_constant)
        constant.toggled.connect(lambda on: (setattr(self, "show_constant", on), self.apply()))
        menu.addAction(constant)
        reset = menu.addAction("Reset columns")
        reset.triggered.connect(self.reset)
        menu.addSeparator()
        for title in self.titles():
            action = QAction(title, menu, checkable=True, checked=not self.is_hidden(title))
            action.setEnabled(title != "Run")
            action.toggled.connect(lambda on, t=title: self.set_visible(t, on))
            menu.addAction(action)
        menu.popup(self.header.mapToGlobal(at))

    def reset(self) -> None:
        self.order = []
        self.hidden.clear()
        self.shown.clear()
        self.show_constant = False
        self._moving = True
        for logical in range(self.header.count()):  # back to the model's order
            if self.header.visualIndex(logical) != logical:
                self.header.moveSection(self.header.visualIndex(logical), logical)
        self._moving = False
        self.apply()

    def save(self, settings: QSettings) -> None:
        settings.setValue("runs/hidden_columns", sorted(self.hidden))
        settings.setValue("runs/shown_columns", sorted(self.shown))
        settings.setValue("runs/show_constant", self.show_constant)
        settings.setValue("runs/column_order", self.order)

    def restore(self, settings: QSettings) -> None:
        self.hidden = set(_strings(settings.value("runs/hidden_columns")))
        self.shown = set(_strings(settings.value("runs/shown_columns")))
        self.show_constant = str(settings.value("runs/show_constant", "false")).lower() == "true"
        self.order = _strings(settings.value("runs/column_order"))
        self.apply()


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]
