"""Reproducible resume: a trainer SIGKILLed after epoch k and resumed repeats the uninterrupted run bit for bit."""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest
from test_trainer import add_job, finish, job_config, record, start_trainer

from blueno import datasets, metrics
from blueno.store import Store
from blueno.workspace import Workspace

EPOCHS = 5
KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "lr")


def config(ref: str) -> dict:
    # Dropout, noise and flips all draw random numbers: the resumed run must draw the same ones.
    return job_config("mlp", ref, epochs=EPOCHS, batch_size=16, hidden_units=16, dropout=0.2,
                      augment_noise=0.05, reduce_lr_patience=1, seed=7)


def history(store: Store, run: int) -> dict[str, list[float]]:
    return {key: metrics.history(store, run, key)[1].tolist() for key in KEYS}


def weights(workspace: Workspace, run: int) -> list[np.ndarray]:
    import keras

    return keras.models.load_model(workspace.run_dir(run) / "model.keras").get_weights()


@pytest.mark.slow
def test_that_a_run_killed_after_epoch_k_and_resumed_repeats_the_uninterrupted_run(
    workspace: Workspace, store: Store
) -> None:
    ref = datasets.make_demo(workspace, store).ref
    job, straight = add_job(store, config(ref))
    code, out = finish(start_trainer(workspace, store, job, 1))
    record(workspace, store, job, 1)
    assert code == 0, out
    expected, expected_weights = history(store, straight), weights(workspace, straight)
    assert len(expected["val_loss"]) == EPOCHS

    stopped_after = []
    for k in (1, 3):
        job, run = add_job(store, config(ref))
        process = start_trainer(workspace, store, job, 1)
        deadline = time.monotonic() + 120
        while record(workspace, store, job, 1) and \
                store.query_one("SELECT epoch FROM jobs WHERE id = ?", (job,))["epoch"] < k:
            assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        code, out = finish(process)
        record(workspace, store, job, 1)
        assert code == -signal.SIGKILL, out
        state = json.loads((workspace.run_dir(run) / "checkpoint" / "state.json").read_text())
        assert k <= state["epoch"] < EPOCHS, "killed too late to test a resume; make the epochs longer"
        stopped_after.append(state["epoch"])

        with store.write() as conn:  # what the scheduler does after a crash: requeue, claim again
            conn.execute("UPDATE jobs SET attempt = 2 WHERE id = ?", (job,))
        code, out = finish(start_trainer(workspace, store, job, 2))
        record(workspace, store, job, 2)
        assert code == 0, out
        assert f"resuming after epoch {state['epoch']}" in out

        assert history(store, run) == expected  # every epoch's metrics, exactly
        for got, want in zip(weights(workspace, run), expected_weights, strict=True):
            assert np.array_equal(got, want)  # bit for bit
    assert len(set(stopped_after)) == 2, stopped_after
