"""Derived versions: a parent version run through an ``etl`` transform, with lineage and a cache.

The derived manifest names its parent (``name@version``), the transform, its
parameters (defaults filled in) and anything the transform fitted on the data
(normalize's mean and std), so a derived version says exactly how it was made.
The same parent + transform + parameters finds the cached result instead of
recomputing.  Samples stream through in batches into a memory-mapped
``x.npy``; the parent is never loaded whole unless its format requires it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

import etl
from blueno import BluenoError
from blueno.datasets.importing import publish, scratch_folder
from blueno.datasets.kinds import Samples, iter_batches
from blueno.datasets.manifest import (
    MANIFEST_FORMAT,
    file_crc32c,
    file_entry,
    manifest_hash,
    short_version,
)
from blueno.datasets.registry import (
    DatasetVersion,
    check_name,
    find,
    insert_version,
    is_verified,
    verify,
    version_folder,
    write_stamp,
)
from blueno.datasets.task import Task, ensure_task
from blueno.store import Store, dumps
from blueno.workspace import Workspace

BATCH = 256


def load_transform(workspace: Workspace, name: str) -> etl.Transform:
    try:
        return etl.registry(workspace.transforms_dir).get(name)
    except etl.TransformError as exc:
        raise BluenoError(str(exc)) from None


def derive_chain(
    workspace: Workspace, store: Store, version: DatasetVersion, chain: list[dict[str, Any]],
    task: Task | None = None,
) -> DatasetVersion:
    """Apply ``[{"transform": name, "params": {...}}, …]`` in order; each step is cached on its own."""
    for step in chain:
        version = derive(workspace, store, version, step["transform"], step.get("params") or {}, task=task)
    return version


def _cached(
    store: Store, workspace: Workspace, parent: DatasetVersion, record: dict[str, Any]
) -> DatasetVersion | None:
    row = store.query_one(
        "SELECT name, version FROM datasets WHERE parent_id = ? AND transform = ? ORDER BY id DESC LIMIT 1",
        (parent.id, dumps(record)),
    )
    if row is None:
        return None
    cached = find(store, workspace, row["name"], row["version"])
    if cached is not None and (is_verified(workspace, cached) or verify(workspace, cached).ok):
        return cached
    return None


def derive(
    workspace: Workspace,
    store: Store,
    parent: DatasetVersion,
    transform: str,
    params: dict[str, Any],
    *,
    name: str | None = None,
    task: Task | None = None,
) -> DatasetVersion:
    """The version made by ``transform(**params)`` from ``parent``: cached, or computed now."""
    task = ensure_task(task)
    spec = load_transform(workspace, transform)
    try:
        checked = spec.check(params)
    except etl.TransformError as exc:
        raise BluenoError(f"cannot derive from {parent.ref}: {exc}") from None
    record: dict[str, Any] = {"name": transform, "params": checked}
    if spec.code:
        record["code"] = spec.code
    cached = _cached(store, workspace, parent, record)
    if cached is not None:
        return cached
    name = check_name(name or f"{parent.name}.{transform}"[:100])

    def batches() -> Iterator[Samples]:
        return iter(iter_batches(parent.kind, parent.path, parent.manifest, BATCH))

    try:
        fitted = spec.fit((x for x, _, _ in batches()), checked) if spec.fit else {}
        with scratch_folder(workspace, "derive") as scratch:
            staged = scratch / "version"
            staged.mkdir()
            sample_shape, dtype = _write_arrays(staged, batches(), parent, spec, {**checked, **fitted}, task)
            entries = [file_entry(f, (staged / f).stat().st_size, file_crc32c(staged / f))
                       for f in ("ids.npy", "x.npy", "y.npy")]
            manifest = {
                "format": MANIFEST_FORMAT, "kind": "arrays", "files": entries, "n_samples": parent.n_samples,
                "sample_shape": list(sample_shape), "dtype": dtype, "classes": parent.classes,
                "class_names": parent.class_names, "options": {}, "parent": parent.ref,
                "transform": record, "fitted": fitted,
            }
            full_hash = manifest_hash(manifest)
            version = short_version(full_hash)
            target = version_folder(workspace, name, version)
            publish(staged, target, manifest)
    except etl.TransformError as exc:
        raise BluenoError(f"cannot derive {transform} from {parent.ref}: {exc}") from None
    derived = insert_version(
        store, workspace, name=name, version=version, full_hash=full_hash, manifest=manifest, path=target,
        linked=False, source=f"derived from {parent.ref}", parent_id=parent.id,
    )
    write_stamp(workspace, derived)
    return derived


def _write_arrays(
    folder: Path, batches: Iterator[Samples], parent: DatasetVersion,
    spec: etl.Transform, params: dict[str, Any], task: Task,
) -> tuple[tuple[int, ...], str]:
    """Stream every batch through the transform into x.npy (memory-mapped), y.npy and ids.npy."""
    n = parent.n_samples
    task.start(f"deriving {spec.name}", n)
    x_out = None
    ids: list[str] = []
    y = np.empty(n, dtype=np.int64)
    done = 0
    for x, batch_ids, batch_y in batches:
        out = np.asarray(spec(x, params))
        if out.shape[0] != len(x):
            raise etl.TransformError(f"{spec.name} returned {out.shape[0]} samples for a batch of {len(x)}")
        if x_out is None:
            x_out = np.lib.format.open_memmap(
                folder / "x.npy", mode="w+", dtype=out.dtype, shape=(n, *out.shape[1:])
            )
        elif out.shape[1:] != x_out.shape[1:]:
            raise etl.TransformError(
                f"{spec.name} returned samples shaped {out.shape[1:]} after {x_out.shape[1:]}"
            )
        x_out[done : done + len(out)] = out
        y[done : done + len(out)] = batch_y
        ids += batch_ids
        done += len(out)
        task.advance(files=len(out))
    if x_out is None:
        raise etl.TransformError(f"{parent.ref} has no samples")
    x_out.flush()
    shape, dtype = tuple(x_out.shape[1:]), str(x_out.dtype)
    del x_out
    np.save(folder / "y.npy", y)
    np.save(folder / "ids.npy", np.asarray(ids, dtype=str))
    return shape, dtype
