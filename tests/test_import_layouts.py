"""The lab's own data layouts: arrays in a sub-folder, labels beside it or anywhere, positives/negatives, .npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gcs_emulator import gcs_bucket_fixture, gcs_emulator_fixture  # noqa: F401  (fixtures)
from test_datasets import snapshot

from blueno import BluenoError, datasets
from blueno.datasets.importing import import_path
from blueno.datasets.kinds import InvalidDataset, iter_batches

RNG = np.random.default_rng(0)
IDS = ["P001", "P002", "P003", "P004", "P005", "P006"]
OCCLUSION = ["1", "0", "0", "1", "0", "1"]


def write_arrays(folder: Path, suffix: str = ".npy", ids: list[str] = IDS) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True)
    arrays = {}
    for i in ids:
        arrays[i] = RNG.normal(size=(4, 6, 6)).astype("float32")  # a tiny CT volume
        if suffix == ".npy":
            np.save(folder / f"{i}.npy", arrays[i])
        else:
            np.savez_compressed(folder / f"{i}.npz", arrays[i])
    return arrays


def write_labels(path: Path, ids: list[str] = IDS, labels: list[str] = OCCLUSION) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ["Anon ID,age,occlusion_exists",
            *(f"{i},{60 + n},{lab}" for n, (i, lab) in enumerate(zip(ids, labels, strict=True)))]
    path.write_text("\n".join(rows) + "\n")
    return path


def processed_lower(root: Path, suffix: str = ".npy") -> tuple[Path, dict[str, np.ndarray]]:
    """The lab's layout: processed-lower/{arrays/<id>.npy, labels.csv}, labels beside the arrays."""
    folder = root / "processed-lower"
    arrays = write_arrays(folder / "arrays", suffix)
    write_labels(folder / "labels.csv")
    return folder, arrays


def check_loaded(workspace, version, arrays: dict[str, np.ndarray], labels: list[str] = OCCLUSION) -> None:
    x, y, ids, names = datasets.load_arrays(workspace, version)
    assert names == ["0", "1"] and ids.tolist() == IDS
    assert [names[k] for k in y] == labels
    for i, sample in enumerate(ids):
        np.testing.assert_array_equal(x[i], arrays[sample])
    streamed = np.concatenate([b[0] for b in iter_batches(version.kind, version.path, version.manifest, 4)])
    np.testing.assert_array_equal(streamed, x)
    assert datasets.verify(workspace, version).ok


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_that_arrays_in_a_subfolder_with_labels_beside_it_import(workspace, store, tmp_path, suffix):
    folder, arrays = processed_lower(tmp_path, suffix)
    v = import_path(workspace, store, folder, id_col="Anon ID", label_col="occlusion_exists").version
    assert v.name == "processed-lower" and v.kind == "npy_folder"
    assert v.n_samples == 6 and v.sample_shape == (4, 6, 6) and v.classes == {"0": 3, "1": 3}
    assert v.manifest["options"]["arrays"] == "arrays"
    check_loaded(workspace, v, arrays)


def test_that_a_labels_file_anywhere_can_be_named(workspace, store, tmp_path):
    arrays = write_arrays(tmp_path / "scans" / "arrays")
    labels = write_labels(tmp_path / "elsewhere" / "cohort-2021.csv")
    v = import_path(workspace, store, tmp_path / "scans", labels=labels, id_col="Anon ID",
                    label_col="occlusion_exists").version
    assert (v.path / "labels.csv").read_bytes() == labels.read_bytes()  # copied into the version
    check_loaded(workspace, v, arrays)
    with pytest.raises(BluenoError, match="without --link"):
        import_path(workspace, store, tmp_path / "scans", name="linked", labels=labels, link=True,
                    id_col="Anon ID", label_col="occlusion_exists")


def test_that_a_positives_and_negatives_pair_gives_the_labels(workspace, store, tmp_path):
    folder = tmp_path / "older-set"
    arrays = write_arrays(folder / "arrays")
    positives = [i for i, lab in zip(IDS, OCCLUSION, strict=True) if lab == "1"]
    negatives = [i for i, lab in zip(IDS, OCCLUSION, strict=True) if lab == "0"]
    (folder / "labels").mkdir()
    (folder / "labels" / "positives.csv").write_text("Anon ID\n" + "\n".join(positives) + "\n")
    (folder / "labels" / "negatives.csv").write_text("Anon ID\n" + "\n".join(negatives) + "\n")
    v = import_path(workspace, store, folder, id_col="Anon ID").version
    assert v.classes == {"1": 3, "0": 3}
    x, y, ids, names = datasets.load_arrays(workspace, v)
    by_id = dict(zip(ids.tolist(), (names[k] for k in y), strict=True))
    assert by_id == dict(zip(IDS, OCCLUSION, strict=True))
    assert {i: arrays[i].shape for i in ids} == {i: (4, 6, 6) for i in IDS}
    # the same pair named with --labels (the folder) from outside gives the same version
    moved = tmp_path / "labels-elsewhere"
    (folder / "labels").rename(moved)
    again = import_path(workspace, store, folder, labels=moved, id_col="Anon ID")
    assert again.existed and again.version.version == v.version


@pytest.fixture
def unchanged(workspace, store):
    before = snapshot(workspace, store)
    yield
    assert snapshot(workspace, store) == before


def problems_of(excinfo) -> dict[str, str]:
    return dict(excinfo.value.problems)


def test_that_an_id_without_an_array_is_refused_naming_the_labels_file(workspace, store, tmp_path, unchanged):
    folder, _ = processed_lower(tmp_path)
    (folder / "arrays" / "P003.npy").unlink()
    with pytest.raises(InvalidDataset) as excinfo:
        import_path(workspace, store, folder, id_col="Anon ID", label_col="occlusion_exists")
    assert "id 'P003' has no array arrays/P003.npy" in problems_of(excinfo)["labels.csv"]


def test_that_a_corrupt_npz_array_is_refused_naming_it(workspace, store, tmp_path, unchanged):
    folder, _ = processed_lower(tmp_path, ".npz")
    (folder / "arrays" / "P002.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(InvalidDataset) as excinfo:
        import_path(workspace, store, folder, id_col="Anon ID", label_col="occlusion_exists")
    assert "is not a readable .npz array" in problems_of(excinfo)["arrays/P002.npz"]


def test_that_an_npz_holding_two_arrays_is_refused_with_the_fix(workspace, store, tmp_path, unchanged):
    folder, _ = processed_lower(tmp_path, ".npz")
    np.savez(folder / "arrays" / "P004.npz", a=np.zeros((4, 6, 6)), b=np.zeros(2))
    with pytest.raises(InvalidDataset) as excinfo:
        import_path(workspace, store, folder, id_col="Anon ID", label_col="occlusion_exists")
    assert "holds exactly one" in problems_of(excinfo)["arrays/P004.npz"]


def test_that_half_a_pair_is_refused_naming_the_missing_file(workspace, store, tmp_path, unchanged):
    folder = tmp_path / "older-set"
    write_arrays(folder / "arrays")
    (folder / "positives.csv").write_text("id\nP001\n")
    with pytest.raises(InvalidDataset) as excinfo:
        import_path(workspace, store, folder)
    assert "has no negatives.csv beside it" in problems_of(excinfo)["positives.csv"]


def test_that_an_id_in_both_files_of_the_pair_is_refused(workspace, store, tmp_path, unchanged):
    folder = tmp_path / "older-set"
    write_arrays(folder / "arrays", ids=IDS[:2])
    (folder / "positives.csv").write_text("id\nP001\nP002\n")
    (folder / "negatives.csv").write_text("id\nP002\n")
    with pytest.raises(InvalidDataset) as excinfo:
        import_path(workspace, store, folder)
    assert "id 'P002' is in both files" in problems_of(excinfo)["positives.csv, negatives.csv"]


def test_that_two_folders_of_arrays_are_refused_as_ambiguous(workspace, store, tmp_path, unchanged):
    folder, _ = processed_lower(tmp_path)
    write_arrays(folder / "arrays-upper")
    with pytest.raises(InvalidDataset, match="several folders hold arrays"):
        import_path(workspace, store, folder, id_col="Anon ID", label_col="occlusion_exists")


def test_that_a_labels_file_that_does_not_exist_is_named(workspace, store, tmp_path, unchanged):
    folder, _ = processed_lower(tmp_path)
    with pytest.raises(InvalidDataset) as excinfo:
        import_path(workspace, store, folder, labels=tmp_path / "nope.csv")
    assert "does not exist" in problems_of(excinfo)["nope.csv"]


def test_that_a_wrong_label_column_names_the_labels_file_and_the_flag(workspace, store, tmp_path, unchanged):
    folder, _ = processed_lower(tmp_path)
    with pytest.raises(InvalidDataset) as excinfo:
        import_path(workspace, store, folder, id_col="Anon ID", label_col="occlusion")
    assert "--label-col" in problems_of(excinfo)["labels.csv"]


def test_that_the_labs_import_command_works_as_written(workspace, store, tmp_path, capsys):
    from blueno.cli import main as cli_main

    folder, _ = processed_lower(tmp_path)
    home = ["--home", str(workspace.root)]
    assert cli_main([*home, "data", "import", str(folder), "--id-col", "Anon ID",
                     "--label-col", "occlusion_exists"]) == 0
    assert "imported as processed-lower@" in capsys.readouterr().out
    labels = write_labels(tmp_path / "labels-2.csv", labels=["0", "0", "1", "1", "1", "1"])
    assert cli_main([*home, "data", "import", str(folder), "--name", "relabelled", "--labels", str(labels),
                     "--id-col", "Anon ID", "--label-col", "occlusion_exists"]) == 0
    assert datasets.resolve(store, workspace, "relabelled").classes == {"0": 2, "1": 4}


# -- from a bucket: data that is not a Blueno dataset yet ------------------------------------------


def upload_folder(bucket_url: str, folder: Path) -> str:
    from google.cloud import storage

    from blueno.datasets import remote as gcs

    location = gcs.parse_url(bucket_url)
    bucket = storage.Client(project="blueno-emulator").bucket(location.bucket)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        bucket.blob(location.key("processed", folder.name, path.relative_to(folder).as_posix())) \
            .upload_from_filename(str(path))
    return f"{bucket_url}/processed/{folder.name}"


def test_that_a_bucket_prefix_imports_with_checksums_verified(workspace, store, tmp_path, gcs_bucket, capsys):
    from blueno.cli import main as cli_main

    folder, arrays = processed_lower(tmp_path)
    url = upload_folder(gcs_bucket, folder)
    assert cli_main(["--home", str(workspace.root), "data", "import", url, "--id-col", "Anon ID",
                     "--label-col", "occlusion_exists"]) == 0
    assert "imported as processed-lower@" in capsys.readouterr().out
    v = datasets.resolve(store, workspace, "processed-lower")
    assert v.source == url
    check_loaded(workspace, v, arrays)
    local = import_path(workspace, store, folder, id_col="Anon ID", label_col="occlusion_exists")
    assert local.existed and local.version.version == v.version  # byte for byte what is in the bucket
    assert not [p for p in workspace.data_dir.iterdir() if p.name.startswith(".tmp-")]


def test_that_a_broken_bucket_source_is_refused_naming_the_object(workspace, store, tmp_path, gcs_bucket):
    folder, _ = processed_lower(tmp_path)
    (folder / "arrays" / "P005.npy").unlink()
    url = upload_folder(gcs_bucket, folder)
    before = snapshot(workspace, store)
    with pytest.raises(InvalidDataset) as excinfo:
        datasets.import_source(workspace, store, url, id_col="Anon ID", label_col="occlusion_exists")
    assert excinfo.value.source == url and "P005" in problems_of(excinfo)["labels.csv"]
    assert snapshot(workspace, store) == before
    with pytest.raises(BluenoError, match="holds no objects"):
        datasets.import_source(workspace, store, f"{gcs_bucket}/nothing-here")


def test_that_a_corrupt_object_is_caught_as_it_lands(workspace, store, tmp_path, gcs_bucket, monkeypatch):
    from blueno.datasets import remote as gcs

    folder, _ = processed_lower(tmp_path)
    url = upload_folder(gcs_bucket, folder)
    real = gcs._HashingWriter.write

    def flip_a_byte(self, data: bytes) -> int:  # the network corrupts one object on its way down
        return real(self, data[:-1] + bytes([data[-1] ^ 1]) if data.startswith(b"\x93NUMPY") else data)

    monkeypatch.setattr(gcs._HashingWriter, "write", flip_a_byte)
    with pytest.raises(BluenoError, match="is corrupt"):
        datasets.import_source(workspace, store, url, id_col="Anon ID", label_col="occlusion_exists")
    assert not [p for p in workspace.data_dir.iterdir() if p.name.startswith(".tmp-")]
