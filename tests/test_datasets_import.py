"""Every kind a researcher drops, and every bad input: a clear message, and the workspace as it was."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from test_datasets import snapshot, write_npy_folder

from blueno import BluenoError, datasets
from blueno.datasets.importing import import_path, safe_member_path
from blueno.datasets.task import Cancelled, Task


def write_image_folder(folder: Path, per_class: int = 3, size: tuple[int, int] = (6, 5)) -> Path:
    rng = np.random.default_rng(1)
    for label, suffix in (("benign", ".png"), ("malignant", ".jpg")):
        (folder / label).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / label / f"img{i}{suffix}")
    return folder


def write_table(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture
def unchanged(workspace, store):
    """Asserts, after the test body, that data/ and the datasets table are exactly as before."""
    before = snapshot(workspace, store)
    yield
    assert snapshot(workspace, store) == before


# -- the kinds -------------------------------------------------------------------------------


def test_that_an_image_folder_with_a_subfolder_per_class_imports(workspace, store, tmp_path):
    v = import_path(workspace, store, write_image_folder(tmp_path / "scans")).version
    assert v.name == "scans" and v.kind == "image_folder"
    assert v.classes == {"benign": 3, "malignant": 3} and v.sample_shape == (5, 6, 3)
    x, y, ids, names = datasets.load_arrays(workspace, v)
    assert x.shape == (6, 5, 6, 3) and x.dtype == np.uint8
    assert names == ["benign", "malignant"] and y.tolist() == [0, 0, 0, 1, 1, 1]
    assert ids[0] == "benign/img0"
    np.testing.assert_array_equal(x[0], np.asarray(Image.open(tmp_path / "scans/benign/img0.png")))


def test_that_a_csv_table_with_a_label_column_imports(workspace, store, tmp_path):
    table = write_table(tmp_path / "iris.csv", ["sepal,petal,species", "1.5,2,setosa", "3,4.25,virginica",
                                                 "5,6,setosa"])
    v = import_path(workspace, store, table, label_col="species").version
    assert v.kind == "csv" and v.sample_shape == (2,) and v.classes == {"setosa": 2, "virginica": 1}
    x, y, ids, names = datasets.load_arrays(workspace, v)
    assert x.tolist() == [[1.5, 2.0], [3.0, 4.25], [5.0, 6.0]] and y.tolist() == [0, 1, 0]
    assert ids.tolist() == ["1", "2", "3"]


@pytest.mark.parametrize("suffix", [".zip", ".tar.gz"])
def test_that_archives_of_a_dataset_import_like_the_folder_inside(workspace, store, tmp_path, suffix):
    folder = write_npy_folder(tmp_path / "pets")
    plain = import_path(workspace, store, folder, name="plain").version
    archive = tmp_path / f"pets{suffix}"
    if suffix == ".zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for f in sorted(folder.iterdir()):
                zf.write(f, f"pets/{f.name}")
    else:
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(folder, "pets")
    v = import_path(workspace, store, archive).version
    assert v.name == "pets" and v.kind == "npy_folder" and v.version == plain.version
    assert not [p for p in workspace.data_dir.iterdir() if p.name.startswith(".tmp-")]


def test_that_import_reports_progress_and_a_cancel_leaves_nothing(workspace, store, tmp_path, unchanged):
    source = write_npy_folder(tmp_path / "src", n=40)
    seen = []

    def on_progress(p):
        seen.append(p)
        if p.files_done == 20:
            task.cancel()

    task = Task(on_progress)
    with pytest.raises(Cancelled, match="cancelled; nothing was changed"):
        import_path(workspace, store, source, name="pets", task=task)
    copying = [p for p in seen if p.stage == "copying"]
    assert copying[0].files_total == 41 and copying[0].bytes_total > 0
    assert any(p.current.endswith(".npy") for p in copying) and copying[-1].files_done == 20
    assert 0 < copying[-1].fraction < 1


# -- bad inputs ----------------------------------------------------------------------------------


def test_that_a_path_that_does_not_exist_is_named(workspace, store, tmp_path, unchanged):
    with pytest.raises(BluenoError, match=r"nowhere does not exist"):
        import_path(workspace, store, tmp_path / "nowhere")


def test_that_an_empty_folder_is_refused(workspace, store, tmp_path, unchanged):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BluenoError, match="is an empty folder: there is nothing to import"):
        import_path(workspace, store, tmp_path / "empty")


def test_that_a_folder_without_a_dataset_says_what_it_found(workspace, store, tmp_path, unchanged):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("hello")
    with pytest.raises(BluenoError, match=r"holds no dataset Blueno recognises \(found 1 \.txt\)"):
        import_path(workspace, store, tmp_path / "notes")
    np.save(tmp_path / "lonely.npy", np.zeros(3))
    with pytest.raises(BluenoError, match="single array without labels"):
        import_path(workspace, store, tmp_path / "lonely.npy")


def test_that_corrupt_arrays_and_mismatched_shapes_are_each_named(workspace, store, tmp_path, unchanged):
    source = write_npy_folder(tmp_path / "src")
    (source / "s001.npy").write_bytes(b"garbage, not an array")
    data = (source / "s002.npy").read_bytes()
    (source / "s002.npy").write_bytes(data[:-7])
    np.save(source / "s003.npy", np.zeros((5, 4), np.float32))
    with pytest.raises(BluenoError) as caught:
        import_path(workspace, store, source, name="pets")
    message = str(caught.value)
    assert "was not imported: 3 problems" in message
    assert "s001.npy: is not a readable .npy array" in message
    assert "s002.npy: is not a readable .npy array: truncated or corrupt" in message
    assert "s003.npy: array shape (5, 4) differs from (4, 4), the shape of 9 others" in message


def test_that_labels_without_arrays_and_arrays_without_labels_are_each_named(workspace, store, tmp_path,
                                                                               unchanged):
    source = write_npy_folder(tmp_path / "src")
    (source / "s004.npy").unlink()
    np.save(source / "stray.npy", np.zeros((4, 4), np.float32))
    with pytest.raises(BluenoError) as caught:
        import_path(workspace, store, source, name="pets")
    assert "labels.csv: id 's004' has no array s004.npy" in str(caught.value)
    assert "stray.npy: has no label in labels.csv" in str(caught.value)


def test_that_a_missing_label_column_or_labels_file_is_explained(workspace, store, tmp_path, unchanged):
    source = write_npy_folder(tmp_path / "src")
    with pytest.raises(BluenoError, match=r"labels.csv: has no column 'grade' \(columns: id, label\); "
                                          "choose one with --label-col"):
        import_path(workspace, store, source, label_col="grade")
    (source / "labels.csv").write_text("id,a,b\ns000,1,2\n")
    with pytest.raises(BluenoError, match=r"has no 'label' column \(columns: id, a, b\)"):
        import_path(workspace, store, source)
    (source / "labels.csv").unlink()
    with pytest.raises(BluenoError, match="labels.csv: is missing"):
        import_path(workspace, store, source)


def test_that_bad_csv_tables_name_the_line_and_column(workspace, store, tmp_path, unchanged):
    table = write_table(tmp_path / "t.csv", ["a,b,label", "1,2,x", "3,oops,y", "4,5"])
    with pytest.raises(BluenoError) as caught:
        import_path(workspace, store, table)
    assert "t.csv: line 3, column 'b': 'oops' is not a number" in str(caught.value)
    assert "t.csv: line 4 has 2 cells, the header has 3" in str(caught.value)
    write_table(table, ["a,b,kind", "1,2,x"])
    with pytest.raises(BluenoError, match=r"has no 'label' column \(columns: a, b, kind\)"):
        import_path(workspace, store, table)


def test_that_broken_npz_files_are_refused(workspace, store, tmp_path, unchanged):
    np.savez(tmp_path / "wrong.npz", images=np.zeros((2, 3)), y=np.array([0, 1]))
    with pytest.raises(BluenoError, match=r"needs arrays named x and y \(found: images, y\)"):
        import_path(workspace, store, tmp_path / "wrong.npz")
    np.savez(tmp_path / "short.npz", x=np.zeros((3, 2)), y=np.array([0, 1]))
    with pytest.raises(BluenoError, match="short.npz:y: has 2 labels but there are 3 samples"):
        import_path(workspace, store, tmp_path / "short.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK not really")
    with pytest.raises(BluenoError, match="junk.npz: is not a readable .npz file"):
        import_path(workspace, store, tmp_path / "junk.npz")


def test_that_unreadable_and_odd_sized_images_are_each_named(workspace, store, tmp_path, unchanged):
    folder = write_image_folder(tmp_path / "scans")
    (folder / "benign" / "img1.png").write_bytes(b"\x89PNG broken")
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(folder / "malignant" / "big.png")
    (folder / "benign" / "notes.txt").write_text("x")
    with pytest.raises(BluenoError) as caught:
        import_path(workspace, store, folder)
    message = str(caught.value)
    assert "benign/img1.png: is not a readable image" in message
    assert "malignant/big.png: image shape (9, 9, 3) differs from (5, 6, 3)" in message
    assert "benign/notes.txt: is not a PNG or JPEG image" in message


@pytest.mark.parametrize("suffix", [".zip", ".tar.gz"])
def test_that_an_archive_escaping_its_folder_is_refused_before_extracting(workspace, store, tmp_path, suffix,
                                                                           unchanged):
    archive = tmp_path / f"evil{suffix}"
    payload = b"owned"
    if suffix == ".zip":
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("data/labels.csv", "id,label\n")
            zf.writestr("../../escaped.txt", payload)
    else:
        with tarfile.open(archive, "w:gz") as tf:
            info = tarfile.TarInfo("../../escaped.txt")
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    with pytest.raises(BluenoError, match=r"member '../../escaped.txt' points outside the archive's folder"):
        import_path(workspace, store, archive)
    assert not list(tmp_path.rglob("escaped.txt")) and not list(workspace.root.parent.rglob("escaped.txt"))


def test_that_a_corrupt_archive_or_bad_content_inside_one_names_the_archive(workspace, store, tmp_path,
                                                                             unchanged):
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(BluenoError, match="broken.zip is not a readable archive"):
        import_path(workspace, store, tmp_path / "broken.zip")
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as zf:
        zf.writestr("pets/labels.csv", "id,label\na,cat\n")
        zf.writestr("pets/a.npy", b"not an array")
    expected = r"bad\.zip was not imported: 1 problem\n  a\.npy: is not a readable \.npy array"
    with pytest.raises(BluenoError, match=expected):
        import_path(workspace, store, tmp_path / "bad.zip")
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as zf:
        zf.writestr("notes/readme.txt", "hi")
    with pytest.raises(BluenoError, match=r"empty\.zip holds no dataset Blueno recognises"):
        import_path(workspace, store, tmp_path / "empty.zip")


# -- verify ----------------------------------------------------------------------------------------


def test_that_verify_names_a_flipped_byte_a_missing_file_and_an_extra_one(workspace, store, tmp_path):
    v = import_path(workspace, store, write_npy_folder(tmp_path / "src"), name="pets").version
    assert datasets.verify(workspace, v).ok
    target = v.path / "s005.npy"
    data = bytearray(target.read_bytes())
    data[100] ^= 0x01
    target.write_bytes(bytes(data))
    (v.path / "s006.npy").unlink()
    (v.path / "added.npy").write_bytes(b"")
    report = datasets.verify(workspace, v)
    assert (report.changed, report.missing, report.extra) == (["s005.npy"], ["s006.npy"], ["added.npy"])
    assert "changed: s005.npy" in report.describe() and not report.ok


@given(st.lists(st.sampled_from(["..", ".", "a", "b", "", "/", "\\", "C:", "..\\x"]), min_size=1, max_size=6))
def test_that_no_archive_member_name_can_land_outside_the_extraction_folder(parts):
    name = "/".join(parts)
    try:
        member = safe_member_path(Path("x.zip"), name)
    except BluenoError:
        return
    into = "/extract/here"
    assert os.path.normpath(os.path.join(into, str(member))).startswith(into)
