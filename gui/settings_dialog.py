"""The settings dialog: slots, Google Cloud Storage and Elasticsearch, saved to settings.toml.

It shows and saves :class:`blueno.settings.UserSettings` through
:func:`blueno.settings.read_settings` and :func:`~blueno.settings.write_settings`,
the keys the engine reads (``[elasticsearch] urls``).  Other keys in the
file are kept; the API key goes to its own owner-only file.
"""

from __future__ import annotations

from dataclasses import replace

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
from blueno.settings import UserSettings, write_settings
from blueno.workspace import Workspace, parse_gpu_ids
from gui.workers import submit


class QtSettingsDialog(QDialog):
    """Edits the workspace's settings file."""

    def __init__(self, workspace: Workspace, current: UserSettings, parent: QWidget | None = None) -> None:
        """``current`` comes from :func:`blueno.settings.read_settings`, called off the GUI thread."""
        super().__init__(parent)
        self.setWindowTitle("Blueno settings")
        self.setMinimumWidth(520)
        self._workspace = workspace
        self._current = current

        self.slots = QSpinBox(self)
        self.slots.setRange(1, 64)
        self.slots.setValue(current.slots)
        self.slots.setToolTip("jobs at once on the CPU when no GPUs are listed")
        self.gpus = QLineEdit(current.gpus, self)
        self.gpus.setPlaceholderText("e.g. 0,1 (one job per GPU); empty: detect")
        self.bucket = QLineEdit(current.gcs_bucket, self)
        self.bucket.setPlaceholderText("gs://bucket/prefix")
        self.credentials = QLineEdit(current.gcs_credentials, self)
        self.credentials.setPlaceholderText("service account JSON; empty: application default credentials")
        browse = QPushButton("Browse…", self)
        browse.clicked.connect(self._browse_credentials)
        self.es_url = QLineEdit(", ".join(current.es_urls), self)
        self.es_url.setPlaceholderText("https://elastic.example.org:9200 (several: separate with commas)")
        self.es_key = QLineEdit(self)
        self.es_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.es_key.setPlaceholderText(
            "a key is stored; type a new one to replace it" if current.es_key_stored
            else "API key (kept in credentials/)"
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

    def changes(self) -> UserSettings:
        return replace(
            self._current, slots=self.slots.value(), gpus=self.gpus.text().strip(),
            gcs_bucket=self.bucket.text().strip(), gcs_credentials=self.credentials.text().strip(),
            es_urls=[u.strip() for u in self.es_url.text().split(",") if u.strip()],
        )

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
        submit(write_settings, self._workspace, self.changes(), self.es_key.text(),
               on_done=lambda _: super(QtSettingsDialog, self).accept(), on_error=self._failed)

    def _failed(self, exc: BaseException) -> None:
        self.setEnabled(True)
        self.error.setText(f"Could not save the settings: {exc}")
