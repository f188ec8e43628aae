"""Test data for the GUI tests: runs, jobs and curves written straight into a store."""

from __future__ import annotations

import numpy as np

from blueno.metrics import MetricsRecorder
from blueno.store import Store, dumps, now


def add_runs(
    store: Store,
    count: int,
    *,
    state: str = "succeeded",
    model: str = "mlp",
    params: dict | None = None,
    epochs: int = 3,
) -> list[int]:
    """Jobs and their runs written straight into the tables, as a finished grid leaves them."""
    t = now()
    with store.write() as conn:
        experiment = conn.execute(
            "INSERT INTO experiments (name, grid_text, created) VALUES ('test', '', ?)", (t,)
        ).lastrowid
        run_ids = []
        for i in range(count):
            run_params = {"learning_rate": 10.0 ** -(1 + i % 4), "units": 16 * (1 + i % 3), **(params or {})}
            config = {"model": model, "params": run_params, "dataset": "digits@abc"}
            job = conn.execute(
                "INSERT INTO jobs (experiment_id, config_hash, config, model, dataset, state, epoch, epochs, "
                "created, started, ended) VALUES (?, ?, ?, ?, 'digits@abc', ?, ?, ?, ?, ?, ?)",
                (
                    experiment,
                    f"h{t}-{i}",
                    dumps(config),
                    model,
                    state,
                    epochs,
                    epochs,
                    t,
                    t - 60,
                    t if state in ("succeeded", "failed", "cancelled") else None,
                ),
            ).lastrowid
            run_ids.append(
                conn.execute(
                    "INSERT INTO runs (job_id, experiment_id, model, params, dataset, epochs_done, final, "
                    "best, started, ended, created) VALUES (?, ?, ?, ?, 'digits@abc', ?, ?, ?, ?, ?, ?)",
                    (
                        job,
                        experiment,
                        model,
                        dumps(run_params),
                        epochs,
                        dumps({"val_loss": 0.5 - i * 1e-4, "val_accuracy": 0.8}),
                        dumps({"val_loss": 0.4}),
                        t - 60,
                        t,
                        t,
                    ),
                ).lastrowid
            )
    return run_ids


def add_curve(store: Store, run_id: int, key: str, values: np.ndarray, first_step: int = 0) -> None:
    with MetricsRecorder(store, run_id) as recorder:
        for step, value in enumerate(values, first_step):
            recorder.log(key, step, float(value))
