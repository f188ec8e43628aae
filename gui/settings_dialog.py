"""The settings dialog: slots, Google Cloud Storage and Elasticsearch, saved to settings.toml.

Sections it writes: ``[scheduler]`` (``slots`` or ``gpus``), ``[gcs]``
(``bucket``, ``credentials``), ``[elasticsearch]`` (``url``).  Other keys in
the file are kept.  The Elasticsearch API key is a secret: it goes to
``credentials/elasticsearch-api-key`` (readable by the owner only), where
``blueno.elastic`` looks for it, never into settings.toml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from blueno import BluenoError
from blueno.workspace import Workspace, parse_gpu_ids
from gui.workers import submit


class QtSettingsDialog(QDialog):
    """Edits the workspace's settings file."""

    def __init__(
        self, workspace: Workspace, current: dict[str, Any], key_stored: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        """``current`` and ``key_stored`` come from :func:`read`, called off the GUI thread."""
        super().__init__(parent)
        self.setWindowTitle("Blueno settings")
        self.setMinimumWidth(520)
        self._workspace = workspace
        self._current = current
        scheduler = self._current.get("scheduler", {})
        gcs = self._current.get("gcs", {})
        elastic = self._current.get("elasticsearch", {})

        self.slots = QSpinBox(self)
        self.slots.setRange(1, 64)
        self.slots.setValue(int(scheduler.get("slots", 1)))
        self.slots.setToolTip("jobs at once on the CPU when no GPUs are listed")
        self.gpus = QLineEdit(str(scheduler.get("gpus", "")), self)
        self.gpus.setPlaceholderText("e.g. 0,1 (one job per GPU); empty: detect")
        self.bucket = QLineEdit(str(gcs.get("bucket", "")), self)
        self.bucket.setPlaceholderText("gs://bucket/prefix")
        self.credentials = QLineEdit(str(gcs.get("credentials", "")), self)
        self.credentials.setPlaceholderText("service account JSON; empty: application default credentials")
        browse = QPushButton("Browse…", self)
        browse.clicked.connect(self._browse_credentials)
        self.es_url = QLineEdit(str(elastic.get("url", "")), self)
        self.es_url.setPlaceholderText("https://elastic.example.org:9200")
        self.es_key = QLineEdit(self)
        self.es_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.es_key.setPlaceholderText(
            "a key is stored; type a new one to replace it" if key_stored else "API key (kept in credentials/)"
        )

        form = QFormLayout(self)
        form.addRow(QLabel(f"Workspace: <code>{workspace.root}</code>", self))
        form.addRow("CPU slots", self.slots)
        form.addRow("GPUs", self.gpus)
        form.addRow("GCS bucket", self.bucket)
        credentials_row = QHBoxLayout()
        credentials_row.addWidget(self.credentials, 1)
        credentials_row.addWidget(browse)
        form.addRow("GCS credentials", credentials_row)
        form.addRow("Elasticsearch URL", self.es_url)
        form.addRow("Elasticsearch API key", self.es_key)
        self.error = QLabel(self)  # why Save did nothing, in words, beside the form
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #b71c1c")
        form.addRow(self.error)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _browse_credentials(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Service account key", str(self._workspace.credentials_dir), "JSON (*.json)"
        )
        if path:
            self.credentials.setText(path)

    def changes(self) -> dict[str, dict[str, Any]]:
        gpus = self.gpus.text().strip()
        return {
            "scheduler": {"slots": None if gpus else self.slots.value(), "gpus": gpus},
            "gcs": {"bucket": self.bucket.text().strip(), "credentials": self.credentials.text().strip()},
            "elasticsearch": {"url": self.es_url.text().strip()},
        }

    def accept(self) -> None:
        """Write the settings (and the key, to its own 0600 file) off the GUI thread; close when done.

        The GPU list is checked here first (the same check the library's save makes), so a
        typo is answered at once and nothing is written.
        """
        gpus = self.gpus.text().strip()
        if gpus:
            try:
                parse_gpu_ids(gpus, source="GPUs")
            except BluenoError as exc:
                self.gpus.setFocus()
                self.error.setText(str(exc))
                return
        self.error.clear()
        self.setEnabled(False)
        submit(save, self._workspace, self.changes(), self.es_key.text(),
               on_done=lambda _: super(QtSettingsDialog, self).accept(), on_error=self._failed)

    def _failed(self, exc: BaseException) -> None:
        self.setEnabled(True)
        self.error.setText(f"Could not save the settings: {exc}")


def api_key_file(workspace: Workspace) -> Path:
    from blueno.elastic.config import DEFAULT_API_KEY_FILE  # imports the Elasticsearch client: not at startup

    return workspace.credentials_dir / DEFAULT_API_KEY_FILE


def read(workspace: Workspace) -> tuple[dict[str, Any], bool]:
    """The settings, and whether an API key is stored (worker thread: both touch the disk)."""
    return workspace.settings(), api_key_file(workspace).is_file()


def save(workspace: Workspace, changes: dict[str, dict[str, Any]], api_key: str) -> None:
    """The dialog's writes (worker thread)."""
    workspace.save_settings(changes)
    if api_key:
        workspace.save_secret(api_key_file(workspace).name, api_key)
