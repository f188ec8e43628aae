"""The settings dialog: writes settings.toml through blueno.settings, keeps other keys and the API key out."""

from __future__ import annotations

import stat

import pytest

from blueno import BluenoError
from blueno.elastic.config import DEFAULT_API_KEY_FILE, load_config
from blueno.scheduler import detect_slots
from blueno.settings import API_KEY_FILE, UserSettings, read_settings
from gui.settings_dialog import QtSettingsDialog


def save(qtbot, dialog: QtSettingsDialog) -> None:
    with qtbot.waitSignal(dialog.accepted, timeout=10_000):  # saved off the GUI thread, then closed
        dialog.accept()


def test_that_saving_writes_the_sections_and_keeps_unknown_keys(qtbot, workspace) -> None:
    workspace.settings_path.write_text('[elasticsearch]\nindex_prefix = "lab"\n[other]\nkeep = 1\n')
    dialog = QtSettingsDialog(workspace, read_settings(workspace))
    qtbot.addWidget(dialog)
    dialog.gpus.setText("0,1")
    dialog.bucket.setText("gs://lab/blueno")
    dialog.es_url.setText("https://es.example.org:9200")
    dialog.es_key.setText("s3cret")
    save(qtbot, dialog)
    settings = workspace.settings()
    assert settings["scheduler"] == {"gpus": "0,1"}
    assert settings["gcs"] == {"bucket": "gs://lab/blueno"}
    assert settings["elasticsearch"] == {"index_prefix": "lab", "urls": ["https://es.example.org:9200"]}
    assert settings["other"] == {"keep": 1}
    assert "s3cret" not in workspace.settings_path.read_text()
    key_file = workspace.credentials_dir / API_KEY_FILE
    assert API_KEY_FILE == DEFAULT_API_KEY_FILE  # where the engine looks for it
    assert key_file.read_text().strip() == "s3cret"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert read_settings(workspace).es_key_stored


def test_that_a_workspace_set_up_as_documented_shows_its_url_and_the_engine_uses_what_is_typed(
    qtbot, workspace
) -> None:
    workspace.settings_path.write_text('[elasticsearch]\nurls = ["https://es-a.example.org:9200"]\n')
    dialog = QtSettingsDialog(workspace, read_settings(workspace))
    qtbot.addWidget(dialog)
    assert dialog.es_url.text() == "https://es-a.example.org:9200"
    dialog.es_url.setText("https://es-b.example.org:9200, https://es-c.example.org:9200")
    save(qtbot, dialog)
    config = load_config(workspace)
    assert config is not None
    assert config.urls == ("https://es-b.example.org:9200", "https://es-c.example.org:9200")


def test_that_the_older_single_url_key_is_shown_and_replaced_by_urls(qtbot, workspace) -> None:
    workspace.settings_path.write_text('[elasticsearch]\nurl = "https://old.example.org:9200"\n')
    dialog = QtSettingsDialog(workspace, read_settings(workspace))
    qtbot.addWidget(dialog)
    assert dialog.es_url.text() == "https://old.example.org:9200"
    save(qtbot, dialog)
    assert workspace.settings()["elasticsearch"] == {"urls": ["https://old.example.org:9200"]}


def test_that_the_api_key_field_is_masked_and_says_whether_a_key_is_stored(qtbot, workspace) -> None:
    dialog = QtSettingsDialog(workspace, UserSettings())
    qtbot.addWidget(dialog)
    assert dialog.es_key.echoMode() == dialog.es_key.EchoMode.Password
    assert "stored" not in dialog.es_key.placeholderText()
    stored = QtSettingsDialog(workspace, UserSettings(es_key_stored=True))
    qtbot.addWidget(stored)
    assert "a key is stored" in stored.es_key.placeholderText()


def test_that_a_gpu_list_that_names_no_gpu_is_refused_and_nothing_is_written(qtbot, workspace) -> None:
    workspace.settings_path.write_text("# my comment\n[scheduler]\nslots = 2  # two CPU jobs\n")
    before = workspace.settings_path.read_text()
    dialog = QtSettingsDialog(workspace, read_settings(workspace))
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
    dialog = QtSettingsDialog(workspace, read_settings(workspace))
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
    workspace.save_secret(API_KEY_FILE, "k")
    qtbot.waitUntil(lambda: window.findChild(QtSettingsDialog) is None, timeout=10_000)
    window.open_settings()
    qtbot.waitUntil(lambda: window.findChild(QtSettingsDialog) is not None, timeout=10_000)
    assert "a key is stored" in window.findChild(QtSettingsDialog).es_key.placeholderText()
    window.findChild(QtSettingsDialog).reject()
