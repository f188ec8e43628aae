"""The Nodes tab: the Ray cluster's nodes, their GPUs and the jobs running on each (read-only).

Fed by :func:`blueno.cluster.nodes`, the view the scheduler on the head
records in the workspace database every heartbeat; the GUI never talks to
Ray itself.  With the local backend the tab says that jobs run on this box.
"""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLabel, QTableView, QVBoxLayout, QWidget

from blueno import cluster
from blueno.store import Store
from gui.table_model import Column, RowsTableModel
from gui.workers import Fetcher

COLUMNS = [
    Column("Node", lambda n: n["node_id"][:8]),
    Column("Host", lambda n: n["host"]),
    Column("Address", lambda n: n["address"]),
    Column("State", lambda n: "up" if n["alive"] else "lost"),
    Column("GPUs", lambda n: n["gpus"], numeric=True),
    Column("Slots", lambda n: n["slots"], numeric=True),
    Column("Jobs", lambda n: ", ".join(str(j) for j in n["jobs"]) or "-"),
    Column("Note", lambda n: n.get("problem") or ""),
]


def describe(snapshot: dict[str, Any], now: float | None = None) -> str:
    """The line above the table: what the cluster is, as of when."""
    if not snapshot["nodes"]:
        return "Jobs run on this box (the local backend). A Ray cluster's nodes show here while a " \
               "scheduler runs with backend = \"ray\" (docs/cluster.md)."
    alive = [n for n in snapshot["nodes"] if n["alive"]]
    age = (now or time.time()) - (snapshot["time"] or 0)
    return (f"Ray cluster: {len(alive)} nodes up, {sum(n['gpus'] for n in alive):g} GPUs, "
            f"{sum(n['slots'] for n in alive)} slots, {sum(len(n['jobs']) for n in alive)} jobs running "
            f"(as the head saw it {age:.0f} s ago)")


class QtNodesView(QWidget):
    """A table of the cluster's nodes, refreshed whenever the database changes."""

    status_message = Signal(str)

    def __init__(self, store: Store, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.summary = QLabel(self)
        self.summary.setWordWrap(True)
        self.model = RowsTableModel(COLUMNS, key=lambda n: n["node_id"], parent=self)
        self.table = QTableView(self)
        self.table.setModel(self.model)
        self.table.setSortingEnabled(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.table)
        self._fetch = Fetcher(lambda: lambda: cluster.nodes(store), self)
        self._fetch.ready.connect(self._show)
        self.summary.setText(describe({"time": None, "nodes": []}))

    def refresh(self) -> None:
        self._fetch.request()

    def _show(self, snapshot: dict[str, Any]) -> None:
        self.summary.setText(describe(snapshot))
        self.model.replace(snapshot["nodes"])
