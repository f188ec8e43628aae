"""Checksum sync vs a naive upload-everything, on a 1,000-file dataset (gcp-storage-emulator).

Scenarios, each timed against uploading every file with the same thread pool:

0. the first push (everything travels: the price of listing and checking);
1. re-sync of an unchanged version (expect 0 files transferred);
2. the bucket's copy of the version has 10 objects that differ (expect those 10);
3. a new version of the dataset with 10 changed files (expect 10 uploaded, the
   unchanged ones copied server-side from the previous version).

Run: ``.venv/bin/python benchmarks/gcs_sync.py [--files 1000] [--kib 16]``.  The
emulator is a single-threaded HTTP server on loopback, so times measure
per-request overhead, not bandwidth: there a server-side copy costs a request
like an upload does, while on Cloud Storage it moves no bytes through the
client.  The MB columns show what actually travelled.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gcs_emulator import running_emulator  # noqa: E402

from blueno.datasets import remote  # noqa: E402
from blueno.datasets.importing import import_path  # noqa: E402
from blueno.workspace import Workspace  # noqa: E402


def write_dataset(folder: Path, files: int, kib: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = ["id,label"]
    for i in range(files):
        np.save(folder / f"{i:05d}.npy", rng.random(kib * 256, dtype=np.float32))
        lines.append(f"{i:05d},{i % 10}")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")


def naive_upload(bucket, folder: Path, prefix: str, workers: int) -> float:
    """Upload every file, no listing and no checks: what a plain `cp -r` to the bucket does."""
    paths = sorted(p for p in folder.iterdir() if p.is_file())
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda p: bucket.blob(f"{prefix}/{p.name}").upload_from_filename(str(p)), paths))
    return time.perf_counter() - start


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--kib", type=int, default=16, help="size of each array file in KiB")
    parser.add_argument("--workers", type=int, default=remote.WORKERS)
    args = parser.parse_args()
    from google.cloud import storage

    with tempfile.TemporaryDirectory() as tmp, running_emulator() as naive_url, running_emulator() as url:
        workspace = Workspace(Path(tmp) / "ws").ensure()
        store = workspace.open_store()
        source = Path(tmp) / "src"
        write_dataset(source, args.files, args.kib)
        v1 = import_path(workspace, store, source, name="bench").version
        rng = np.random.default_rng(1)
        for i in range(10):
            np.save(source / f"{i * 13:05d}.npy", rng.random(args.kib * 256, dtype=np.float32))
        v2 = import_path(workspace, store, source, name="bench").version

        # Each side on its own emulator, steps interleaved so both see the same machine load.  The
        # emulator rewrites its whole metadata file on every write, so its cost per request grows
        # with the objects it holds: both sides hold the same number at each step.
        os.environ["STORAGE_EMULATOR_HOST"] = naive_url
        naive_bucket = storage.Client(project="bench").create_bucket("naive")
        os.environ["STORAGE_EMULATOR_HOST"] = url  # remote.client() reads it on every call
        bucket = storage.Client(project="bench").create_bucket("bench")
        base = "gs://bench/blueno"

        def damage() -> None:
            for i in range(10):
                bucket.blob(f"blueno/bench/{v1.version}/{i * 7:05d}.npy").upload_from_string(b"stale")

        steps = [
            ("first push (nothing remote yet)", v1, "v1", v1.ref, None),
            ("re-sync, unchanged", v1, "v1", v1.ref, None),
            ("re-sync, 10 remote objects differ", v1, "v1", v1.ref, damage),
            ("new version, 10 files changed", v2, "v2", v2.ref, None),
        ]
        rows = []
        for label, version, naive_prefix, ref, before in steps:
            naive = naive_upload(naive_bucket, version.path, naive_prefix, args.workers)
            if before is not None:
                before()
            seconds, result = timed(remote.push, workspace, store, ref, base, workers=args.workers)
            rows.append((label, naive, version.size_bytes, seconds, result))
        store.close()

    print(f"dataset: {v1.n_files} files, {v1.size_bytes / 1e6:.1f} MB; {args.workers} workers; "
          "gcp-storage-emulator on loopback\n")
    print("| scenario | naive (s) | naive MB | Blueno (s) | Blueno MB | uploaded | copied in bucket | "
          "time ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, naive, naive_bytes, seconds, result in rows:
        print(f"| {label} | {naive:.2f} | {naive_bytes / 1e6:.1f} | {seconds:.2f} | "
              f"{result.bytes / 1e6:.2f} | {len(result.transferred)} | {len(result.copied)} | "
              f"{seconds / naive:.3f} |")
    transferred = [len(result.transferred) for *_, result in rows]
    return 0 if transferred[1:] == [0, 10, 10] else 1


if __name__ == "__main__":
    sys.exit(main())
