"""Transforms and derived versions: lineage, caching, user transforms, the grid's chains."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import etl
from blueno import BluenoError, datasets
from blueno.cli import main
from blueno.datasets.derive import derive
from blueno.datasets.importing import import_path
from blueno.datasets.stream import ArrayFile
from blueno.workspace import Workspace


@pytest.fixture(scope="module")
def digits_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace holding the demo dataset, built once per module."""
    workspace = Workspace(tmp_path_factory.mktemp("template") / "ws").ensure()
    with workspace.open_store() as store:
        datasets.make_demo(workspace, store)
    return workspace.root


@pytest.fixture
def workspace(digits_template: Path, tmp_path: Path) -> Workspace:
    """A copy of the template (the conftest's ``store`` opens it): cheaper than a fresh demo per test."""
    return Workspace(Path(shutil.copytree(digits_template, tmp_path / "ws")))


def test_that_builtin_transforms_do_what_their_names_say():
    batch = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6)
    run = lambda name, **params: etl.get(name)(batch, etl.get(name).check(params))  # noqa: E731
    assert run("crop", top=1, left=2, height=3, width=4).tolist() == batch[:, 1:4, 2:6].tolist()
    assert run("center_crop", height=2, width=2).tolist() == batch[:, 2:4, 2:4].tolist()
    assert run("resize", height=3, width=12).shape == (2, 3, 12)
    clipped = run("clip", low=10, high=20, rescale=True)
    assert clipped.min() == 0.0 and clipped.max() == 1.0
    normalized = run("normalize", mean=5.0, std=2.0)
    assert normalized.dtype == np.float32 and normalized[0, 0, 0] == -2.5


def test_that_mip_projects_volumes_in_slabs_as_channels():
    volume = np.zeros((1, 6, 3, 3), dtype=np.float32)
    volume[0, 4, 1, 1] = 7.0  # one bright voxel in the third slab of two slices
    out = etl.get("mip")(volume, etl.get("mip").check({"slab": 2}))
    assert out.shape == (1, 3, 3, 3)
    assert out[0, 1, 1].tolist() == [0.0, 0.0, 7.0]
    params = etl.get("mip").check({"slab": 3, "stride": 1, "channels_last": False})
    overlapping = etl.get("mip")(volume, params)
    assert overlapping.shape == (1, 4, 3, 3)


def test_that_bad_steps_are_refused_with_what_is_valid():
    assert "known: center_crop, clip, crop, mip, normalize, resize" in etl.check_step("blur", {})
    assert "resize needs the parameter 'height'" in etl.check_step("resize", {"width": 3})
    assert "resize: height='8' is not int" in etl.check_step("resize", {"height": "8", "width": 3})
    assert "crop has no parameter 'size'" in etl.check_step("crop", {"size": 3})
    assert etl.check_step("normalize", {"mean": [0.5], "std": 0.25}) is None


def test_that_derive_records_lineage_and_reuses_the_cached_result(workspace, store):
    demo = datasets.make_demo(workspace, store)
    derived = derive(workspace, store, demo, "center_crop", {"height": 6, "width": 6})
    assert derived.name == "digits.center_crop" and derived.kind == "arrays"
    assert derived.parent_id == demo.id and derived.manifest["parent"] == demo.ref
    assert derived.transform == {"name": "center_crop", "params": {"height": 6, "width": 6}}
    x, y, ids, names = datasets.load_arrays(workspace, derived)
    px, py, pids, _ = datasets.load_arrays(workspace, demo)
    assert isinstance(x, ArrayFile) and x.shape == (1797, 6, 6)  # read by rows, never whole
    np.testing.assert_array_equal(x, px[:, 1:7, 1:7])
    assert y.tolist() == py.tolist() and ids.tolist() == pids.tolist() and names == demo.class_names
    mtime = (derived.path / "x.npy").stat().st_mtime_ns
    again = derive(workspace, store, demo, "center_crop", {"width": 6, "height": 6})
    assert again.id == derived.id and (derived.path / "x.npy").stat().st_mtime_ns == mtime


def test_that_normalize_fits_on_the_parent_and_records_what_it_fitted(workspace, store):
    demo = datasets.make_demo(workspace, store)
    derived = derive(workspace, store, demo, "normalize", {})
    x = datasets.load_arrays(workspace, derived)[0]
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1.0) < 1e-3
    fitted = derived.manifest["fitted"]
    assert set(fitted) == {"mean", "std"} and 0 < fitted["mean"][0] < 1


def test_that_two_preprocessing_chains_prepare_two_derived_versions(workspace, store):
    demo = datasets.make_demo(workspace, store)
    chains = [
        [{"transform": "normalize", "params": {"mean": 0.5, "std": 0.5}}],
        [{"transform": "resize", "params": {"height": 16, "width": 16}}, {"transform": "normalize"}],
    ]
    first, second = (datasets.prepare(workspace, store, "digits", chain) for chain in chains)
    assert first.ref != second.ref
    assert first.sample_shape == (8, 8) and second.sample_shape == (16, 16)
    assert second.name == "digits.resize.normalize"
    parent = datasets.get(store, workspace, second.parent_id)
    assert parent.name == "digits.resize" and parent.parent_id == demo.id
    assert datasets.prepare(workspace, store, demo.ref, chains[1]).id == second.id


def test_that_a_workspace_transform_registers_and_editing_it_invalidates_the_cache(workspace, store):
    demo = datasets.make_demo(workspace, store)
    folder = workspace.root / "transforms"
    folder.mkdir()
    source = (
        "import numpy as np\nimport etl\n\n"
        "@etl.transform('invert')\n"
        "def invert(batch: np.ndarray, *, maximum: float = 1.0) -> np.ndarray:\n"
        "    return (maximum - batch).astype(np.float32)\n"
    )
    (folder / "mine.py").write_text(source)
    first = derive(workspace, store, demo, "invert", {})
    x = datasets.load_arrays(workspace, first)[0]
    assert float(x.max()) == 1.0 and "code" in first.transform
    (folder / "mine.py").write_text(source.replace("(maximum - batch)", "(2 * maximum - batch)"))
    second = derive(workspace, store, demo, "invert", {})
    assert second.id != first.id and float(datasets.load_arrays(workspace, second)[0].max()) == 2.0


def test_that_a_transform_that_does_not_fit_the_data_leaves_nothing_behind(workspace, store, tmp_path):
    np.savez(tmp_path / "flat.npz", x=np.ones((4, 5), np.float32), y=np.array([0, 1, 0, 1]))
    flat = import_path(workspace, store, tmp_path / "flat.npz").version
    before = sorted(p.name for p in workspace.data_dir.iterdir())
    with pytest.raises(BluenoError, match=r"cannot derive mip from flat@\w+: mip needs volumes"):
        derive(workspace, store, flat, "mip", {"slab": 2})
    with pytest.raises(BluenoError, match="resize needs the parameter 'width'"):
        datasets.prepare(workspace, store, "flat", [{"transform": "resize", "params": {"height": 2}}])
    assert sorted(p.name for p in workspace.data_dir.iterdir()) == before
    assert [v.name for v in datasets.versions(store, workspace)] == ["flat", "digits"]


def test_that_the_derive_command_prints_the_new_version_and_show_names_its_lineage(workspace, capsys):
    home = ["--home", str(workspace.root)]
    assert main([*home, "data", "derive", "digits", "-t", "center_crop", "-p", "height=4", "-p", "width=4",
                 "--as", "digits-small"]) == 0
    ref = capsys.readouterr().out.split(":")[0]
    assert ref.startswith("digits-small@")
    assert main([*home, "data", "show", ref, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["parent"].startswith("digits@") and shown["sample_shape"] == [4, 4]
    assert shown["transform"] == {"name": "center_crop", "params": {"height": 4, "width": 4}}
    assert main([*home, "data", "derive", "digits", "-t", "blur"]) == 2
    assert "unknown transform 'blur'" in capsys.readouterr().err
