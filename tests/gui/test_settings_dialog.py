"""The settings dialog: writes settings.toml, keeps other keys, keeps the API key out of it."""

from __future__ import annotations

import stat

import pytest

from blueno import BluenoError
from blueno.scheduler import detect_slots
from gui.settings_dialog import QtSettingsDialog, api_key_file, read


def test_that_saving_writes_the_sections_and_keeps_unknown_keys(qtbot, workspace) -> None:
    workspace.settings_path.write_text('[elasticsearch]\nindex_prefix = "lab"\n[other]\nkeep = 1\n')
    dialog = QtSettingsDialog(workspace, *read(workspace))
    qtbot.addWidget(dialog)
    dialog.gpus.setText("0,1")
    dialog.bucket.setText("gs://lab/blueno")
    dialog.es_url.setText("https://es.example.org:9200")
    dialog.es_key.setText("s3cret")
    with qtbot.waitSignal(dialog.accepted, timeout=10_000):  # saved off the GUI thread, then closed
        dialog.accept()
    settings = workspace.settings()
    assert settings["scheduler"] == {"gpus": "0,1"}
    assert settings["gcs"] == {"bucket": "gs://lab/blueno"}
    assert settings["elasticsearch"] == {"index_prefix": "lab", "url": "https://es.example.org:9200"}
    assert settings["other"] == {"keep": 1}
    assert "s3cret" not in workspace.settings_path.read_text()
    key_file = api_key_file(workspace)
    assert key_file.read_text().strip() == "s3cret"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_that_the_api_key_field_is_masked(qtbot, workspace) -> None:
    dialog = QtSettingsDialog(workspace, {})
    qtbot.addWidget(dialog)
    assert dialog.es_key.echoMode() == dialog.es_key.EchoMode.Password


def test_that_a_gpu_list_that_names_no_gpu_is_refused_and_nothing_is_written(qtbot, workspace) -> None:
    workspace.settings_path.write_text("# my comment\n[scheduler]\nslots = 2  # two CPU jobs\n")
    before = workspace.settings_path.read_text()
    dialog = QtSettingsDialog(workspace, *read(workspace))
    qtbot.addWidget(dialog)
    dialog.gpus.setText("abc")
    dialog.accept()
    assert "'abc' is not a GPU" in dialog.error.text() and dialog.isEnabled()
    assert workspace.settings_path.read_text() == before
    with pytest.raises(BluenoError, match="'abc' is not a GPU"):  # the library's save refuses it too
        workspace.save_settings({"scheduler": {"gpus": "abc"}})
    with pytest.raises(BluenoError, match="is not a GPU"):
        detect_slots(gpus="abc")
    assert workspace.settings_path.read_text() == before


def test_that_saving_keeps_the_users_comments_and_layout(qtbot, workspace) -> None:
    workspace.settings_path.write_text("# my comment\n[scheduler]\nslots = 2  # two CPU jobs\n\n[other]\nkeep = 1\n")
    dialog = QtSettingsDialog(workspace, *read(workspace))
    qtbot.addWidget(dialog)
    dialog.slots.setValue(3)
    with qtbot.waitSignal(dialog.accepted, timeout=10_000):
        dialog.accept()
    expected = "# my comment\n[scheduler]\nslots = 3  # two CPU jobs\n\n[other]\nkeep = 1\n"
    assert workspace.settings_path.read_text() == expected


def test_that_the_api_key_field_says_whether_a_key_is_stored(qtbot, window, workspace) -> None:
    window.open_settings()
    qtbot.waitUntil(lambda: window.findChild(QtSettingsDialog) is not None, timeout=10_000)
    dialog = window.findChild(QtSettingsDialog)
    assert dialog.parent() is window
    assert "stored" not in dialog.es_key.placeholderText()
    dialog.reject()  # deleted on close
    workspace.save_secret(api_key_file(workspace).name, "k")
    qtbot.waitUntil(lambda: window.findChild(QtSettingsDialog) is None, timeout=10_000)
    window.open_settings()
    qtbot.waitUntil(lambda: window.findChild(QtSettingsDialog) is not None, timeout=10_000)
    assert "a key is stored" in window.findChild(QtSettingsDialog).es_key.placeholderText()
    window.findChild(QtSettingsDialog).reject()
