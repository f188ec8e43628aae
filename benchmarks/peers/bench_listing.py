"""Listing and filtering 2,000 runs, each with 5 parameters and 3 metrics.

Blueno: the ``runs`` table (parameters as JSON) with ``latest_metrics``, the newest value of each
metric per run (one primary-key lookup each), so no history is scanned.  There is no library
function yet for a filtered run listing, so the query below is the one such a function would run
(see docs/benchmarks-peers.md).
MLflow: ``MlflowClient.search_runs`` over its sqlite tracking store.

Both return the same thing: every matching run with its 5 parameters and 3 metrics as Python values.
"""

from __future__ import annotations

import json
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


# The query a ``runs.search(store, params=..., metrics=..., order_by=...)`` library function would run:
# parameters filtered in the runs table, each metric one primary-key lookup in latest_metrics.
_SEARCH = """
    SELECT * FROM (
        SELECT r.id, r.params,
               (SELECT value FROM latest_metrics WHERE run_id = r.id AND key = 'val_accuracy') AS val_accuracy,
               (SELECT value FROM latest_metrics WHERE run_id = r.id AND key = 'val_loss') AS val_loss,
               (SELECT value FROM latest_metrics WHERE run_id = r.id AND key = 'loss') AS loss
        FROM runs r WHERE r.experiment_id = :experiment {where}
    ) {having}
    ORDER BY {order}
"""


def blueno_search(store, experiment: int, where: str = "", having: str = "", order: str = "id",
                  **args: Any) -> list[dict]:
    cursor = store.connection().cursor()
    cursor.row_factory = None
    sql = _SEARCH.format(where=where, having=having, order=order)
    rows = cursor.execute(sql, {"experiment": experiment, **args}).fetchall()
    return [{"id": run_id, "params": json.loads(params),
             "metrics": {"val_accuracy": acc, "val_loss": val_loss, "loss": loss}}
            for run_id, params, acc, val_loss, loss in rows]


def blueno_setup(tmp: Path, table) -> tuple[Any, int]:
    from blueno.metrics import MetricsRecorder
    from blueno.store import Store, dumps, now

    store = Store(tmp / "blueno-runs.db")
    with store.write() as conn:
        experiment = conn.execute("INSERT INTO experiments (name, grid_text, created) VALUES ('bench', '', ?)",
                                  (now(),)).lastrowid
        for params, values in table:
            run_id = conn.execute(
                "INSERT INTO runs (experiment_id, model, params, dataset, created) VALUES (?, 'mlp', ?, 'd@1', ?)",
                (experiment, dumps(params), now()),
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
    store, experiment = blueno_setup(tmp, table)
    assert len(blueno_search(store, experiment)) == expected_all
    filtered = {"where": "AND json_extract(r.params, '$.optimizer') = :optimizer",
                "having": "WHERE val_accuracy > :floor", "order": "val_accuracy DESC", "optimizer": "adam",
                "floor": 0.5}
    assert len(blueno_search(store, experiment, **filtered)) == expected_filtered
    blueno_all = median_time(lambda: blueno_search(store, experiment), repeat=15)
    blueno_filtered = median_time(lambda: blueno_search(store, experiment, **filtered), repeat=15)
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
