"""Grid files saved over an existing file keep the user's comments and layout (tomlkit round trip)."""

from __future__ import annotations

import tomllib

import pytest

from blueno import BluenoError
from blueno.grid import parse_grid
from blueno.grid_toml import save_toml, update_toml

HAND_WRITTEN = """\
# My sweep of the digits: keep this note.
name = "sweep"
description = "widths against learning rates"   # the form has no field for this
dataset = "digits"

[split]
validation = 0.2   # stratified
seed = 7

[params]
epochs = 5
learning_rate = { log = [1e-3, 1e-2], num = 2 }   # 0.001 and 0.01

[models.mlp]   # the baseline
hidden_units = [32, 64]
dropout = 0.1
"""


def form_document() -> dict:
    """What the grid builder's form makes of the file after a user changed epochs and the widths,
    removed dropout and added a model."""
    return {
        "name": "sweep",
        "dataset": "digits",
        "split": {"validation": 0.2},
        "params": {"epochs": 8, "learning_rate": {"log": [0.001, 0.01], "num": 2}},
        "models": {"mlp": {"hidden_units": [16, 64]}, "cnn2d": {"filters": [8, 16]}},
    }


def test_that_saving_over_a_grid_file_keeps_its_comments_and_changes_only_what_changed() -> None:
    text = update_toml(HAND_WRITTEN, form_document(), keep=("description", "split.seed"))
    for comment in ("# My sweep of the digits: keep this note.", "# the form has no field for this",
                    "# stratified", "# 0.001 and 0.01", "# the baseline"):
        assert comment in text
    assert "learning_rate = { log = [1e-3, 1e-2], num = 2 }" in text  # same numbers: as the user wrote them
    assert text.index("[params]") < text.index("[models.mlp]") < text.index("[models.cnn2d]")
    assert tomllib.loads(text) == {
        **form_document(),
        "description": "widths against learning rates",
        "split": {"validation": 0.2, "seed": 7},
    }
    parse_grid(text)  # still a valid grid


def test_that_an_unchanged_document_leaves_the_file_byte_for_byte() -> None:
    document = tomllib.loads(HAND_WRITTEN)
    assert update_toml(HAND_WRITTEN, document) == HAND_WRITTEN


def test_that_save_writes_a_new_file_or_updates_one_and_refuses_broken_toml(tmp_path) -> None:
    path = tmp_path / "grid.toml"
    save_toml(path, form_document())
    assert tomllib.loads(path.read_text()) == form_document()
    path.write_text(HAND_WRITTEN)
    save_toml(path, form_document(), keep=("description", "split.seed"))
    assert "# the baseline" in path.read_text() and tomllib.loads(path.read_text())["params"]["epochs"] == 8
    path.write_text("name = [unclosed\n")
    with pytest.raises(BluenoError, match="grid.toml"):
        save_toml(path, form_document())
    assert path.read_text() == "name = [unclosed\n"  # left as it was
    assert [p.name for p in tmp_path.iterdir()] == ["grid.toml"]
