"""Preparation: the dataset version a job trains on, and the demo dataset.

Also the import of any source (a path, or a gs:// prefix to download first).
The top layer of :mod:`blueno.datasets`: it may use every layer below it
(registry, import, derive, remote); nothing below imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from blueno import BluenoError
from blueno.datasets import remote
from blueno.datasets.derive import derive_chain
from blueno.datasets.importing import ImportResult, default_name, import_path, scratch_folder
from blueno.datasets.kinds import InvalidDataset
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
from blueno.datasets.task import Task, ensure_task
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


def import_source(workspace: Workspace, store: Store, source: str | Path, *, link: bool = False,
                  name: str | None = None, task: Task | None = None, **options: Any) -> ImportResult:
    """Import a local folder, file or archive, or ``gs://bucket/prefix``: what ``blueno data import`` runs.

    A bucket prefix that is not a Blueno dataset yet is downloaded first (each
    object checked against Cloud Storage's crc32c as it lands) and that copy is
    imported; the version's source is the ``gs://`` address.
    """
    if not str(source).startswith("gs://"):
        return import_path(workspace, store, source, link=link, name=name, task=task, **options)
    url = str(source).rstrip("/")
    if link:
        raise BluenoError(f"{url} is in Cloud Storage: it has to be downloaded, so it cannot be --link'ed")
    task = ensure_task(task)
    with scratch_folder(workspace, "download") as scratch:
        folder = remote.download_source(workspace, url, scratch / url.rsplit("/", 1)[-1], task=task)
        try:
            return import_path(workspace, store, folder, name=name or default_name(folder), task=task,
                               source=url, move=True, **options)
        except InvalidDataset as exc:  # name the bucket, not the scratch copy
            raise InvalidDataset(url, exc.problems) from None
        except BluenoError as exc:
            raise BluenoError(str(exc).replace(str(folder), url)) from None
