"""One run in detail: its evaluation, parameters, final and best metrics, paths, and the tail of its log."""

from __future__ import annotations

import html
from typing import Any

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QHBoxLayout,
    QPlainTextEdit,
    QPushButton,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from blueno import runs
from blueno.evaluation import headline
from blueno.store import Store
from blueno.workspace import Workspace
from gui.desktop import open_folder
from gui.run_evaluation import TEST_COLOUR, QtRunEvaluation
from gui.workers import Fetcher


def _table(title: str, values: dict[str, Any] | None) -> str:
    values = {k: v for k, v in (values or {}).items() if v is not None}
    if not values:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td align='right'>{html.escape(_fmt(v))}</td></tr>"
        for k, v in sorted(values.items())
    )
    return f"<h4>{title}</h4><table cellspacing='0' cellpadding='2'>{rows}</table>"


def _fmt(value: Any) -> str:
    return f"{value:.5g}" if isinstance(value, float) else str(value)


def describe(run: dict[str, Any]) -> str:
    """The run as HTML for the details tab."""
    if run.get("missing"):
        return f"<p>Run {run['id']} is gone.</p>"
    loads = {k: run[k] or {} for k in ("params", "final", "best", "evaluation")}
    head = (
        f"<h3>Run {run['id']} · {html.escape(run['model'])} · {html.escape(run['state'] or 'done')}</h3>"
        f"<p>dataset {html.escape(run['dataset'])} · epochs {run['epochs_done']}"
        + (
            f" · best epoch {run['best_epoch']} by {html.escape(run['monitor'] or '')}"
            if run["best_epoch"]
            else ""
        )
        + (f" · trained on {html.escape(run['host'])}" if run.get("host") else "")
        + (f" GPU {html.escape(str(run['gpu']))}" if run.get("host") and run.get("gpu") else "")
        + "</p>"
    )
    error = f"<p style='color:#c62828'>{html.escape(run['error'])}</p>" if run.get("error") else ""
    paths = (
        f"<p>model: <code>{html.escape(run['model_path'] or run['model_dir'])}</code><br>"
        f"log: <code>{html.escape(run['log_path'])}</code></p>"
    )
    return (
        head
        + error
        + paths
        + _table("Parameters", loads["params"])
        + _table("Best", loads["best"])
        + _table("Final", loads["final"])
        + _table("Evaluation (validation)", headline(loads["evaluation"].get("validation")))
        + _table(f"Evaluation (<span style='color:{TEST_COLOUR}'>TEST, held out</span>)",
                 headline(loads["evaluation"].get("test")))
    )


NO_RUN = "<p>Select runs to compare their curves; the current one shows here.</p>"


class QtRunDetail(QTabWidget):
    """Evaluation, details and log of the current run, re-read off the GUI thread when the database changes."""

    def __init__(self, workspace: Workspace, store: Store, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._run_id: int | None = None
        self._run: dict[str, Any] = {}
        self.summary = QTextBrowser(self)
        self.log = QPlainTextEdit(self)
        self.log.setReadOnly(True)
        self.log.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.log.setMaximumBlockCount(5000)
        self.open_folder = QPushButton("Open folder", self)
        self.open_folder.setEnabled(False)
        self.open_folder.clicked.connect(self._open_folder)

        details = QWidget(self)
        layout = QVBoxLayout(details)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.summary)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.open_folder)
        layout.addLayout(buttons)
        self.evaluation = QtRunEvaluation(workspace, store, self)
        self.addTab(details, "Details")
        self.addTab(self.evaluation, "Evaluation")
        self.addTab(self.log, "Log")
        self.summary.setHtml(NO_RUN)

        self._fetcher = Fetcher(lambda: lambda run_id=self._run_id: runs.run_with_log(store, workspace, run_id), self)
        self._fetcher.ready.connect(self._on_run)

    def show_run(self, run_id: int | None) -> None:
        """Show this run; None (nothing current, e.g. the filter hid it) shows the hint."""
        self._run_id = run_id
        self.open_folder.setEnabled(run_id is not None)
        if run_id is None:
            self._run = {}
            self.summary.setHtml(NO_RUN)
            self.log.clear()
        self.evaluation.show_run(run_id)
        self.refresh()

    def refresh(self) -> None:
        if self._run_id is not None:
            self._fetcher.request()
            self.evaluation.refresh()

    def _on_run(self, run: dict[str, Any]) -> None:
        if self._run_id is None or run["id"] != self._run_id or run == self._run:
            return
        self._run = run
        self.summary.setHtml(describe(run))
        if not run.get("missing"):
            at_end = self.log.verticalScrollBar().value() == self.log.verticalScrollBar().maximum()
            self.log.setPlainText(run["log_tail"])
            if at_end:
                self.log.verticalScrollBar().setValue(self.log.verticalScrollBar().maximum())

    def _open_folder(self) -> None:
        folder = self._run.get("model_dir")
        if folder:
            problem = open_folder(folder)
            if problem:
                self.evaluation.status_message.emit(problem)
