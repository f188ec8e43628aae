"""Every dataset kind reads its samples by batch from disk; one-time caches for what cannot be read in place."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from blueno import datasets
from blueno.datasets.importing import import_path
from blueno.datasets.stream import ArrayFile, FileStack
from blueno.workspace import Workspace


def test_that_an_array_file_reads_any_rows_in_any_order_as_numpy_does(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(50, 3, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    rows = ArrayFile.open_npy(tmp_path / "x.npy")
    assert rows is not None and rows.shape == x.shape and rows.dtype == x.dtype and len(rows) == 50
    wanted = np.array([7, 3, 4, 5, 49, 0, 6, 3, -1])  # runs, repeats, reversed order, negative
    np.testing.assert_array_equal(rows[wanted], x[wanted])
    np.testing.assert_array_equal(rows[10:20], x[10:20])
    np.testing.assert_array_equal(rows[5], x[5])
    np.testing.assert_array_equal(np.asarray(rows), x)
    with pytest.raises(IndexError):
        rows[np.array([50])]


def test_that_an_uncompressed_npz_member_is_read_in_place_and_a_compressed_one_is_not(tmp_path: Path) -> None:
    x = np.arange(240, dtype=np.int16).reshape(20, 3, 4)
    np.savez(tmp_path / "stored.npz", x=x, y=np.arange(20))
    np.savez_compressed(tmp_path / "packed.npz", x=x, y=np.arange(20))
    stored = ArrayFile.open_npz_member(tmp_path / "stored.npz", "x.npy")
    assert stored is not None
    np.testing.assert_array_equal(stored[np.array([19, 0, 4])], x[[19, 0, 4]])
    assert ArrayFile.open_npz_member(tmp_path / "packed.npz", "x.npy") is None


def test_that_a_compressed_npz_is_extracted_once_into_the_cache_and_rebuilt_when_damaged(
    workspace: Workspace, store, tmp_path: Path
) -> None:
    x = np.random.default_rng(1).integers(0, 255, size=(30, 5, 5), dtype=np.uint8)
    np.savez_compressed(tmp_path / "scans.npz", x=x, y=np.arange(30) % 3)
    version = import_path(workspace, store, tmp_path / "scans.npz", link=True).version
    lx, ly, _, _ = datasets.load_arrays(workspace, version)
    assert isinstance(lx, ArrayFile)
    np.testing.assert_array_equal(lx[np.arange(30)], x)
    cached = datasets.cache_dir(workspace, version) / "x.npy"
    assert cached.is_file() and workspace.data_dir in cached.parents  # never inside the linked folder
    first = cached.stat().st_mtime_ns
    datasets.load_arrays(workspace, version)
    assert cached.stat().st_mtime_ns == first  # reused
    with open(cached, "r+b") as f:  # a crash mid-write elsewhere, a full disk: the cache is short
        f.truncate(cached.stat().st_size - 7)
    lx, _, _, _ = datasets.load_arrays(workspace, version)
    np.testing.assert_array_equal(lx[np.arange(30)], x)
    datasets.remove(store, workspace, version.ref)
    assert not cached.parent.exists()


def test_that_a_csv_is_converted_once_and_then_trains_without_reading_the_table(
    workspace: Workspace, store, tmp_path: Path
) -> None:
    lines = ["id,a,b,label"] + [f"r{i},{i * 0.5},{-i},{'cat' if i % 2 else 'dog'}" for i in range(25)]
    (tmp_path / "table.csv").write_text("\n".join(lines) + "\n")
    version = import_path(workspace, store, tmp_path / "table.csv").version
    expected_x = np.array([[i * 0.5, -i] for i in range(25)], dtype=np.float32)
    lx, ly, ids, names = datasets.load_arrays(workspace, version)
    np.testing.assert_array_equal(np.asarray(lx), expected_x)
    assert ids.tolist() == [f"r{i}" for i in range(25)]
    assert [names[k] for k in ly] == ["cat" if i % 2 else "dog" for i in range(25)]
    os.rename(version.path / "table.csv", tmp_path / "away.csv")  # the cache alone is read now
    lx2, ly2, ids2, _ = datasets.load_arrays(workspace, version)
    np.testing.assert_array_equal(lx2[np.arange(25)], expected_x)
    assert ly2.tolist() == ly.tolist() and ids2.tolist() == ids.tolist()


def test_that_image_and_npy_folders_decode_only_the_samples_asked_for(
    workspace: Workspace, store, tmp_path: Path
) -> None:
    source = tmp_path / "pics"
    pixels = {}
    for label in ("a", "b"):
        (source / label).mkdir(parents=True)
        for i in range(4):
            array = np.full((6, 5), 40 * i + (label == "b") * 7, dtype=np.uint8)
            Image.fromarray(array).save(source / label / f"{i}.png")
            pixels[f"{label}/{i}"] = array
    version = import_path(workspace, store, source).version
    lx, _, ids, _ = datasets.load_arrays(workspace, version)
    assert isinstance(lx, FileStack) and lx.shape == (8, 6, 5)
    (version.path / "b" / "3.png").unlink()  # never decoded below: reading x[0] and x[5] must not touch it
    picked = [0, 5]
    for row, image in zip(picked, lx[np.array(picked)], strict=True):
        np.testing.assert_array_equal(image, pixels[str(ids[row])])


def test_that_derived_arrays_are_read_row_by_row(tmp_path: Path) -> None:
    from blueno.datasets.kinds import load_arrays_kind

    x = np.arange(24, dtype=np.float64).reshape(6, 4)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.arange(6) % 2)
    np.save(tmp_path / "ids.npy", np.array([str(i) for i in range(6)]))
    lx, _, _ = load_arrays_kind(tmp_path, {})
    assert isinstance(lx, ArrayFile)
    np.testing.assert_array_equal(lx[np.array([5, 1])], x[[5, 1]])


@pytest.mark.slow
def test_that_a_linked_csv_and_a_compressed_npz_train_from_their_caches(
    workspace: Workspace, store, tmp_path: Path
) -> None:
    """Real trainers (subprocesses) on the two kinds that need a conversion; the linked folders stay untouched."""
    from training_helpers import submit, train_queued

    rng = np.random.default_rng(3)
    features = rng.normal(size=(60, 4)).astype(np.float32)
    labels = (features[:, 0] > 0).astype(int)
    source = tmp_path / "linked"
    source.mkdir()
    lines = ["a,b,c,d,label"] + [",".join(f"{v:.4f}" for v in row) + f",{k}" for row, k in zip(features, labels,
                                                                                             strict=True)]
    (source / "table.csv").write_text("\n".join(lines) + "\n")
    np.savez_compressed(source / "packed.npz", x=features.reshape(60, 2, 2), y=labels)
    before = sorted(p.name for p in source.iterdir())
    refs = [import_path(workspace, store, source / name, link=True).version.ref
            for name in ("table.csv", "packed.npz")]
    for ref in refs:
        submit(workspace, store, f"""
name = "streamed-{ref.split('@')[0]}"
dataset = "{ref}"
[params]
epochs = 2
batch_size = 8
[models.mlp]
hidden_units = 4
""")
    assert set(train_queued(workspace, store).values()) == {"succeeded"}
    for ref in refs:
        version = datasets.resolve(store, workspace, ref)
        assert (datasets.cache_dir(workspace, version) / "x.npy").is_file()
    assert sorted(p.name for p in source.iterdir()) == before
