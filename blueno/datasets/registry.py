"""The dataset registry: versions, lookup, loading, verification and removal.

A dataset version is a set of files described by a manifest (every file's size
and crc32c, sample count, shapes, classes, lineage) and named by a hash of
that manifest, so the same content always gets the same ``name@version``.
Copied versions live in ``data/<name>/<version>/`` next to their
``manifest.json``; linked ones stay where they were and only the database
knows their manifest.  Importing is in :mod:`blueno.datasets.importing`, deriving
in :mod:`blueno.datasets.derive`; this module is what the rest of Blueno calls.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from blueno import BluenoError
from blueno.datasets.kinds import LOADERS, belongs
from blueno.datasets.manifest import VerifyReport, any_file, verify_files
from blueno.datasets.task import Task
from blueno.store import Store, dumps, now
from blueno.workspace import Workspace

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
ACTIVE_JOB_STATES = ("queued", "held", "running")
DEMO_NAME = "digits"
DEMO_SOURCE = "sklearn.datasets.load_digits"


@dataclass(frozen=True)
class DatasetVersion:
    """One row of ``datasets``: a version of a named dataset and where its files are."""

    id: int
    name: str
    version: str
    manifest_hash: str
    kind: str
    path: Path  # absolute folder the manifest's file paths are relative to
    linked: bool
    manifest: dict[str, Any]
    n_samples: int
    n_classes: int | None
    n_files: int
    size_bytes: int
    sample_shape: tuple[int, ...]
    classes: dict[str, int]
    parent_id: int | None
    transform: dict[str, Any] | None
    remote_url: str | None
    source: str | None
    created: float

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest["class_names"])

    @property
    def files(self) -> list[dict[str, Any]]:
        return self.manifest["files"]

    @classmethod
    def from_row(cls, workspace: Workspace, row: sqlite3.Row) -> DatasetVersion:
        path = Path(row["path"])
        return cls(
            id=row["id"], name=row["name"], version=row["version"], manifest_hash=row["manifest_hash"],
            kind=row["kind"], path=path if path.is_absolute() else workspace.root / path,
            linked=bool(row["linked"]), manifest=json.loads(row["manifest"]), n_samples=row["n_samples"],
            n_classes=row["n_classes"], n_files=row["n_files"], size_bytes=row["size_bytes"],
            sample_shape=tuple(json.loads(row["sample_shape"] or "[]")),
            classes=json.loads(row["classes"] or "{}"), parent_id=row["parent_id"],
            transform=json.loads(row["transform"]) if row["transform"] else None,
            remote_url=row["remote_url"], source=row["source"], created=row["created"],
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (``data show --json``, the GUI's details pane)."""
        return {
            "ref": self.ref, "name": self.name, "version": self.version, "kind": self.kind,
            "path": str(self.path), "linked": self.linked, "n_samples": self.n_samples,
            "n_classes": self.n_classes, "n_files": self.n_files, "size_bytes": self.size_bytes,
            "sample_shape": list(self.sample_shape), "dtype": self.manifest.get("dtype"),
            "classes": self.classes, "class_names": self.class_names, "parent": self.manifest.get("parent"),
            "transform": self.transform, "remote_url": self.remote_url, "source": self.source,
            "created": self.created, "manifest_hash": self.manifest_hash,
        }


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise BluenoError(
            f"{name!r} is not a valid dataset name: use letters, digits, '.', '_' and '-' "
            "(up to 100, starting with a letter or digit)."
        )
    return name


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``"name"`` → (name, None); ``"name@version"`` → (name, version)."""
    name, _, version = ref.partition("@")
    return check_name(name.strip()), (version.strip() or None)


def version_folder(workspace: Workspace, name: str, version: str) -> Path:
    return workspace.data_dir / name / version


def versions(store: Store, workspace: Workspace, name: str | None = None) -> list[DatasetVersion]:
    """Every version (of ``name`` when given), newest first."""
    where, params = ("WHERE name = ?", (name,)) if name else ("", ())
    rows = store.query(f"SELECT * FROM datasets {where} ORDER BY created DESC, id DESC", params)
    return [DatasetVersion.from_row(workspace, row) for row in rows]


def get(store: Store, workspace: Workspace, dataset_id: int) -> DatasetVersion:
    row = store.query_one("SELECT * FROM datasets WHERE id = ?", (dataset_id,))
    if row is None:
        raise BluenoError(f"no dataset with id {dataset_id}")
    return DatasetVersion.from_row(workspace, row)


def find(store: Store, workspace: Workspace, name: str, version: str) -> DatasetVersion | None:
    row = store.query_one("SELECT * FROM datasets WHERE name = ? AND version = ?", (name, version))
    return DatasetVersion.from_row(workspace, row) if row else None


def resolve(store: Store, workspace: Workspace, ref: str) -> DatasetVersion:
    """``"name"`` is the newest version, ``"name@version"`` that exact version (or a unique prefix)."""
    name, version = parse_ref(ref)
    candidates = versions(store, workspace, name)
    if not candidates:
        known = sorted({v.name for v in versions(store, workspace)})
        listing = ", ".join(known) if known else "none yet (blueno data import PATH --name NAME)"
        raise BluenoError(f"no dataset named {name!r}. Datasets in this workspace: {listing}")
    if version is None:
        return candidates[0]
    matches = [v for v in candidates if v.version == version] or [
        v for v in candidates if v.version.startswith(version)
    ]
    if len(matches) == 1:
        return matches[0]
    listing = ", ".join(v.ref for v in candidates)
    problem = "is ambiguous" if matches else "does not exist"
    raise BluenoError(f"dataset version {name}@{version} {problem}. Versions of {name}: {listing}")


def insert_version(
    store: Store,
    workspace: Workspace,
    *,
    name: str,
    version: str,
    full_hash: str,
    manifest: dict[str, Any],
    path: Path,
    linked: bool,
    source: str | None,
    parent_id: int | None = None,
    remote_url: str | None = None,
) -> DatasetVersion:
    """Record a version whose files are already in place; returns the existing row on a race."""
    try:
        stored_path = str(path.relative_to(workspace.root)) if not linked else str(path)
    except ValueError:
        stored_path = str(path)
    with store.write() as conn:
        conn.execute(
            """INSERT INTO datasets (name, version, manifest_hash, kind, path, linked, manifest, n_samples,
                   n_classes, n_files, size_bytes, sample_shape, classes, parent_id, transform, remote_url,
                   source, created)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (name, version) DO NOTHING""",
            (
                name, version, full_hash, manifest["kind"], stored_path, int(linked), dumps(manifest),
                manifest["n_samples"], len(manifest["class_names"]), len(manifest["files"]),
                sum(f["size"] for f in manifest["files"]), dumps(manifest["sample_shape"]),
                dumps(manifest["classes"]), parent_id,
                dumps(manifest["transform"]) if manifest.get("transform") else None,
                remote_url, source, now(),
            ),
        )
    found = find(store, workspace, name, version)
    assert found is not None
    return found


def extra_files(version: DatasetVersion) -> Callable[[str], bool]:
    """Which unlisted files verify reports: all in a folder Blueno owns; in a linked folder, only
    those that would be part of the dataset (a new array, a new image), not a README beside it."""
    return partial(belongs, version.kind) if version.linked else any_file


def verify(workspace: Workspace, version: DatasetVersion, task: Task | None = None) -> VerifyReport:
    """Re-hash every file and name each changed, missing or extra one."""
    report = verify_files(
        version.path, version.files, version.ref, extra=extra_files(version), task=task
    )
    if report.ok:
        write_stamp(workspace, version)
    return report


# A stamp records each file's size and mtime when it last verified, so a job
# start re-hashes only when something on disk changed since (git's index idea).


def _stamp_path(workspace: Workspace, version: DatasetVersion) -> Path:
    return workspace.data_dir / ".verified" / f"{version.name}@{version.version}.json"


def cache_dir(workspace: Workspace, version: DatasetVersion) -> Path:
    """Where a version's one-time ``.npy`` conversions live (CSV, compressed ``.npz``): keyed by content."""
    return workspace.data_dir / ".cache" / f"{version.name}@{version.version}-{version.manifest_hash[:16]}"


def _stats(version: DatasetVersion) -> dict[str, list[int]] | None:
    stats = {}
    for entry in version.files:
        try:
            st = (version.path / entry["path"]).stat()
        except FileNotFoundError:
            return None
        stats[entry["path"]] = [st.st_size, st.st_mtime_ns]
    return stats


def write_stamp(workspace: Workspace, version: DatasetVersion) -> None:
    stats = _stats(version)
    if stats is not None:
        path = _stamp_path(workspace, version)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        partial.write_text(json.dumps(stats))
        partial.replace(path)  # atomic: jobs starting at once never read half a stamp


def is_verified(workspace: Workspace, version: DatasetVersion) -> bool:
    """True when every file is unchanged (size and mtime) since the last full verify."""
    try:
        stamp = json.loads(_stamp_path(workspace, version).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return stamp == _stats(version)


def load_arrays(
    workspace: Workspace, version: DatasetVersion
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(x, y, ids, class_names): y as int64 indices into class_names; x read from disk by batch.

    ``x`` is array-like (:mod:`blueno.datasets.stream`): indexing it reads
    those samples only, so a dataset larger than memory trains.
    """
    try:
        x, ids, y = LOADERS[version.kind](version.path, version.manifest, cache=cache_dir(workspace, version))
    except (OSError, ValueError, KeyError) as exc:
        raise BluenoError(
            f"cannot load {version.ref} from {version.path}: {exc}. Run `blueno data verify {version.ref}`."
        ) from None
    return x, y, np.asarray(ids, dtype=str), version.class_names


def dependents(store: Store, version: DatasetVersion) -> list[int]:
    """Ids of queued, held or running jobs that train on this version (directly or via its runs)."""
    marks = ",".join("?" * len(ACTIVE_JOB_STATES))
    rows = store.query(
        f"""SELECT DISTINCT jobs.id FROM jobs LEFT JOIN runs ON runs.job_id = jobs.id
            WHERE jobs.state IN ({marks}) AND (jobs.dataset = ? OR runs.dataset = ?) ORDER BY jobs.id""",
        (*ACTIVE_JOB_STATES, version.ref, version.ref),
    )
    return [row["id"] for row in rows]


def _with_descendants(
    store: Store, workspace: Workspace, roots: list[DatasetVersion]
) -> list[DatasetVersion]:
    """``roots`` and every version derived from them, each child before its parent."""
    ordered: list[DatasetVersion] = []
    seen: set[int] = set()
    pending = list(roots)
    while pending:
        current = pending.pop()
        if current.id in seen:
            continue
        seen.add(current.id)
        ordered.append(current)
        rows = store.query("SELECT * FROM datasets WHERE parent_id = ?", (current.id,))
        pending += [DatasetVersion.from_row(workspace, row) for row in rows]
    return ordered[::-1]


def remove(store: Store, workspace: Workspace, ref: str, *, force: bool = False) -> list[DatasetVersion]:
    """Delete a version (or every version of a name) and the versions derived from it.

    Refuses while a queued, held or running job needs one of them, unless
    ``force``.  Linked files are never deleted, only forgotten; remote copies stay.
    """
    name, version = parse_ref(ref)
    targets = [resolve(store, workspace, ref)] if version else versions(store, workspace, name)
    if not targets:
        resolve(store, workspace, ref)  # raises with the list of what exists
    doomed = _with_descendants(store, workspace, targets)
    if not force:
        busy = {v.ref: dependents(store, v) for v in doomed}
        busy = {r: jobs for r, jobs in busy.items() if jobs}
        if busy:
            detail = "; ".join(f"{r} by job{'s' if len(j) > 1 else ''} {', '.join(map(str, j))}"
                               for r, j in busy.items())
            raise BluenoError(
                f"not removed: still needed ({detail}). Cancel those jobs first, or use --force."
            )
    with store.write() as conn:
        for v in doomed:
            conn.execute("DELETE FROM datasets WHERE id = ?", (v.id,))
    for v in doomed:
        _stamp_path(workspace, v).unlink(missing_ok=True)
        shutil.rmtree(cache_dir(workspace, v), ignore_errors=True)
        if not v.linked:
            shutil.rmtree(v.path, ignore_errors=True)
            try:
                v.path.parent.rmdir()  # the name's folder, once its last version is gone
            except OSError:
                pass
    return doomed
