"""Files that travel between the head and a node, checked with crc32c at both ends.

A :class:`Blob` is a file's path (relative to a folder), its bytes and the
crc32c the sender computed.  The receiver writes it to a temporary name,
recomputes the checksum, and renames it into place only when both agree, so
a corrupt or half transfer never replaces a good file.  Run folders are
mirrored incrementally: :class:`FolderMirror` remembers what it last sent and
sends only files that changed, plus the names of files that went away.

Standard library and ``google_crc32c`` only: the node imports this before it
starts a trainer, and neither Ray nor TensorFlow belongs here.
"""

from __future__ import annotations

import base64
import os
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import google_crc32c

from blueno import BluenoError

TEMPORARY_SUFFIXES = (".tmp", ".part")  # files being written: sent once they have their final name


class TransferError(BluenoError):
    """Bytes arrived that do not match what the sender said they were."""


def crc32c(data: bytes) -> str:
    """The crc32c of ``data`` as GCS and the dataset manifests write it (base64 of the 4 bytes)."""
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode("ascii")


@dataclass(frozen=True)
class Blob:
    path: str  # relative, with "/" separators
    data: bytes
    crc32c: str


def safe_relative(path: str) -> PurePosixPath:
    """``path`` as a relative path that stays inside its folder; refuse anything else."""
    pure = PurePosixPath(path)
    if pure.is_absolute() or not pure.parts or ".." in pure.parts or "\\" in path:
        raise TransferError(f"refused to write {path!r}: a transferred file must stay inside its folder")
    return pure


def read_blob(folder: Path, rel: str) -> Blob:
    data = (folder / rel).read_bytes()
    return Blob(rel, data, crc32c(data))


def pack(folder: Path, names: list[str] | None = None) -> list[Blob]:
    """Every file under ``folder`` (or the ``names`` given), ready to send."""
    if names is None:
        names = sorted(_walk(folder))
    return [read_blob(folder, rel) for rel in names]


def write_verified(folder: Path, blob: Blob) -> Path:
    """Write ``blob`` under ``folder``: temporary name, crc32c checked, fsynced, renamed."""
    rel = safe_relative(blob.path)
    if crc32c(blob.data) != blob.crc32c:
        raise TransferError(
            f"{rel} arrived corrupt: its crc32c is {crc32c(blob.data)}, the sender's {blob.crc32c}; "
            "nothing was written (the attempt is retried)"
        )
    dest = folder.joinpath(*rel.parts)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".part-{uuid.uuid4().hex[:8]}-{dest.name}")
    try:
        with open(part, "wb") as handle:
            handle.write(blob.data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    return dest


def remove_inside(folder: Path, rel: str) -> None:
    """Delete ``folder/rel`` (a file the other side removed) and folders it leaves empty."""
    path = folder.joinpath(*safe_relative(rel).parts)
    path.unlink(missing_ok=True)
    parent = path.parent
    while parent != folder and parent.is_relative_to(folder):
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent


def _walk(folder: Path) -> dict[str, tuple[int, int]]:
    """rel path → (size, mtime_ns) of every finished file under ``folder``."""
    found: dict[str, tuple[int, int]] = {}
    if not folder.is_dir():
        return found
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if name.endswith(TEMPORARY_SUFFIXES) or name.startswith(".part-"):
                continue
            path = Path(root) / name
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue  # removed while we looked
            found[path.relative_to(folder).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return found


class FolderMirror:
    """What changed in a folder since the last :meth:`changes`: the files to send, the names removed."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.seen = _walk(folder)

    def changes(self) -> tuple[list[Blob], list[str]]:
        now = _walk(self.folder)
        changed, sent = [], {}
        for rel, stamp in sorted(now.items()):
            if self.seen.get(rel) == stamp:
                sent[rel] = stamp
                continue
            try:
                changed.append(read_blob(self.folder, rel))
                sent[rel] = stamp
            except FileNotFoundError:
                continue  # replaced or removed while we read: the next call sees the new state
        removed = sorted(set(self.seen) - set(now))
        self.seen = sent
        return changed, removed
