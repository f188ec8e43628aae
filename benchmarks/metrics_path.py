"""How fast metric points go into the workspace database and come back out.

Compares writing through :class:`blueno.metrics.MetricsRecorder` (which also
maintains ``latest_metrics``) with a bare ``sqlite3`` ``executemany`` into an
indexed table of the same shape, in the same process and on the same disk, and
times reading one run's 10,000-point history.  Targets: >= 200,000 points/s
written; <= 15 ms for the 10k-point read.  Rates are given per wall-clock
second and per CPU second of this process: on a busy shared machine the
second is the one that says what the code costs.

    .venv/bin/python benchmarks/metrics_path.py [--points N] [--repeats R]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from blueno import metrics  # noqa: E402
from blueno.store import Store  # noqa: E402

KEYS = ("batch_loss", "loss", "accuracy", "val_loss", "val_accuracy")


def points(n: int) -> list[tuple[str, int, float]]:
    """A training-like stream: mostly batch_loss, a few epoch keys."""
    return [(KEYS[i % len(KEYS)], i, 1.0 / (i + 1)) for i in range(n)]


Rates = tuple[float, float]  # points per wall-clock second, per CPU second


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def rates(self, n: int) -> Rates:
        return n / self.wall, n / self.cpu


def recorder_rate(folder: Path, stream: list[tuple[str, int, float]]) -> Rates:
    store = Store(folder / "recorder.db")
    with Stopwatch() as watch, metrics.MetricsRecorder(store, run_id=1) as recorder:
        for key, step, value in stream:
            recorder.log(key, step, value)
    store.close()
    return watch.rates(len(stream))


def raw_rate(folder: Path, stream: list[tuple[str, int, float]], batch: int) -> Rates:
    """The floor: tuples prebuilt, one executemany per batch, same pragmas as the Store."""
    conn = sqlite3.connect(folder / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(
        "CREATE TABLE metrics (run_id INTEGER NOT NULL, key TEXT NOT NULL, step INTEGER NOT NULL, "
        "value REAL, time REAL NOT NULL, PRIMARY KEY (run_id, key, step)) WITHOUT ROWID"
    )
    now = time.time()
    rows = [(1, key, step, value, now) for key, step, value in stream]
    insert = "INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?, ?)"
    with Stopwatch() as watch:
        for offset in range(0, len(rows), batch):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(insert, rows[offset:offset + batch])
            conn.execute("COMMIT")
    conn.close()
    return watch.rates(len(rows))


def read_ms(folder: Path, repeats: int) -> float:
    """Median time to read a 10,000-point series from a table that also holds other runs."""
    store = Store(folder / "read.db")
    for run_id in range(1, 11):
        with metrics.MetricsRecorder(store, run_id) as recorder:
            for step in range(10_000):
                recorder.log("batch_loss", step, 1.0 / (step + 1))
                if step % 100 == 0:
                    recorder.log("val_loss", step // 100, 0.5)
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        steps, _values = metrics.history(store, 5, "batch_loss")
        timings.append((time.perf_counter() - start) * 1000)
        assert len(steps) == 10_000
    store.close()
    return statistics.median(timings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    stream = points(args.points)
    with tempfile.TemporaryDirectory(prefix="blueno-bench-") as tmp:
        folder = Path(tmp)
        recorder = recorder_rate(folder, stream)
        raw = raw_rate(folder, stream, metrics.FLUSH_POINTS)
        read = read_ms(folder, args.repeats)
    print(f"metrics path, {args.points:,} points, flush every {metrics.FLUSH_POINTS:,} points\n")
    print("| measure | per wall second | per CPU second | target |")
    print("| --- | --- | --- | --- |")
    print(f"| MetricsRecorder write (points/s) | {recorder[0]:,.0f} | {recorder[1]:,.0f} | >= 200,000 |")
    print(f"| raw sqlite3 executemany (points/s) | {raw[0]:,.0f} | {raw[1]:,.0f} | (floor) |")
    print(f"| recorder / raw | {recorder[0] / raw[0]:.2f} | {recorder[1] / raw[1]:.2f} | |")
    print(f"| read 10,000-point history, median of {args.repeats} | {read:.2f} ms | | <= 15 ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
