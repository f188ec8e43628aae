"""``blueno grid show|validate`` and the example grids shipped in resources/examples."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from blueno.cli import main
from blueno.grid import load_grid
from blueno.workspace import Workspace

EXAMPLES = Path(__file__).resolve().parent.parent / "resources" / "examples"
DEMO = EXAMPLES / "demo.toml"


def dump(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_that_every_example_grid_is_valid(path: Path) -> None:
    grid = load_grid(path)
    assert grid.count >= 1 and grid.dataset == "digits"


def test_that_the_demo_grid_is_small_and_covers_two_models() -> None:
    grid = load_grid(DEMO)
    assert grid.count >= 8
    assert set(grid.models) == {"mlp", "cnn2d"}
    assert all(config.params["epochs"] <= 5 for config in grid.configs)


def test_that_show_prints_every_configuration_and_writes_nothing(tmp_path: Path, capsys) -> None:
    home = tmp_path / "ws"
    assert main(["--home", str(home), "grid", "show", str(DEMO)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[-1] == "8 configurations"
    assert "learning_rate" in out and "hidden_units" in out and "filters" in out
    models = [line.split()[1] for line in lines if line[:1].isdigit() and len(line.split()) > 2]
    assert models == ["mlp"] * 4 + ["cnn2d"] * 4
    assert not home.exists()


def test_that_show_json_gives_each_job_config(tmp_path: Path, capsys) -> None:
    assert main(["--home", str(tmp_path / "ws"), "grid", "show", str(DEMO), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["count"] == len(shown["configs"]) == 8
    assert shown["dataset_ref"] is None and shown["configs"][0]["hash"] is None
    assert set(shown["configs"][0]["config"]) == {"model", "params", "dataset", "preprocessing", "split"}


def test_that_show_hashes_against_the_workspace_dataset_version_read_only(tmp_path: Path, capsys) -> None:
    from blueno import datasets

    workspace = Workspace(tmp_path / "ws").ensure()
    with workspace.open_store() as store:
        ref = datasets.make_demo(workspace, store).ref
    before = dump(workspace.db_path)
    assert main(["--home", str(workspace.root), "grid", "show", str(DEMO), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    grid = load_grid(DEMO)
    assert shown["dataset_ref"] == ref
    assert [c["hash"] for c in shown["configs"]] == [c.config_hash(ref) for c in grid.configs]
    assert dump(workspace.db_path) == before


def test_that_validate_exits_0_for_a_valid_grid(tmp_path: Path, capsys) -> None:
    assert main(["--home", str(tmp_path / "ws"), "grid", "validate", str(DEMO)]) == 0
    assert "valid; 8 configurations" in capsys.readouterr().out


def test_that_validate_exits_2_naming_the_file_key_and_fix(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('dataset = "digits"\n[models.mlp]\nhidden_units = 0\n')
    assert main(["--home", str(tmp_path / "ws"), "grid", "validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3: models.mlp.hidden_units: 0 is below the minimum 1" in err
    assert "use a whole number from 1 to" in err
