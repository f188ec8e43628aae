"""User models and user transforms load the same way: once per change of their files."""

from __future__ import annotations

import os
import textwrap

import pytest

from blueno import zoo
from etl import load_user_transforms
from etl import registry as transforms

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


@pytest.fixture(autouse=True)
def forget_test_plugins():
    """The registries are still process-wide (per-workspace registries are not done yet): take ours out."""
    yield
    from blueno.zoo import base

    for name in ("plug_a", "plug_b"):
        base._REGISTRY.pop(name, None)
    for name in ("plug_t1", "plug_t22"):
        transforms._REGISTRY.pop(name, None)


def test_that_a_user_model_file_runs_once_until_it_changes(workspace) -> None:
    workspace.zoo_dir.mkdir()
    path = workspace.zoo_dir / "mine.py"
    path.write_text(MODEL.format(name="plug_a"))
    assert "plug_a" in zoo.load_user_models(workspace.zoo_dir)
    assert zoo.load_user_models(workspace.zoo_dir) == []  # unchanged: not run again
    path.write_text(MODEL.format(name="plug_b"))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert zoo.load_user_models(workspace.zoo_dir) == ["plug_b"]  # edited: picked up without a restart
    assert zoo.get("plug_b").name == "plug_b"


def test_that_a_user_transform_file_runs_once_until_it_changes(workspace) -> None:
    workspace.transforms_dir.mkdir()
    path = workspace.transforms_dir / "mine.py"
    path.write_text(TRANSFORM.format(name="plug_t1"))
    assert load_user_transforms(workspace.transforms_dir) == ["plug_t1"]
    assert load_user_transforms(workspace.transforms_dir) == []
    path.write_text(TRANSFORM.format(name="plug_t22"))
    assert load_user_transforms(workspace.transforms_dir) == ["plug_t22"]  # the size changed
    assert transforms.get("plug_t22").name == "plug_t22"
