"""The datasets view: import by dropping, the versions with their lineage, and a preview.

Imports, verification, transfers and derivations are ``blueno.datasets``
functions taking a progress/cancel ``Task``; here they run on a worker thread
with a progress bar and a Cancel button, and their problems are listed per
file.  The preview decodes a few samples per class off the GUI thread too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from blueno import BluenoError, datasets
from blueno.datasets import DatasetVersion
from blueno.datasets.importing import default_name, import_path
from blueno.datasets.task import Progress, Task
from blueno.evaluation import sample_image
from blueno.store import Store
from blueno.workspace import Workspace
from gui.evaluation_models import to_qimage
from gui.table_model import ROW_ROLE, Column, Row, RowsTableModel
from gui.transform_params import QtDeriveDialog, workspace_transforms
from gui.workers import Fetcher, submit

PREVIEW_PER_CLASS = 4
THUMBNAIL_PX = 72


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def read_versions(store: Store, workspace: Workspace) -> list[Row]:
    """Every dataset version with where it lives and its parent (worker thread: checks the disk)."""
    found = datasets.versions(store, workspace)
    refs = {v.id: v.ref for v in found}
    rows = []
    for v in found:
        local = v.path.is_dir() or v.path.is_file()
        where = (
            "local + GCS"
            if local and v.remote_url
            else "GCS"
            if v.remote_url
            else "local"
            if local
            else "missing"
        )
        rows.append(
            {
                "id": v.id,
                "ref": v.ref,
                "name": v.name,
                "version": v.version,
                "kind": v.kind,
                "samples": v.n_samples,
                "classes": v.n_classes,
                "shape": "×".join(map(str, v.sample_shape)),
                "size": v.size_bytes,
                "where": where,
                "parent": refs.get(v.parent_id, ""),
                "transform": (v.transform or {}).get("name", ""),
                "created": v.created,
                "version_obj": v,
            }
        )
    return rows


DATASET_COLUMNS = [
    Column("Name", lambda r: r["name"]),
    Column("Version", lambda r: r["version"]),
    Column("Kind", lambda r: r["kind"]),
    Column("Samples", lambda r: r["samples"], numeric=True),
    Column("Classes", lambda r: r["classes"], numeric=True),
    Column("Shape", lambda r: r["shape"]),
    Column("Size", lambda r: r["size"], text=_size, numeric=True),
    Column("Where", lambda r: r["where"]),
    Column("Parent", lambda r: r["parent"]),
    Column("Transform", lambda r: r["transform"]),
]


def thumbnails(workspace: Workspace, version: DatasetVersion) -> list[tuple[str, list[QImage]]]:
    """A few samples per class as pictures; volumes as their maximum projections (worker thread)."""
    x, y, _, class_names = datasets.load_arrays(workspace, version)
    out = []
    for index, name in enumerate(class_names):
        images = []
        for sample in np.flatnonzero(y == index)[:PREVIEW_PER_CLASS]:
            images.append(to_qimage(sample_image(x[sample])))
        out.append((name, images))
    return out


@dataclass
class ImportRequest:
    path: Path
    name: str
    label_col: str | None
    link: bool


IMPORT_FILTER = "Datasets (*.npz *.csv *.zip *.tar *.tar.gz *.tgz);;All files (*)"
# Command-line words in library messages, as this window names the same thing.
GUI_WORDS = {
    "--label-col": "the Label column field of the import dialog",
    "--id-col": "an id column named 'id'",
    "--link": "“link instead of copying”",
    "--name": "the Name field",
}


def gui_words(text: str) -> str:
    """A library message with its command-line flags named as the window's fields."""
    for flag, words in GUI_WORDS.items():
        text = text.replace(f"fix {flag}", f"fix {words}").replace(f"with {flag}", f"with {words}")
        text = text.replace(flag, words)
    return text


def refuse_file(path: Path) -> str | None:
    """Why a dropped *file* cannot be imported (its suffix says so), or None; folders are checked on import."""
    from blueno.datasets.kinds import detect_kind

    if not path.is_file():
        return None
    try:
        detect_kind(path)
    except BluenoError as exc:
        return gui_words(str(exc))
    return None


class QtImportDialog(QDialog):
    """Confirms the name and label column of each dropped path."""

    def __init__(self, paths: list[Path], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import datasets")
        form = QFormLayout(self)
        self._rows: list[tuple[Path, QLineEdit, QLineEdit, QCheckBox]] = []
        for path in paths:
            name = QLineEdit(default_name(path), self)
            label = QLineEdit(self)
            label.setPlaceholderText("label column (CSV / labels file); empty: detect")
            link = QCheckBox("link instead of copying", self)
            link.setToolTip(
                "keep the files where they are (e.g. a network share); only the manifest is stored"
            )
            form.addRow(QLabel(f"<b>{path.name}</b>", self))
            form.addRow("Name", name)
            form.addRow("Label column", label)
            form.addRow("", link)
            self._rows.append((path, name, label, link))
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Import")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def requests(self) -> list[ImportRequest]:
        return [
            ImportRequest(path, name.text().strip(), label.text().strip() or None, link.isChecked())
            for path, name, label, link in self._rows
        ]


class QtGcsBrowser(QDialog):
    """The dataset versions under a bucket/prefix (listed off the GUI thread); Pull takes one."""

    def __init__(self, workspace: Workspace, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Datasets in Google Cloud Storage")
        self.resize(760, 420)
        self._workspace = workspace
        self.chosen_url: str | None = None
        self.url = QLineEdit(self)
        self.url.setPlaceholderText("gs://bucket/prefix (empty: the bucket in the settings)")
        listing = QPushButton("List", self)
        listing.clicked.connect(self.refresh)
        self.model = RowsTableModel(GCS_COLUMNS, key=lambda row: row["url"], parent=self)
        self.table = QTableView(self)
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.message = QLabel(self)
        self.message.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Close)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Pull")
        buttons.accepted.connect(self._pull)
        buttons.rejected.connect(self.reject)
        top = QHBoxLayout()
        top.addWidget(self.url, 1)
        top.addWidget(listing)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.message)
        layout.addWidget(buttons)
        self.refresh()

    def refresh(self) -> None:
        from blueno.datasets import remote

        self.message.setText("listing…")
        url = self.url.text().strip() or None
        submit(
            remote.remote_ls,
            self._workspace,
            url,
            on_done=self._listed,
            on_error=lambda exc: self.message.setText(str(exc)),
        )

    def _listed(self, rows: list[dict[str, Any]]) -> None:
        self.model.replace(rows)
        self.message.setText(f"{len(rows)} dataset versions")

    def _pull(self) -> None:
        selected = self.table.selectionModel().selectedRows()
        if selected:
            self.chosen_url = selected[0].data(ROW_ROLE)["url"]
            self.accept()


GCS_COLUMNS = [
    Column("Dataset", lambda r: r["ref"]),
    Column("Kind", lambda r: r["kind"]),
    Column("Samples", lambda r: r["n_samples"], numeric=True),
    Column("Files", lambda r: r["n_files"], numeric=True),
    Column("Size", lambda r: r["size_bytes"], text=_size, numeric=True),
    Column("Parent", lambda r: r["parent"]),
]


class DatasetTask(QObject):
    """A ``blueno.datasets.task.Task`` whose progress arrives on the GUI thread."""

    progress = Signal(object)  # blueno.datasets.task.Progress

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.task = Task(on_progress=self.progress.emit)

    def cancel(self) -> None:
        self.task.cancel()


class QtDatasetsView(QWidget):
    """Versions table, actions on the selection, imports with progress, a per-class preview."""

    status_message = Signal(str)

    def __init__(
        self,
        workspace: Workspace,
        store: Store,
        on_written: Callable[[], None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._workspace, self._store, self._on_written = workspace, store, on_written
        self._pending: list[ImportRequest] = []
        self._task: DatasetTask | None = None
        self.setAcceptDrops(True)

        self.model = RowsTableModel(DATASET_COLUMNS, parent=self)
        self._fetcher = Fetcher(lambda: lambda: read_versions(store, workspace), self)
        self._fetcher.ready.connect(self.model.replace)
        self.table = QTableView(self)
        self.table.setModel(self.model)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.selectionModel().selectionChanged.connect(self._on_selection)

        self.buttons: dict[str, QPushButton] = {}
        actions = QHBoxLayout()
        for name, text, handler in (
            ("import", "Import…", self.choose_and_import),
            ("verify", "Verify", self.verify),
            ("push", "Push to GCS", self.push),
            ("pull", "Pull from GCS", self.pull),
            ("derive", "Derive…", self.derive),
            ("browse", "Browse GCS…", self.browse_gcs),
        ):
            button = QPushButton(text, self)
            button.clicked.connect(handler)
            self.buttons[name] = button
            actions.addWidget(button)
        actions.addStretch(1)

        self.progress = QProgressBar(self)
        self.progress.setRange(0, 1000)
        self.progress_label = QLabel(self)
        self.cancel = QPushButton("Cancel", self)
        self.cancel.clicked.connect(self._cancel)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress_label)
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel)
        self._show_busy(False)

        self.problems = QListWidget(self)
        self.problems.setMaximumHeight(110)
        self.problems.setWordWrap(True)  # a long problem wraps instead of running off to the right
        self.problems.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.problems.setToolTip("problems found by the last import or check, per file")
        self.hint = QLabel("Drop files, folders or archives anywhere on the window to import them.", self)

        self.preview = QWidget(self)
        self.preview_layout = QGridLayout(self.preview)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.preview)
        self._preview = Fetcher(self._plan_preview, self)
        self._preview.ready.connect(self._show_preview)
        self._preview.failed.connect(lambda exc: self._show_preview_error(str(exc)))

        left = QWidget(self)
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addLayout(actions)
        left_layout.addWidget(self.table, 1)
        left_layout.addLayout(progress_row)
        left_layout.addWidget(QLabel("Problems", self))
        left_layout.addWidget(self.problems)
        left_layout.addWidget(self.hint)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(left)
        splitter.addWidget(scroll)
        splitter.setSizes([800, 500])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self._on_selection()
        self.refresh()

    # -- reading ---------------------------------------------------------------

    def refresh(self) -> None:
        self._fetcher.request()

    def selected(self) -> DatasetVersion | None:
        rows = self.table.selectionModel().selectedRows()
        return rows[0].data(ROW_ROLE)["version_obj"] if rows else None

    def _on_selection(self, *_: Any) -> None:
        version = self.selected()
        for name in ("verify", "push", "pull", "derive"):
            self.buttons[name].setEnabled(version is not None and self._task is None)
        if version is not None:
            self._preview.request()

    def _plan_preview(self) -> Callable[[], Any]:
        version = self.selected()
        return lambda: (version.ref, thumbnails(self._workspace, version)) if version else (None, [])

    def _show_preview(self, result: tuple[str | None, list[tuple[str, list[QImage]]]]) -> None:
        while self.preview_layout.count():
            self.preview_layout.takeAt(0).widget().deleteLater()
        ref, classes = result
        if ref is None:
            return
        self.preview_layout.addWidget(
            QLabel(f"<b>{ref}</b>: {PREVIEW_PER_CLASS} samples per class"), 0, 0, 1, 5
        )
        for row, (name, images) in enumerate(classes, 1):
            self.preview_layout.addWidget(QLabel(name), row, 0)
            for column, image in enumerate(images, 1):
                label = QLabel(self.preview)
                label.setPixmap(
                    QPixmap.fromImage(image).scaled(
                        THUMBNAIL_PX,
                        THUMBNAIL_PX,
                        Qt.AspectRatioMode.KeepAspectRatio,
                        Qt.TransformationMode.FastTransformation,
                    )
                )
                self.preview_layout.addWidget(label, row, column)

    def _show_preview_error(self, message: str) -> None:
        self._show_preview((None, []))
        self.preview_layout.addWidget(QLabel(message), 0, 0)

    # -- dropping and importing -------------------------------------------------------

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.import_paths(paths)

    def choose_and_import(self) -> None:
        """Files and archives (File → Import dataset…); folders have their own action (a dialog picks one kind)."""
        files, _ = QFileDialog.getOpenFileNames(self, "Import datasets", str(Path.home()), IMPORT_FILTER)
        if files:
            self.import_paths([Path(f) for f in files])

    def choose_folder_and_import(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Import a dataset folder", str(Path.home()))
        if folder:
            self.import_paths([Path(folder)])

    def import_paths(self, paths: list[Path], confirm: bool = True) -> None:
        """Confirm name and label column, then import each path in turn off the GUI thread.

        A file that cannot be a dataset (a dropped ``notes.txt``) is named and refused
        before any dialog; the others go ahead.
        """
        refused = []
        for path in paths:
            problem = refuse_file(path)
            if problem:
                refused.append(path)
                self.problems.addItem(problem)
        paths = [p for p in paths if p not in refused]
        if refused:
            names = ", ".join(p.name for p in refused)
            self.status_message.emit(f"{names}: not a dataset Blueno can import (see the problems below)")
        if not paths:
            return
        dialog = QtImportDialog(paths, self)
        if confirm and not dialog.exec():
            return
        if not refused:
            self.problems.clear()
        self._pending.extend(dialog.requests())
        self._next_import()

    def _next_import(self) -> None:
        if self._task is not None or not self._pending:
            return
        request = self._pending.pop(0)
        self._run(
            f"importing {request.path.name}",
            lambda task: import_path(
                self._workspace,
                self._store,
                request.path,
                name=request.name,
                label_col=request.label_col,
                link=request.link,
                task=task,
            ),
            lambda result: self._imported(request, result),
            request.path.name,
        )

    def _imported(self, request: ImportRequest, result: Any) -> None:
        verb = "was already imported as" if result.existed else "imported as"
        self.status_message.emit(f"{request.path.name} {verb} {result.version.ref}")
        for name in result.ignored:
            self.problems.addItem(f"{request.path.name}: ignored {name} (not part of the dataset)")

    # -- actions on the selected version ----------------------------------------------------

    def verify(self) -> None:
        version = self.selected()
        if version is not None:
            self._run(
                f"verifying {version.ref}",
                lambda task: datasets.verify(self._workspace, version, task),
                self._verified,
                version.ref,
            )

    def _verified(self, report: Any) -> None:
        for kind in ("changed", "missing", "extra"):
            for name in getattr(report, kind):
                self.problems.addItem(f"{report.ref}: {name} is {kind}")
        self.status_message.emit(
            f"{report.ref}: {report.checked} files checked, "
            + ("all intact" if report.ok else "problems listed below")
        )

    def push(self) -> None:
        version = self.selected()
        if version is not None:
            from blueno.datasets import remote

            self._run(
                f"pushing {version.ref}",
                lambda task: remote.push(self._workspace, self._store, version.ref, task=task),
                lambda _: self.status_message.emit(f"pushed {version.ref}"),
                version.ref,
            )

    def pull(self) -> None:
        version = self.selected()
        if version is not None and version.remote_url:
            from blueno.datasets import remote

            self._run(
                f"pulling {version.ref}",
                lambda task: remote.pull(self._workspace, self._store, version.remote_url, task=task),
                lambda _: self.status_message.emit(f"pulled {version.ref}"),
                version.ref,
            )

    def derive(self) -> None:
        """Choose a transform and fill in the fields of its declared parameters, then derive."""
        version = self.selected()
        if version is None:
            return
        dialog = QtDeriveDialog(version.ref, self, workspace_transforms(self._workspace))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self._derive(version, *dialog.chosen()))
        self.derive_dialog = dialog  # the open dialog, for tests
        dialog.open()

    def _derive(self, version: DatasetVersion, transform: str, params: dict[str, Any]) -> None:
        from blueno.datasets.derive import derive

        self._run(
            f"deriving {transform} from {version.ref}",
            lambda task: derive(self._workspace, self._store, version, transform, params, task=task),
            lambda new: self.status_message.emit(f"derived {new.ref}"),
            version.ref,
        )

    def browse_gcs(self) -> None:
        browser = QtGcsBrowser(self._workspace, self)
        if browser.exec() and browser.chosen_url:
            from blueno.datasets import remote

            url = browser.chosen_url
            self._run(
                f"pulling {url}",
                lambda task: remote.pull(self._workspace, self._store, url, task=task),
                lambda new: self.status_message.emit(f"pulled {new.ref}"),
                url,
            )

    # -- running one long task at a time ---------------------------------------------------

    def _run(
        self, label: str, work: Callable[[Task], Any], done: Callable[[Any], None], subject: str
    ) -> None:
        handle = DatasetTask(self)
        handle.progress.connect(self._on_progress)
        self._task = handle
        self.progress_label.setText(label)
        self.progress.setValue(0)
        self._show_busy(True)

        def finished(result: Any) -> None:
            self._finish()
            done(result)

        def failed(exc: BaseException) -> None:
            self._finish()
            problems = getattr(exc, "problems", None)  # InvalidDataset: every problem, by file
            if problems:
                for name, message in problems:
                    self.problems.addItem(gui_words(f"{subject}/{name}: {message}"))
            else:
                self.problems.addItem(gui_words(f"{subject}: {exc}"))
            self.status_message.emit(f"{label} failed: see the problems below")

        submit(work, handle.task, on_done=finished, on_error=failed)

    def _on_progress(self, report: Progress) -> None:
        self.progress.setValue(int(report.fraction * 1000))
        if report.current:
            self.progress.setFormat(f"{report.stage} {report.current} · %p%")

    def _finish(self) -> None:
        self._task = None
        self._show_busy(False)
        self._on_written()
        self.refresh()
        self._on_selection()
        self._next_import()

    def _cancel(self) -> None:
        if self._task is not None:
            self._pending.clear()
            self._task.cancel()
            self.progress_label.setText("cancelling…")

    def _show_busy(self, busy: bool) -> None:
        for widget in (self.progress, self.progress_label, self.cancel):
            widget.setVisible(busy)
        self.buttons["import"].setEnabled(not busy)
