"""Files between the head and a node: crc32c at both ends, nothing outside the folder, only what changed."""

from __future__ import annotations

import os

import pytest

from blueno.cluster.transfer import Blob, FolderMirror, TransferError, crc32c, remove_inside, write_verified


def test_that_a_blob_is_written_only_when_its_checksum_matches(tmp_path) -> None:
    data = b"weights" * 100
    write_verified(tmp_path, Blob("ckpt/epoch-1.keras", data, crc32c(data)))
    assert (tmp_path / "ckpt" / "epoch-1.keras").read_bytes() == data
    with pytest.raises(TransferError, match="arrived corrupt"):
        write_verified(tmp_path, Blob("ckpt/epoch-1.keras", data[:-1] + b"X", crc32c(data)))
    assert (tmp_path / "ckpt" / "epoch-1.keras").read_bytes() == data  # the good copy stays
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["epoch-1.keras"]  # no temporary left


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside", "a/../../b", "a\\b", ""])
def test_that_a_path_leaving_its_folder_is_refused(tmp_path, path) -> None:
    with pytest.raises(TransferError, match="must stay inside its folder"):
        write_verified(tmp_path / "run", Blob(path, b"x", crc32c(b"x")))
    assert not (tmp_path / "outside").exists()


def test_that_a_mirror_sends_only_changed_files_and_names_removed_ones(tmp_path) -> None:
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "state.json").write_text("1")
    mirror = FolderMirror(tmp_path)
    assert mirror.changes() == ([], [])
    (tmp_path / "ckpt" / "epoch-2.keras").write_bytes(b"two")
    (tmp_path / "ckpt" / "state.json.tmp").write_text("being written")  # not finished: not sent
    (tmp_path / "ckpt" / "state.json").write_text("22")
    files, removed = mirror.changes()
    assert sorted(b.path for b in files) == ["ckpt/epoch-2.keras", "ckpt/state.json"] and removed == []
    assert all(b.crc32c == crc32c(b.data) for b in files)
    os.remove(tmp_path / "ckpt" / "epoch-2.keras")
    assert mirror.changes() == ([], ["ckpt/epoch-2.keras"])
    target = tmp_path / "head"
    write_verified(target, files[0])
    remove_inside(target, "ckpt/epoch-2.keras")
    assert not (target / "ckpt").exists()  # an emptied folder goes too
