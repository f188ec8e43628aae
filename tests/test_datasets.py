"""Dataset registry: import the original conventions, resolve references, load arrays, remove."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from blueno import BluenoError, datasets
from blueno.datasets.importing import import_path
from blueno.store import Store, now
from blueno.workspace import Workspace


def write_npy_folder(folder: Path, n: int = 12, shape: tuple[int, ...] = (4, 4), classes: int = 3) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = ["id,label"]
    for i in range(n):
        np.save(folder / f"s{i:03d}.npy", rng.random(shape, dtype=np.float32))
        lines.append(f"s{i:03d},{['cat', 'dog', 'eel'][i % classes]}")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return folder


def snapshot(workspace: Workspace, store: Store) -> tuple[list[str], int]:
    """What an import must leave untouched when it fails: the files under data/ and the rows."""
    files = sorted(str(p.relative_to(workspace.root)) for p in workspace.data_dir.rglob("*"))
    return files, store.query_one("SELECT COUNT(*) AS n FROM datasets")["n"]


def test_that_the_demo_dataset_is_8x8_digits_in_unit_range_and_idempotent(workspace, store):
    first = datasets.make_demo(workspace, store)
    assert first.ref == f"digits@{first.version}"
    assert first.path == workspace.data_dir / "digits" / first.version
    x, y, ids, class_names = datasets.load_arrays(workspace, first)
    assert x.shape == (1797, 8, 8) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert class_names == [str(d) for d in range(10)]
    assert y.dtype == np.int64 and set(y.tolist()) == set(range(10))
    assert ids[0] == "0000" and len(ids) == 1797
    again = datasets.make_demo(workspace, store)
    assert again.id == first.id
    assert len(datasets.versions(store, workspace)) == 1


def test_that_a_folder_of_npy_arrays_with_labels_csv_imports_and_loads_in_label_order(
    workspace, store, tmp_path
):
    source = write_npy_folder(tmp_path / "src")
    before = {p.name: p.read_bytes() for p in source.iterdir()}
    result = import_path(workspace, store, source, name="pets")
    v = result.version
    assert not result.existed and v.kind == "npy_folder" and v.n_samples == 12
    assert v.classes == {"cat": 4, "dog": 4, "eel": 4} and v.class_names == ["cat", "dog", "eel"]
    assert (v.path / "manifest.json").is_file() and not v.linked
    x, y, ids, names = datasets.load_arrays(workspace, v)
    assert x.shape == (12, 4, 4)
    np.testing.assert_array_equal(x[5], np.load(source / "s005.npy"))
    assert y[:4].tolist() == [0, 1, 2, 0] and ids[5] == "s005"
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before  # the source is only read


def test_that_importing_the_same_content_again_finds_the_existing_version(workspace, store, tmp_path):
    source = write_npy_folder(tmp_path / "src")
    first = import_path(workspace, store, source, name="pets").version
    copy = shutil.copytree(source, tmp_path / "elsewhere")
    again = import_path(workspace, store, copy, name="pets")
    assert again.existed and again.version.id == first.id
    (copy / "s000.npy").unlink()
    (copy / "labels.csv").write_text((copy / "labels.csv").read_text().replace("s000,cat\n", ""))
    changed = import_path(workspace, store, copy, name="pets").version
    assert changed.version != first.version and changed.n_samples == 11
    assert datasets.resolve(store, workspace, "pets").id == changed.id  # newest
    assert datasets.resolve(store, workspace, first.ref).id == first.id


def test_that_an_npz_with_x_and_y_imports(workspace, store, tmp_path):
    x = np.arange(60, dtype=np.float32).reshape(5, 3, 4)
    np.savez(tmp_path / "small.npz", x=x, y=np.array([2, 0, 1, 2, 10]))
    v = import_path(workspace, store, tmp_path / "small.npz").version
    assert v.name == "small" and v.kind == "npz" and v.sample_shape == (3, 4)
    assert v.class_names == ["0", "1", "2", "10"]
    lx, ly, ids, _ = datasets.load_arrays(workspace, v)
    np.testing.assert_array_equal(lx, x)
    assert ly.tolist() == [2, 0, 1, 2, 3] and ids.tolist() == ["0", "1", "2", "3", "4"]


def test_that_resolving_an_unknown_name_or_version_lists_what_exists(workspace, store, tmp_path):
    with pytest.raises(BluenoError, match="none yet"):
        datasets.resolve(store, workspace, "pets")
    v = import_path(workspace, store, write_npy_folder(tmp_path / "src"), name="pets").version
    with pytest.raises(BluenoError, match=r"no dataset named 'mnist'.*pets"):
        datasets.resolve(store, workspace, "mnist")
    with pytest.raises(BluenoError, match=rf"pets@ffff does not exist.*{v.ref}"):
        datasets.resolve(store, workspace, "pets@ffff")
    assert datasets.resolve(store, workspace, f"pets@{v.version[:6]}").id == v.id
    with pytest.raises(BluenoError, match="not a valid dataset name"):
        datasets.resolve(store, workspace, "a/b")


def test_that_prepare_resolves_and_checks_the_files_are_there(workspace, store, tmp_path):
    v = import_path(workspace, store, write_npy_folder(tmp_path / "src"), name="pets").version
    assert datasets.prepare(workspace, store, "pets", []).id == v.id
    (v.path / "s007.npy").unlink()
    with pytest.raises(BluenoError, match=r"missing: s007\.npy"):
        datasets.prepare(workspace, store, "pets", [])


def test_that_a_linked_import_references_files_in_place(workspace, store, tmp_path):
    source = write_npy_folder(tmp_path / "src")
    v = import_path(workspace, store, source, name="pets", link=True).version
    assert v.linked and v.path == source
    assert not (workspace.data_dir / "pets").exists() and not (source / "manifest.json").exists()
    (source / "README.txt").write_text("notes beside the data are not the data")
    assert datasets.verify(workspace, v).ok
    np.save(source / "s999.npy", np.zeros((4, 4), np.float32))
    assert datasets.verify(workspace, v).extra == ["s999.npy"]
    datasets.remove(store, workspace, v.ref)
    assert (source / "labels.csv").exists()


def test_that_rm_refuses_while_a_queued_job_needs_the_version_unless_forced(workspace, store, tmp_path):
    v = import_path(workspace, store, write_npy_folder(tmp_path / "src"), name="pets").version
    with store.write() as conn:
        conn.execute("INSERT INTO experiments (name, grid_text, created) VALUES ('e', '', ?)", (now(),))
        conn.execute(
            "INSERT INTO jobs (experiment_id, config_hash, config, model, dataset, created) "
            "VALUES (1, 'h', ?, 'mlp', ?, ?)", (json.dumps({"dataset": v.ref}), v.ref, now()),
        )
    with pytest.raises(BluenoError, match=rf"still needed \({v.ref} by job 1\).*--force"):
        datasets.remove(store, workspace, "pets")
    assert v.path.is_dir() and datasets.resolve(store, workspace, v.ref)
    removed = datasets.remove(store, workspace, "pets", force=True)
    assert [r.id for r in removed] == [v.id]
    assert not (workspace.data_dir / "pets").exists()
    assert datasets.versions(store, workspace) == []
