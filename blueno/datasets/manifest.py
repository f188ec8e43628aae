"""Manifests: every file of a dataset version with its size and crc32c.

crc32c is the checksum Google Cloud Storage keeps for every object, so the
same value checks an import, a local verify, an upload and a download.  It is
stored base64-encoded (big-endian), exactly as GCS reports ``crc32c``.  Files
are always read in chunks: a dataset never has to fit in memory to be hashed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import google_crc32c

from blueno.datasets.task import Task

CHUNK = 1 << 20
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
VERSION_LENGTH = 12


def crc32c_b64(value: int) -> str:
    return base64.b64encode(value.to_bytes(4, "big")).decode("ascii")


def file_crc32c(path: Path, task: Task | None = None) -> str:
    """The crc32c of a file, streamed; ``task`` gets the bytes as they are read."""
    checksum = google_crc32c.Checksum()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            checksum.update(chunk)
            if task is not None:
                task.advance(nbytes=len(chunk))
    return base64.b64encode(checksum.digest()).decode("ascii")


def copy_with_crc32c(src: Path, dst: Path, task: Task | None = None) -> str:
    """Copy ``src`` to ``dst`` and hash it in the same pass (one read of the source)."""
    checksum = google_crc32c.Checksum()
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(CHUNK):
            checksum.update(chunk)
            fout.write(chunk)
            if task is not None:
                task.advance(nbytes=len(chunk))
    shutil.copystat(src, dst)
    return base64.b64encode(checksum.digest()).decode("ascii")


def file_entry(relpath: str, size: int, crc32c: str) -> dict[str, Any]:
    return {"path": relpath, "size": size, "crc32c": crc32c}


def manifest_hash(manifest: dict[str, Any]) -> str:
    """sha256 of the canonical JSON: the identity of a dataset version."""
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def short_version(full_hash: str) -> str:
    return full_hash[:VERSION_LENGTH]


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def is_hidden(relpath: str) -> bool:
    return any(part.startswith(".") for part in Path(relpath).parts)


def walk_files(root: Path) -> list[str]:
    """Every regular, non-hidden file under ``root``, as sorted POSIX paths relative to it."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            found.append(Path(dirpath, name).relative_to(root).as_posix())
    return sorted(found)


def any_file(relpath: str) -> bool:
    """In a folder Blueno owns, every file not in the manifest is extra."""
    return True


@dataclass
class VerifyReport:
    """What ``verify`` found: files whose content changed, that are missing, or that are extra."""

    ref: str
    checked: int = 0
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.changed or self.missing or self.extra)

    def describe(self) -> str:
        if self.ok:
            return f"{self.ref}: all {self.checked} files match the manifest"
        lines = [f"{self.ref}: does not match its manifest"]
        for label, names in (("changed", self.changed), ("missing", self.missing), ("extra", self.extra)):
            lines += [f"  {label}: {name}" for name in names]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "ok": self.ok, "checked": self.checked, "changed": self.changed,
                "missing": self.missing, "extra": self.extra}


def verify_files(
    root: Path,
    files: Iterable[dict[str, Any]],
    ref: str,
    *,
    extra: Callable[[str], bool] | None,
    task: Task | None = None,
    quick: bool = False,
) -> VerifyReport:
    """Compare the files under ``root`` with manifest entries.

    ``quick`` compares sizes only (presence check before a job); otherwise every
    file is re-hashed.  Files the manifest does not list are reported as extra
    when ``extra(path)`` says they would belong to the dataset (None: never).
    """
    files = list(files)
    report = VerifyReport(ref)
    if task is not None:
        task.start("verifying", len(files), 0 if quick else sum(f["size"] for f in files))
    for entry in files:
        path = root / entry["path"]
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            report.missing.append(entry["path"])
            continue
        if size != entry["size"] or (not quick and file_crc32c(path, task) != entry["crc32c"]):
            report.changed.append(entry["path"])
        report.checked += 1
        if task is not None:
            task.advance(files=1, current=entry["path"])
    if extra is not None and root.is_dir():
        known = {f["path"] for f in files} | {MANIFEST_NAME}
        report.extra = [p for p in walk_files(root) if p not in known and extra(p)]
    return report
