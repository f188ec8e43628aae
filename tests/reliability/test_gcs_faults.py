"""Case 9: Cloud Storage corruption and interrupted pushes, against gcp-storage-emulator with the real client."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from gcs_emulator import gcs_bucket_fixture, gcs_emulator_fixture  # noqa: F401  (fixtures)
from test_datasets import write_npy_folder

from blueno import BluenoError, datasets
from blueno.datasets import remote
from blueno.datasets.importing import import_path
from blueno.store import Store
from blueno.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent.parent


def bucket_of(url: str):
    from google.cloud import storage

    return storage.Client(project="blueno-emulator").bucket(remote.parse_url(url).bucket)


def blob(url: str, *parts: str):
    return bucket_of(url).blob(remote.parse_url(url).key(*parts))


def leftovers(workspace: Workspace) -> list[str]:
    """Temporary or partial files a download may have left under data/."""
    return sorted(p.name for p in workspace.data_dir.rglob("*") if p.name.startswith((".tmp-", ".part-")))


def corrupt(data: bytes, how: str, rng: random.Random) -> bytes:
    if how == "flip":
        at = rng.randrange(len(data))
        return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1:]
    if how == "truncate":
        return data[:rng.randrange(len(data))]
    if how == "append":
        return data + b"\0"
    return bytes(rng.randrange(256) for _ in range(len(data)))  # same size, other bytes


@pytest.mark.slow
def test_that_100_of_100_corrupted_objects_are_detected_on_download_with_no_partial_file_left(
    workspace: Workspace, store: Store, gcs_bucket: str, tmp_path: Path
) -> None:
    rounds, seed = 100, 9
    rng = random.Random(seed)
    version = import_path(workspace, store, write_npy_folder(tmp_path / "src"), name="pets").version
    remote.push(workspace, store, version.ref, gcs_bucket)
    files = sorted(entry["path"] for entry in version.manifest["files"])
    datasets.remove(store, workspace, "pets")  # from now on the bucket is the only copy
    detected = clean = 0
    for _ in range(rounds):
        name, how = rng.choice(files), rng.choice(["flip", "truncate", "append", "replace"])
        target = blob(gcs_bucket, "pets", version.version, name)
        original = target.download_as_bytes()
        target.upload_from_string(corrupt(original, how, rng))
        try:
            remote.pull(workspace, store, f"{gcs_bucket}/pets@{version.version}", workers=2)
        except BluenoError as exc:
            detected += name in str(exc) and "corrupt" in str(exc)
        clean += not (workspace.data_dir / "pets").exists() and leftovers(workspace) == [] and \
            datasets.versions(store, workspace) == []
        target.upload_from_string(original)
    pulled = remote.pull(workspace, store, f"{gcs_bucket}/pets@{version.version}")
    print(f"\nCASE 9 (corruption): {detected} of {rounds} corrupted objects detected on download (flip, truncate, "
          f"append, replace; seed {seed}), {clean} of {rounds} left no partial file and no dataset row")
    assert detected == rounds and clean == rounds
    assert datasets.verify(workspace, pulled).ok  # and the intact bucket still pulls


@pytest.mark.slow
def test_that_a_push_killed_midway_and_resumed_later_leaves_a_verified_remote_copy(
    workspace: Workspace, store: Store, gcs_bucket: str, tmp_path: Path
) -> None:
    source = tmp_path / "big"
    source.mkdir()
    rng = np.random.default_rng(3)
    lines = ["id,label"]
    for i in range(600):
        np.save(source / f"s{i:03d}.npy", rng.random((96, 96), dtype=np.float32))  # 36 KiB each
        lines.append(f"s{i:03d},{'ab'[i % 2]}")
    (source / "labels.csv").write_text("\n".join(lines) + "\n")
    version = import_path(workspace, store, source, name="big").version
    prefix = remote.parse_url(gcs_bucket).key("big", version.version)
    push = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "data", "push", "big", "--to", gcs_bucket,
         "--home", str(workspace.root)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + 120
    uploaded = 0
    while push.poll() is None and time.monotonic() < deadline:
        uploaded = sum(1 for _ in bucket_of(gcs_bucket).list_blobs(prefix=prefix))
        if uploaded >= 1:  # kill as early as we can see it working: mid-way on most machines
            break
        time.sleep(0.01)
    push.send_signal(signal.SIGKILL)
    out, _ = push.communicate(timeout=30)
    assert push.returncode == -signal.SIGKILL, out  # it really was interrupted, not finished
    names = [blob.name for blob in bucket_of(gcs_bucket).list_blobs(prefix=prefix)]
    before_resume = len(names)
    complete_before = any(name.endswith("/manifest.json") for name in names)

    resumed = remote.push(workspace, store, version.ref, gcs_bucket)
    other = Workspace(tmp_path / "elsewhere").ensure()
    with other.open_store() as other_store:
        pulled = remote.pull(other, other_store, f"{gcs_bucket}/big@{version.version}")
        report = datasets.verify(other, pulled)
        identical = all((pulled.path / f.name).read_bytes() == f.read_bytes() for f in source.iterdir())
    print(f"\nCASE 9 (interrupted push): killed with {before_resume} of {len(version.manifest['files'])} objects "
          f"uploaded; the resumed push uploaded {len(resumed.transferred)} and skipped {resumed.skipped}; "
          f"a pull elsewhere verified: {report.ok}, byte-identical: {identical}")
    # Interrupted: some objects there, but not the manifest that marks a version complete (it goes last).
    # How far the push got depends on the machine's speed; what the resume does must not.
    assert before_resume > 0 and not complete_before
    assert resumed.skipped == before_resume  # every object already there is kept, by checksum
    assert len(resumed.transferred) == len(version.manifest["files"]) - before_resume  # only the rest travels
    assert report.ok and identical
