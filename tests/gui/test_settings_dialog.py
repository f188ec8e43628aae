"""The settings dialog: writes settings.toml, keeps other keys, keeps the API key out of it."""

from __future__ import annotations

import stat

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
