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


def add_evaluated_runs(workspace, store: Store, count: int = 4, *, test: bool = True) -> tuple[list[int], int]:
    """Finished binary runs whose evaluation is the real engine's (``blueno.evaluation.evaluate``).

    The dataset is a real import (3 or 8 of the 8x8 digits, ``training_helpers``);
    the "models" are noisy probabilities on its validation rows, so the
    gallery finds the pictures of the misclassified samples.  Returns the run
    ids and the experiment id.
    """
    import json

    from training_helpers import threes_and_eights

    from blueno import datasets, evaluation

    ref = threes_and_eights(workspace, store)
    x, y, ids, names = datasets.load_arrays(workspace, datasets.resolve(store, workspace, ref))
    rows = np.arange(0, len(y), 3)
    run_ids = add_runs(store, count, params={"seed": 0})
    rng = np.random.default_rng(7)
    with store.write() as conn:
        experiment = conn.execute("SELECT experiment_id FROM runs WHERE id = ?", (run_ids[0],)).fetchone()[0]
        for i, run_id in enumerate(run_ids):
            result = {"split": {"train": len(y) - len(rows), "validation": len(rows), "test": 40 if test else 0}}
            for split, chosen in (("validation", rows), ("test", rows[:40])):
                if split == "test" and not (test and i == 0):
                    continue
                noise = rng.normal(0, 0.2 + 0.1 * i, len(chosen))
                p1 = np.clip(0.5 + (y[chosen] - 0.5) * 0.6 + noise, 0.01, 0.99)
                prediction = evaluation.Prediction(split, ids[chosen], y[chosen], np.stack([1 - p1, p1], 1), chosen,
                                                   [str(n) for n in names], ref)
                result[split] = {**evaluation.evaluate(prediction), "model": f"models/run-{run_id}/model.keras",
                                 "epoch": 3, "evaluated": now()}
                workspace.run_dir(run_id).mkdir(parents=True, exist_ok=True)
                prediction.save(evaluation.predictions_path(workspace.run_dir(run_id), split))
            config = {"model": "mlp", "params": {"learning_rate": 10.0 ** -(1 + i % 4), "units": 16 * (1 + i % 3),
                                                 "seed": 0}, "dataset": ref,
                      "split": {"validation": 0.33, "test": 0.1 if test else 0.0, "seed": 5}}
            conn.execute("UPDATE jobs SET config = ?, dataset = ? WHERE id = (SELECT job_id FROM runs WHERE id = ?)",
                         (dumps(config), ref, run_id))
            best = {"val_loss": result["validation"]["loss"], "val_accuracy": result["validation"]["accuracy"]}
            conn.execute("UPDATE runs SET dataset = ?, evaluation = ?, best = ?, monitor = 'val_loss', best_epoch = 3, "
                         "model_path = ? WHERE id = ?",
                         (ref, json.dumps(result), dumps(best), f"models/run-{run_id}/model.keras", run_id))
    for run_id in run_ids:
        add_curve(store, run_id, "loss", np.linspace(1.0, 0.3, 5))
        add_curve(store, run_id, "val_loss", np.linspace(1.1, 0.4, 5))
    return run_ids, experiment
