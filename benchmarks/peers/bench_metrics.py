"""Metric points written per second, and reading one run's 10,000-point history.

Blueno: ``MetricsRecorder`` (buffered, one ``executemany`` transaction per flush) and
``metrics.history``.  MLflow: the sqlite tracking store through ``MlflowClient``: ``log_metric``
(one call per point), ``log_batch`` (1,000 points per call, MLflow's maximum) and
``get_metric_history``.  The ceiling: raw ``sqlite3`` ``executemany`` of the same rows into the
same table, with Blueno's pragmas (WAL, ``synchronous=FULL``), in one transaction.
"""

from __future__ import annotations

import time
from pathlib import Path

from common import Row, median_time

KEYS = [f"metric_{i}" for i in range(10)]


def points(count: int) -> list[tuple[str, int, float]]:
    """``count`` points spread over 10 keys: (key, step, value)."""
    per_key = count // len(KEYS)
    return [(key, step, 1.0 / (step + 1)) for key in KEYS for step in range(per_key)]


def blueno_write(tmp: Path, count: int) -> float:
    from blueno import metrics
    from blueno.store import Store

    store = Store(tmp / "blueno-write.db")
    data = points(count)
    started = time.perf_counter()
    with metrics.MetricsRecorder(store, run_id=1) as recorder:
        for key, step, value in data:
            recorder.log(key, step, value)
    elapsed = time.perf_counter() - started
    stored = store.query_one("SELECT count(*) FROM metrics")[0]
    store.close()
    assert stored == len(data), stored
    return len(data) / elapsed


def raw_sqlite_write(tmp: Path, count: int) -> float:
    import sqlite3

    conn = sqlite3.connect(tmp / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE metrics (run_id INTEGER NOT NULL, key TEXT NOT NULL, step INTEGER NOT NULL, "
                 "value REAL, time REAL NOT NULL, PRIMARY KEY (run_id, key, step)) WITHOUT ROWID")
    data = points(count)
    started = time.perf_counter()
    now = time.time()
    rows = [(1, key, step, value, now) for key, step, value in data]
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return len(data) / elapsed


def mlflow_client(tmp: Path, name: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp / (name + '.db')}")
    experiment = client.create_experiment(name, artifact_location=(tmp / f"{name}-artifacts").as_uri())
    return client, experiment


def mlflow_log_metric(tmp: Path, count: int) -> float:
    client, experiment = mlflow_client(tmp, "log_metric")
    run_id = client.create_run(experiment).info.run_id
    data = points(count)
    started = time.perf_counter()
    for key, step, value in data:
        client.log_metric(run_id, key, value, step=step)
    return len(data) / (time.perf_counter() - started)


def mlflow_log_batch(client, run_id: str, data: list[tuple[str, int, float]]) -> None:
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    for start in range(0, len(data), 1000):  # MLflow accepts at most 1,000 metrics per batch
        client.log_batch(run_id, metrics=[Metric(k, v, stamp, s) for k, s, v in data[start:start + 1000]])


def mlflow_batch_write(tmp: Path, count: int) -> float:
    client, experiment = mlflow_client(tmp, "log_batch")
    run_id = client.create_run(experiment).info.run_id
    data = points(count)
    started = time.perf_counter()
    mlflow_log_batch(client, run_id, data)
    return len(data) / (time.perf_counter() - started)


def history_reads(tmp: Path, length: int = 10_000) -> tuple[float, float]:
    """Seconds to read one run's ``length``-point series: (Blueno, MLflow), medians of 5."""
    from blueno import metrics
    from blueno.store import Store

    data = [("loss", step, 1.0 / (step + 1)) for step in range(length)]
    store = Store(tmp / "blueno-read.db")
    with metrics.MetricsRecorder(store, run_id=7) as recorder:
        for key, step, value in data:
            recorder.log(key, step, value)
    with metrics.MetricsRecorder(store, run_id=8) as recorder:  # another run in the same table, as in real use
        for key, step, value in points(30_000):
            recorder.log(key, step, value)
    steps, _ = metrics.history(store, 7, "loss")
    assert len(steps) == length
    blueno = median_time(lambda: metrics.history(store, 7, "loss"))
    store.close()

    client, experiment = mlflow_client(tmp, "history")
    run_id = client.create_run(experiment).info.run_id
    mlflow_log_batch(client, run_id, data)
    mlflow_log_batch(client, client.create_run(experiment).info.run_id, points(30_000))  # the same other run
    assert len(client.get_metric_history(run_id, "loss")) == length
    mlflow = median_time(lambda: client.get_metric_history(run_id, "loss"))
    return blueno, mlflow


def run(tmp: Path) -> list[Row]:
    blueno = blueno_write(tmp, 200_000)
    raw = raw_sqlite_write(tmp, 200_000)
    single = mlflow_log_metric(tmp, 200)  # ~45 ms a point: each call is a transaction
    batch = mlflow_batch_write(tmp, 20_000)
    read_blueno, read_mlflow = history_reads(tmp)
    return [
        Row("metric points written", "points/s", blueno, single, "MLflow log_metric", True),
        Row("metric points written", "points/s", blueno, batch, "MLflow log_batch", True, target=20),
        Row("metric points written", "points/s", blueno, raw, "raw sqlite3 executemany (ceiling)", True),
        Row("read one run's 10,000-point history", "ms", read_blueno * 1000, read_mlflow * 1000,
            "MLflow get_metric_history", False, target=20),
    ]
