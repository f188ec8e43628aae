"""Listing and filtering 2,000 runs, each with 5 parameters and 3 metrics.

Blueno: ``blueno.runs.search`` with the filter grammar of ``blueno runs ls --where`` and the app's
runs filter (every parameter and best/final metric a column, extracted by SQLite, then filtered and
sorted in Python), over runs as a finished grid leaves them (``best`` and ``final`` recorded).
MLflow: ``MlflowClient.search_runs`` over its sqlite tracking store.

Both return the same thing: every matching run with its 5 parameters and 3 metrics as Python values.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from common import Row, median_time

RUNS = 2000
OPTIMIZERS = ["adam", "sgd", "rmsprop", "adamw"]
METRICS = ("val_accuracy", "val_loss", "loss")


def run_table(seed: int = 5) -> list[tuple[dict[str, Any], dict[str, float]]]:
    rng = random.Random(seed)
    table = []
    for i in range(RUNS):
        params = {"optimizer": rng.choice(OPTIMIZERS), "learning_rate": rng.choice([1e-4, 1e-3, 1e-2]),
                  "batch_size": rng.choice([16, 32, 64, 128]), "hidden_units": rng.choice([32, 64, 128]),
                  "seed": i}
        values = {"val_accuracy": rng.random(), "val_loss": rng.random() * 2, "loss": rng.random() * 2}
        table.append((params, values))
    return table


def blueno_search(store, where: str = "", order: str | None = None) -> list[tuple]:
    """The product's own listing: ``blueno.runs.search`` (what ``blueno runs ls --where`` and the app's filter use)."""
    from blueno.runs import search

    return search(store, where, order).rows


def blueno_setup(tmp: Path, table) -> tuple[Any, int]:
    from blueno.metrics import MetricsRecorder
    from blueno.store import Store, dumps, now

    store = Store(tmp / "blueno-runs.db")
    with store.write() as conn:
        experiment = conn.execute("INSERT INTO experiments (name, grid_text, created) VALUES ('bench', '', ?)",
                                  (now(),)).lastrowid
        for params, values in table:
            run_id = conn.execute(
                "INSERT INTO runs (experiment_id, model, params, dataset, best, final, created) "
                "VALUES (?, 'mlp', ?, 'd@1', ?, ?, ?)",
                (experiment, dumps(params), dumps(values), dumps(values), now()),
            ).lastrowid
            with MetricsRecorder(store, run_id) as recorder:  # joins this transaction
                for key, value in values.items():
                    recorder.log(key, 10, value)
    return store, experiment


def mlflow_setup(tmp: Path, table):
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow-runs.db'}")
    experiment = client.create_experiment("bench", artifact_location=(tmp / "mlflow-artifacts").as_uri())
    stamp = int(time.time() * 1000)
    for params, values in table:
        run_id = client.create_run(experiment).info.run_id
        client.log_batch(run_id, metrics=[Metric(k, v, stamp, 10) for k, v in values.items()],
                         params=[Param(k, str(v)) for k, v in params.items()])
    return client, experiment


def mlflow_search(client, experiment: str, filter_string: str = "", order_by: list[str] | None = None) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment], filter_string=filter_string, order_by=order_by,
                                  max_results=1000, page_token=token)
        runs.extend({"id": run.info.run_id, "params": run.data.params, "metrics": run.data.metrics} for run in page)
        token = page.token
        if not token:
            return runs


def run(tmp: Path) -> list[Row]:
    table = run_table()
    expected_all = len(table)
    expected_filtered = sum(1 for p, v in table if p["optimizer"] == "adam" and v["val_accuracy"] > 0.5)
    store, _ = blueno_setup(tmp, table)
    assert len(blueno_search(store)) == expected_all
    filtered = {"where": "optimizer=adam val_accuracy>0.5", "order": "-val_accuracy"}
    assert len(blueno_search(store, **filtered)) == expected_filtered
    blueno_all = median_time(lambda: blueno_search(store), repeat=15)
    blueno_filtered = median_time(lambda: blueno_search(store, **filtered), repeat=15)
    store.close()

    client, mlflow_experiment = mlflow_setup(tmp, table)
    mlflow_filter = {"filter_string": "params.optimizer = 'adam' and metrics.val_accuracy > 0.5",
                     "order_by": ["metrics.val_accuracy DESC"]}
    assert len(mlflow_search(client, mlflow_experiment)) == expected_all
    assert len(mlflow_search(client, mlflow_experiment, **mlflow_filter)) == expected_filtered
    mlflow_all = median_time(lambda: mlflow_search(client, mlflow_experiment), repeat=3)
    mlflow_filtered = median_time(lambda: mlflow_search(client, mlflow_experiment, **mlflow_filter), repeat=5)
    return [
        Row(f"list {RUNS:,} runs (5 params, 3 metrics)", "ms", blueno_all * 1000, mlflow_all * 1000,
            "MLflow search_runs", False, target=15),
        Row(f"filter+sort {RUNS:,} runs ({expected_filtered} match)", "ms", blueno_filtered * 1000,
            mlflow_filtered * 1000, "MLflow search_runs", False, target=15),
    ]
