"""Preparation: the dataset version a job trains on, and the demo dataset.

The top layer of :mod:`blueno.datasets`: it may use every layer below it
(registry, import, derive, remote); nothing below imports it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from blueno import BluenoError
from blueno.datasets import remote
from blueno.datasets.derive import derive_chain
from blueno.datasets.importing import import_path, scratch_folder
from blueno.datasets.registry import (
    DEMO_NAME,
    DEMO_SOURCE,
    DatasetVersion,
    is_verified,
    parse_ref,
    resolve,
    verify,
    versions,
)
from blueno.datasets.task import Task
from blueno.store import Store
from blueno.workspace import Workspace


def prepare(
    workspace: Workspace,
    store: Store,
    ref: str,
    chain: list[dict[str, Any]] | None = None,
    task: Task | None = None,
) -> DatasetVersion:
    """The version a job trains on: present, verified, pulled if only remote, derived through ``chain``.

    A ``name@version`` this workspace does not know is pulled from the
    configured bucket; files missing or changed are fetched again from the
    version's remote copy.  Re-hashing is skipped when no file changed since
    the last verify; derived versions are cached by (parent, transform, parameters).
    """
    version = _resolve_or_pull(workspace, store, ref, task)
    if not is_verified(workspace, version):
        report = verify(workspace, version, task)
        if not report.ok:
            bucket = version.remote_url or _configured_remote(workspace)
            if version.linked or not bucket:
                raise BluenoError(
                    report.describe() + f"\nRestore the files, re-import the dataset, or push it to a "
                    f"bucket so Blueno can fetch it (blueno data push {version.name})."
                )
            version = remote.pull(workspace, store, remote.version_url(bucket, version), task=task)
    if chain:
        version = derive_chain(workspace, store, version, chain, task=task)
    return version


def _resolve_or_pull(workspace: Workspace, store: Store, ref: str, task: Task | None) -> DatasetVersion:
    """The local version, or the one pulled from the configured bucket when only the bucket has it."""
    try:
        return resolve(store, workspace, ref)
    except BluenoError as missing:
        bucket = _configured_remote(workspace)
        if not bucket or parse_ref(ref)[1] is None:
            raise
        try:
            return remote.pull(workspace, store, f"{bucket.rstrip('/')}/{ref}", task=task)
        except BluenoError as failed:
            raise BluenoError(f"{missing}\nNor could it be pulled from {bucket}: {failed}") from None


def _configured_remote(workspace: Workspace) -> str | None:
    return workspace.settings().get("gcs", {}).get("bucket")


def make_demo(workspace: Workspace, store: Store, task: Task | None = None) -> DatasetVersion:
    """The "digits" demo (sklearn's 8x8 digits scaled to [0, 1]) imported as .npy files + labels.csv.

    Idempotent: when a verified copy exists it is returned unchanged.
    """
    existing = [v for v in versions(store, workspace, DEMO_NAME) if v.source == DEMO_SOURCE]
    if existing and (is_verified(workspace, existing[0]) or verify(workspace, existing[0]).ok):
        return existing[0]
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    with scratch_folder(workspace, "demo") as folder:
        lines = ["id,label"]
        for i, (image, label) in enumerate(zip(images, digits.target, strict=True)):
            np.save(folder / f"{i:04d}.npy", image)
            lines.append(f"{i:04d},{label}")
        (folder / "labels.csv").write_text("\n".join(lines) + "\n")
        return import_path(
            workspace, store, folder, name=DEMO_NAME, task=task, source=DEMO_SOURCE, move=True
        ).version
