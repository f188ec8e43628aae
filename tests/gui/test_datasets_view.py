"""The datasets view: drop a folder on the window, see the dataset, its preview and its problems."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gcs_emulator import gcs_bucket_fixture, gcs_emulator_fixture  # noqa: F401  (fixtures)
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from gui.datasets_view import QtGcsBrowser, QtImportDialog, gui_words


def npy_folder(root: Path, name: str, samples: int = 6, corrupt: bool = False) -> Path:
    folder = root / name
    folder.mkdir()
    lines = ["id,label"]
    for i in range(samples):
        np.save(folder / f"s{i}.npy", np.random.default_rng(i).random((8, 8)).astype(np.float32))
        lines.append(f"s{i},{'circle' if i % 2 else 'square'}")
    if corrupt:
        (folder / "s0.npy").write_bytes(b"not an array")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return folder


def drop(window, paths: list[Path]) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(
        QPointF(50, 50),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(event)


@pytest.fixture(autouse=True)
def confirm_imports(monkeypatch) -> None:
    monkeypatch.setattr(QtImportDialog, "exec", lambda self: 1)


def test_that_a_folder_dropped_on_the_window_becomes_a_dataset(qtbot, window, tmp_path) -> None:
    drop(window, [npy_folder(tmp_path, "shapes")])
    view = window.datasets_view
    assert window.tabs.currentWidget() is view
    qtbot.waitUntil(lambda: view.model.rowCount() == 1, timeout=15_000)
    row = view.model.row(0)
    assert (row["name"], row["samples"], row["classes"], row["where"]) == ("shapes", 6, 2, "local")
    view.table.selectRow(0)
    qtbot.waitUntil(lambda: view.preview_layout.count() >= 1 + 2 * 4, timeout=10_000)


def test_that_a_broken_file_is_listed_as_a_problem_and_nothing_is_imported(qtbot, window, tmp_path) -> None:
    drop(window, [npy_folder(tmp_path, "broken", corrupt=True)])
    view = window.datasets_view
    qtbot.waitUntil(lambda: view.problems.count() > 0, timeout=15_000)
    assert any("s0.npy" in view.problems.item(i).text() for i in range(view.problems.count()))
    assert view.model.rowCount() == 0


def test_that_push_and_the_bucket_browser_round_trip_a_dataset(
    qtbot, window, workspace, tmp_path, gcs_bucket
):
    workspace.settings_path.write_text(f'[gcs]\nbucket = "{gcs_bucket}"\n')
    view = window.datasets_view
    drop(window, [npy_folder(tmp_path, "pets")])
    qtbot.waitUntil(lambda: view.model.rowCount() == 1, timeout=15_000)
    view.table.selectRow(0)
    view.buttons["push"].click()
    qtbot.waitUntil(
        lambda: view.model.rowCount() == 1 and view.model.row(0)["where"] == "local + GCS", timeout=30_000
    )

    browser = QtGcsBrowser(workspace, view)
    qtbot.addWidget(browser)
    qtbot.waitUntil(lambda: browser.model.rowCount() == 1, timeout=15_000)
    assert browser.model.row(0)["ref"] == view.model.row(0)["ref"]


def test_that_the_datasets_model_passes_the_model_tester(qtmodeltester, qtbot, window, tmp_path) -> None:
    drop(window, [npy_folder(tmp_path, "shapes")])
    model = window.datasets_view.model
    qtbot.waitUntil(lambda: model.rowCount() == 1, timeout=15_000)
    qtmodeltester.check(model, force_py=True)


def test_that_derive_records_a_child_version_with_its_parent(qtbot, window, tmp_path, monkeypatch) -> None:
    view = window.datasets_view
    drop(window, [npy_folder(tmp_path, "shapes")])
    qtbot.waitUntil(lambda: view.model.rowCount() == 1, timeout=15_000)
    parent_ref = view.model.row(0)["ref"]
    view.table.selectRow(0)
    qtbot.waitUntil(view.buttons["derive"].isEnabled, timeout=15_000)
    view.buttons["derive"].click()
    dialog = view.derive_dialog
    dialog.transform.setCurrentText("clip")
    assert set(dialog.form.fields) == {"low", "high", "rescale"}  # generated from clip's declared parameters
    assert not dialog.buttons.button(dialog.buttons.StandardButton.Ok).isEnabled()  # low and high are required
    assert "low" in dialog.error.text()
    dialog.form.fields["low"].setText("0.2")
    dialog.form.fields["high"].setText("eight")
    assert "high" in dialog.error.text()
    dialog.form.fields["high"].setText("0.8")
    assert dialog.error.text() == ""
    dialog.buttons.button(dialog.buttons.StandardButton.Ok).click()
    qtbot.waitUntil(lambda: view.model.rowCount() == 2 or view.problems.count() > 0, timeout=30_000)
    problems = [view.problems.item(i).text() for i in range(view.problems.count())]
    assert not problems
    child = next(row for row in view.model.rows() if row["parent"])
    assert (child["parent"], child["transform"]) == (parent_ref, "clip")


def test_that_a_dropped_text_file_is_named_and_refused_before_any_dialog(qtbot, window, tmp_path, monkeypatch) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not data\n")
    asked = []
    monkeypatch.setattr(QtImportDialog, "exec", lambda self: asked.append(self) or 1)
    messages = []
    window.datasets_view.status_message.connect(messages.append)
    drop(window, [notes])
    view = window.datasets_view
    assert not asked  # refused before the import dialog opens
    assert messages and messages[-1].startswith("notes.txt:")
    assert any("notes.txt" in view.problems.item(i).text() for i in range(view.problems.count()))
    assert view.problems.wordWrap()


def test_that_import_errors_name_the_dialogs_fields_not_command_line_flags() -> None:
    message = "labels.csv: has no 'label' column (columns: id, kind); name it with --label-col"
    assert gui_words(message) == ("labels.csv: has no 'label' column (columns: id, kind); name it with the Label "
                                  "column field of the import dialog")
    assert "--" not in gui_words("x is an archive: it has to be extracted, so it cannot be --link'ed.")
