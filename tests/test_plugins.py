"""User models and user transforms load the same way: into a registry per workspace, once per change of their files."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

import etl
from blueno import BluenoError, zoo
from blueno.workspace import Workspace

MODEL = textwrap.dedent("""
    from blueno.zoo.base import ModelSpec, register
    register(ModelSpec(name="{name}", input_kind="any", hyperparams=(), build=lambda *a, **k: None,
                       description="a test model"))
""")
TRANSFORM = textwrap.dedent('''
    import etl

    @etl.transform(name="{name}")
    def scaled(x, y):
        """A test transform."""
        return x
''')


def _edit(path: Path, text: str) -> None:
    """Rewrite a plugin file with a later modification time (as an editor would)."""
    stat = path.stat() if path.exists() else None
    path.write_text(text)
    if stat is not None:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


def _workspace(root: Path) -> Workspace:
    workspace = Workspace(root).ensure()
    workspace.zoo_dir.mkdir(exist_ok=True)
    workspace.transforms_dir.mkdir(exist_ok=True)
    return workspace


def test_that_a_user_model_file_runs_once_until_it_changes(workspace) -> None:
    workspace.zoo_dir.mkdir()
    path = workspace.zoo_dir / "mine.py"
    path.write_text(MODEL.format(name="plug_a"))
    first = zoo.registry(workspace)
    assert first.own() == ["plug_a"] and "mlp" in first  # the built-ins under the workspace's own
    assert zoo.registry(workspace) is first  # unchanged: not run again
    _edit(path, MODEL.format(name="plug_b"))
    second = zoo.registry(workspace)
    assert second.own() == ["plug_b"]  # edited: picked up without a restart, the old name gone
    assert second.get("plug_b").name == "plug_b"
    with pytest.raises(BluenoError, match="unknown model 'plug_a'"):
        second.get("plug_a")
    assert "plug_b" not in zoo.all_models()  # the built-ins are untouched


def test_that_a_user_transform_file_runs_once_until_it_changes(workspace) -> None:
    workspace.transforms_dir.mkdir()
    path = workspace.transforms_dir / "mine.py"
    path.write_text(TRANSFORM.format(name="plug_t1"))
    first = etl.registry(workspace.transforms_dir)
    assert first.own() == ["plug_t1"] and "resize" in first
    assert etl.registry(workspace.transforms_dir) is first
    path.write_text(TRANSFORM.format(name="plug_t22"))
    second = etl.registry(workspace.transforms_dir)
    assert second.own() == ["plug_t22"]  # the size changed
    assert second.get("plug_t22").name == "plug_t22"
    assert "plug_t22" not in etl.names()


def test_that_two_workspaces_in_one_process_do_not_see_each_others_plugins(tmp_path) -> None:
    one, two = _workspace(tmp_path / "one"), _workspace(tmp_path / "two")
    # The same file name in both, as two users would write it.
    (one.zoo_dir / "mine.py").write_text(MODEL.format(name="only_in_one"))
    (two.zoo_dir / "mine.py").write_text(MODEL.format(name="only_in_two"))
    (one.transforms_dir / "mine.py").write_text(TRANSFORM.format(name="t_one"))
    (two.transforms_dir / "mine.py").write_text(TRANSFORM.format(name="t_two"))

    assert "only_in_one" in zoo.load(one) and "only_in_two" not in zoo.load(one)
    assert "only_in_two" in zoo.load(two) and "only_in_one" not in zoo.load(two)
    assert etl.registry(one.transforms_dir).own() == ["t_one"]
    assert etl.registry(two.transforms_dir).own() == ["t_two"]
    assert "unknown transform 't_two'" in etl.check_step("t_two", {}, one.root)  # one's grids cannot use it
    assert etl.check_step("t_two", {}, two.root) is None
    # Grids of each workspace are checked against its own models only.
    from blueno.grid import GridError, parse_grid

    text = 'name = "g"\ndataset = "none@0"\n[models.only_in_two]\n'
    assert [c.model for c in parse_grid(text, source="<g>", workspace=two).configs] == ["only_in_two"]
    with pytest.raises(GridError, match="only_in_two"):
        parse_grid(text, source="<g>", workspace=one)


def test_that_a_broken_plugin_file_names_itself_and_runs_again_once_fixed(workspace) -> None:
    workspace.zoo_dir.mkdir()
    path = workspace.zoo_dir / "mine.py"
    path.write_text("raise RuntimeError('half-written')\n")
    with pytest.raises(BluenoError, match=r"mine\.py: loading this model file failed: RuntimeError"):
        zoo.registry(workspace)
    _edit(path, MODEL.format(name="fixed"))
    assert zoo.registry(workspace).own() == ["fixed"]
