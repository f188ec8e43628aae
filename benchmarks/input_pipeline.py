"""Input pipeline: a dataset of 3D volumes streamed from disk into training, against a raw sequential read.

    .venv/bin/python benchmarks/input_pipeline.py [--volumes 1200] [--side 96] [--repeats 3]

Writes ``--volumes`` CT-like volumes (``side``³ int16, one ``.npy`` per scan plus
``labels.csv``; 1200 × 96³ is 2.1 GB) into a temporary workspace, imports
them with ``--link`` (the product's import: headers checked, files hashed)
and then, alternating, each ``--repeats`` times, cold:

* raw: every file read in order with large sequential reads (the disk's rate);
* pipeline: one epoch of ``trainer.train_dataset`` (what ``fit`` consumes:
  shuffled batches read by parallel ``tf.data`` workers, converted to
  float32, prefetched) over ``datasets.load_arrays``' ``x``;
* fit: one epoch of ``model.fit`` on a small 3D model fed by that pipeline.

Cold means each file's pages are dropped from the page cache first with
``posix_fadvise(POSIX_FADV_DONTNEED)`` (per file: the machine is shared, so
the global ``drop_caches`` is not used).  Rates count the bytes of the files.
The trainer's resident memory (RSS, sampled every 10 ms) is reported above
what it held before the epoch.  Everything is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import psutil  # noqa: E402

from blueno import datasets, trainer  # noqa: E402
from blueno.datasets.importing import import_path  # noqa: E402
from blueno.workspace import Workspace  # noqa: E402

BATCH = 8


def write_volumes(folder: Path, count: int, side: int) -> list[Path]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = rng.integers(-1000, 2000, size=(side, side, side), dtype=np.int16)  # one noise volume, shifted
    paths, lines = [], ["id,label"]
    for i in range(count):
        path = folder / f"scan{i:05d}.npy"
        np.save(path, np.roll(base, i, axis=0))
        paths.append(path)
        lines.append(f"scan{i:05d},{i % 2}")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return paths


def drop_cache(paths: list[Path]) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def raw_read(paths: list[Path]) -> tuple[float, int]:
    buffer = bytearray(8 << 20)
    view = memoryview(buffer)
    total = 0
    started = time.perf_counter()
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while got := f.readinto(view):
                total += got
    return time.perf_counter() - started, total


class PeakRss:
    """The highest resident set size seen while the block runs, sampled every 10 ms."""

    def __enter__(self) -> PeakRss:
        self.process = psutil.Process()
        self.before = self.process.memory_info().rss
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--volumes", type=int, default=1200)
    parser.add_argument("--side", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        paths = write_volumes(Path(tmp) / "scans", args.volumes, args.side)
        size = sum(p.stat().st_size for p in paths)
        workspace = Workspace(Path(tmp) / "ws").ensure()
        with workspace.open_store() as store:
            version = import_path(workspace, store, Path(tmp) / "scans", name="scans", link=True).version
        x, y, _, _ = datasets.load_arrays(workspace, version)
        indices = np.arange(len(y))
        params = {"augment_flip": False, "augment_noise": 0.0, "seed": 0, "batch_size": BATCH}
        model = keras.Sequential([
            keras.layers.Input((args.side,) * 3 + (1,)),
            keras.layers.AveragePooling3D(8),
            keras.layers.Flatten(),
            keras.layers.Dense(2, activation="softmax"),
        ])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")

        def pipeline() -> float:
            started = time.perf_counter()
            for _batch in trainer.train_dataset(tf, x, y, indices, params):
                pass
            return time.perf_counter() - started

        def fit() -> float:
            data = trainer.train_dataset(tf, x, y, indices, params)
            data = data.map(lambda b, t: (tf.expand_dims(b, -1), t))
            started = time.perf_counter()
            model.fit(data, epochs=1, verbose=0, shuffle=False)
            return time.perf_counter() - started

        pipeline()  # trace and build once, warm (not timed)
        fit()
        raws, pipes, fits, rss = [], [], [], []
        for _ in range(args.repeats):
            drop_cache(paths)
            seconds, read = raw_read(paths)
            raws.append(read / seconds)
            drop_cache(paths)
            with PeakRss() as memory:
                pipes.append(size / pipeline())
            rss.append(memory.peak - memory.before)
            drop_cache(paths)
            with PeakRss() as memory:
                fits.append(size / fit())
            rss.append(memory.peak - memory.before)

    gb = 1e9
    raw, pipe, fitted = (statistics.median(v) for v in (raws, pipes, fits))
    sample = args.side**3 * 4  # float32 in memory
    print(f"input pipeline — {args.volumes} volumes of {args.side}³ int16 ({size / gb:.2f} GB on disk), "
          f"batch {BATCH}, cold (posix_fadvise DONTNEED per file); {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print(f"| measure | median of {args.repeats} | each run | vs raw |")
    print("| --- | ---: | --- | ---: |")
    for name, value, runs in (("raw sequential read", raw, raws), ("train_dataset epoch (tf.data)", pipe, pipes),
                              ("model.fit epoch (small 3D model)", fitted, fits)):
        print(f"| {name} | {value / gb:.2f} GB/s | {', '.join(f'{v / gb:.2f}' for v in runs)} | "
              f"{value / raw:.2f} |")
    print(f"| trainer RSS growth during an epoch, worst | {max(rss) / 1e6:.0f} MB | "
          f"{', '.join(f'{r / 1e6:.0f}' for r in rss)} | dataset {size / 1e6:.0f} MB, "
          f"one float32 batch {BATCH * sample / 1e6:.0f} MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
