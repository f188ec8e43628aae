"""The trainer subprocess: results, metrics, the saved model, resume, and its exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

from blueno import datasets, events, ingest, jobspec, metrics, trainer
from blueno.datasets.importing import import_path
from blueno.queue import JobQueue
from blueno.scheduler import Slot
from blueno.store import Store, dumps, now
from blueno.workspace import Workspace

REPO = Path(__file__).resolve().parent.parent


# -- fixtures and helpers ------------------------------------------------------


def add_job(
    store: Store, config: dict[str, Any], *, attempt: int = 1, state: str = "running"
) -> tuple[int, int]:
    """A claimed job and its run, as the queue and the scheduler would leave them."""
    with store.write() as conn:
        experiment = conn.execute(
            "INSERT INTO experiments (name, grid_text, created) VALUES ('test', '', ?)", (now(),)
        ).lastrowid
        job = conn.execute(
            "INSERT INTO jobs (experiment_id, config_hash, config, model, dataset, state, attempt, created) "
            "VALUES (?, 'hash', ?, ?, ?, ?, ?, ?)",
            (experiment, dumps(config), config["model"], config["dataset"], state, attempt, now()),
        ).lastrowid
        # A run id different from the job id, as it generally is.
        conn.execute("INSERT INTO runs (id, job_id, experiment_id, model, params, dataset, created) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (job + 100, job, experiment, config["model"], dumps(config["params"]), config["dataset"],
                      now()))
    return job, job + 100


def job_config(model: str, dataset: str, split: dict | None = None, **params: Any) -> dict[str, Any]:
    return {"model": model, "params": params, "dataset": dataset, "preprocessing": [],
            "split": split or {"validation": 0.25, "test": 0.0, "seed": 3}}


def import_arrays(workspace: Workspace, store: Store, name: str, x: np.ndarray, y: np.ndarray) -> str:
    path = workspace.root / f"{name}.npz"
    np.savez(path, x=x, y=y)
    return import_path(workspace, store, path, name=name).version.ref


@pytest.fixture
def digits(workspace: Workspace, store: Store) -> str:
    return datasets.make_demo(workspace, store).ref


@pytest.fixture
def threes_and_eights(workspace: Workspace, store: Store) -> str:
    """A binary task that is learnable but not trivially perfect."""
    data = load_digits()
    keep = np.isin(data.target, (3, 8))
    return import_arrays(workspace, store, "three-or-eight", (data.images[keep] / 16).astype("float32"),
                         (data.target[keep] == 8).astype("int64"))


def prepare(workspace: Workspace, store: Store, job: int, attempt: int) -> dict[str, Any]:
    """Write the attempt's job spec exactly as the scheduler does; returns it."""
    claimed = JobQueue(store).get(job)
    spec = jobspec.build(workspace, store, claimed, claimed.run_id, Slot("cpu0", None),
                         ingest.resume_checkpoint(store, job))
    events.write_spec(Path(spec["job_spec"]), spec)
    return spec


def trainer_env(workspace: Workspace, spec: dict[str, Any]) -> dict[str, str]:
    env = jobspec.environment(dict(os.environ), spec, str(REPO))
    return {**env, "BLUENO_CPU_THREADS": "1"}


def start_trainer(workspace: Workspace, store: Store, job: int, attempt: int) -> subprocess.Popen:
    """``python -m blueno.trainer`` exactly as the scheduler starts it (its job spec written first)."""
    spec = prepare(workspace, store, job, attempt)
    return subprocess.Popen(
        [sys.executable, "-m", "blueno.trainer", str(job), str(attempt)], cwd=workspace.root,
        env=trainer_env(workspace, spec), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )


def record(workspace: Workspace, store: Store, job: int, attempt: int) -> ingest.Ingested:
    """What the scheduler does with an attempt's events: ingest them, guarded by the attempt."""
    run = JobQueue(store).get(job).run_id
    source = events.FileSource(jobspec.attempt_files(workspace, run, attempt)[1])
    return ingest.settle(store, source, job, attempt, run)


def finish(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out


def rows(store: Store, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
    return [dict(r) for r in store.query(sql, params)]


def database_state(store: Store) -> dict[str, list]:
    tables = ("jobs", "runs", "metrics", "latest_metrics", "outbox")
    return {table: rows(store, f"SELECT * FROM {table}") for table in tables}


def validation_split(workspace: Workspace, store: Store, ref: str, split: dict[str, Any]):
    version = datasets.resolve(store, workspace, ref)
    x, y, ids, _ = datasets.load_arrays(workspace, version)
    _, val, _ = trainer.split_indices(ids, y, split["validation"], split["test"], split["seed"])
    return x[val].astype("float32"), y[val]


# -- end to end, in a subprocess -------------------------------------------------


@pytest.mark.slow
def test_that_a_binary_job_trains_and_reports_exactly_the_saved_model(
    workspace: Workspace, store: Store, threes_and_eights: str
) -> None:
    split = {"validation": 0.3, "test": 0.2, "seed": 5}
    config = job_config("mlp", threes_and_eights, split, epochs=4, batch_size=16, monitor="val_auc",
                        hidden_units=8, learning_rate=0.003)
    job, run = add_job(store, config)

    code, out = finish(start_trainer(workspace, store, job, 1))
    record(workspace, store, job, 1)

    assert code == trainer.EXIT_OK, out
    epoch_lines = [line.split()[1] for line in out.splitlines() if line.startswith("epoch ")]
    assert epoch_lines == ["1/4", "2/4", "3/4", "4/4"]
    assert rows(store, "SELECT state, epoch, epochs, error FROM jobs") == [
        {"state": "succeeded", "epoch": 4, "epochs": 4, "error": None}]
    result = store.query_one("SELECT * FROM runs WHERE id = ?", (run,))
    assert result["dataset"] == threes_and_eights and result["monitor"] == "val_auc"
    assert result["epochs_done"] == 4 and result["model_path"] == f"models/run-{run}/model.keras"
    best, final = json.loads(result["best"]), json.loads(result["final"])
    assert set(final) == {
        "loss", "accuracy", "val_loss", "val_accuracy", "val_auc", "val_sensitivity", "val_specificity", "lr"}
    auc = metrics.history(store, run, "val_auc")[1]
    assert result["best_epoch"] == int(np.argmax(auc)) + 1 and best["val_auc"] == auc.max()
    assert json.loads(result["evaluation"])["split"]["test"] > 0
    assert rows(store, "SELECT topic, ref FROM outbox") == [{"topic": "run", "ref": run}]
    assert not (workspace.logs_dir / f"run-{run}").exists()  # TensorBoard files only when the setting is on

    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "val_auc", "lr"):
        assert metrics.history(store, run, key)[0].tolist() == [1, 2, 3, 4], key
    steps = metrics.history(store, run, "batch_loss")[0]
    n_train = json.loads(result["evaluation"])["split"]["train"]
    assert steps.tolist() == list(range(1, 4 * -(-n_train // 16) + 1))

    import keras

    saved = keras.models.load_model(workspace.root / result["model_path"])
    x_val, y_val = validation_split(workspace, store, threes_and_eights, split)
    probs = saved.predict(x_val, verbose=0)
    assert (probs.argmax(1) == y_val).mean() == pytest.approx(best["val_accuracy"], abs=1e-6)
    assert roc_auc_score(y_val, probs[:, 1]) == pytest.approx(best["val_auc"], abs=1e-9)
    assert not (workspace.run_dir(run) / trainer.CHECKPOINT_DIR).exists()


@pytest.mark.slow
def test_that_a_stopped_job_resumes_from_its_last_epoch(
    workspace: Workspace, store: Store, digits: str
) -> None:
    epochs = 40  # enough that SIGTERM lands mid-training even when epochs take a few milliseconds
    job, run = add_job(store, job_config("mlp", digits, epochs=epochs, batch_size=16, hidden_units=16))
    process = start_trainer(workspace, store, job, 1)
    deadline = time.monotonic() + 90
    while record(workspace, store, job, 1) and store.query_one("SELECT epoch FROM jobs")["epoch"] < 2:
        assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    code, out = finish(process)
    record(workspace, store, job, 1)

    assert code == trainer.EXIT_STOPPED, out
    stopped_at = json.loads((workspace.run_dir(run) / "checkpoint" / "state.json").read_text())["epoch"]
    assert 2 <= stopped_at < epochs
    assert store.query_one("SELECT epoch FROM jobs")["epoch"] == stopped_at

    with store.write() as conn:  # the scheduler requeues and claims it again
        conn.execute("UPDATE jobs SET attempt = 2")
    code, out = finish(start_trainer(workspace, store, job, 2))
    record(workspace, store, job, 2)

    assert code == trainer.EXIT_OK, out
    assert f"resuming after epoch {stopped_at}" in out
    epoch_lines = [line.split()[1] for line in out.splitlines() if line.startswith("epoch ")]
    assert epoch_lines == [f"{e}/{epochs}" for e in range(stopped_at + 1, epochs + 1)]
    assert metrics.history(store, run, "val_loss")[0].tolist() == list(range(1, epochs + 1))
    assert store.query_one("SELECT state, epoch FROM jobs")[:] == ("succeeded", epochs)


@pytest.mark.slow
def test_that_a_stop_whose_exception_a_finalizer_swallowed_still_stops_the_training(
    workspace: Workspace, store: Store, digits: str
) -> None:
    """SIGTERM's handler can run inside a ``__del__`` (TensorFlow has many), where Python prints its
    exception and drops it: seen in CI as a stopped trainer that trained on to its last epoch."""
    workspace.zoo_dir.mkdir(exist_ok=True)
    (workspace.zoo_dir / "stop_in_finalizer.py").write_text(textwrap.dedent("""
        import os
        import signal

        from blueno.zoo import ModelSpec, register


        class Finalized:
            def __del__(self):  # SIGTERM lands while a finalizer runs, as it may inside TensorFlow
                os.kill(os.getpid(), signal.SIGTERM)


        def build(input_shape, n_classes, params):
            import keras
            Finalized()  # collected at once: the handler's exception is raised inside __del__
            inputs = keras.Input(shape=input_shape)
            outputs = keras.layers.Dense(n_classes, activation="softmax")(keras.layers.Flatten()(inputs))
            return keras.Model(inputs, outputs)


        register(ModelSpec(name="stop_in_finalizer", description="test model", hyperparams=(), build=build))
    """))
    job, run = add_job(store, job_config("stop_in_finalizer", digits, epochs=30, batch_size=16))
    code, out = finish(start_trainer(workspace, store, job, 1))
    record(workspace, store, job, 1)

    assert "Exception ignored in" in out and "Stopped" in out  # the handler's own exception was dropped...
    assert code == trainer.EXIT_STOPPED, out  # ...and the training stopped anyway, before its first epoch
    assert "epoch 1/30" not in out
    assert store.query_one("SELECT state, epoch FROM jobs")[:] == ("running", 0)  # nothing reported as done


# -- exit codes, in process ---------------------------------------------------


def run_in_process(workspace: Workspace, store: Store, job: int, attempt: int,
                   monkeypatch: pytest.MonkeyPatch) -> int:
    spec = prepare(workspace, store, job, attempt)
    for key, value in trainer_env(workspace, spec).items():
        monkeypatch.setenv(key, value)
    code = trainer.main([str(job), str(attempt)])
    record(workspace, store, job, attempt)
    return code


def test_that_an_image_model_on_flat_vectors_fails_permanently_with_the_fix(
    workspace: Workspace, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    flat = import_arrays(workspace, store, "flat", np.random.default_rng(0).random((40, 64), "float32"),
                         np.arange(40) % 2)
    job, _ = add_job(store, job_config("cnn2d", flat))

    assert run_in_process(workspace, store, job, 1, monkeypatch) == trainer.EXIT_PERMANENT

    error = store.query_one("SELECT error FROM jobs")["error"]
    assert "'cnn2d'" in error and "(64,)" in error and flat in error and "'mlp'" in error
    assert store.query_one("SELECT state FROM jobs")["state"] == "running"  # the scheduler ends it


@pytest.mark.parametrize(
    ("params", "message"),
    [({"filterz": 3}, "no hyperparameter 'filterz'"), ({"monitor": "val_auc"}, "needs a binary task")],
)
def test_that_bad_parameters_fail_permanently(
    workspace: Workspace, store: Store, digits: str, monkeypatch: pytest.MonkeyPatch, params: dict,
    message: str,
) -> None:
    job, _ = add_job(store, job_config("mlp", digits, **params))
    assert run_in_process(workspace, store, job, 1, monkeypatch) == trainer.EXIT_PERMANENT
    assert message in store.query_one("SELECT error FROM jobs")["error"]


# -- the pieces ---------------------------------------------------------------


def test_that_splits_are_stratified_disjoint_and_complete() -> None:
    y = np.repeat([0, 1, 2], [100, 50, 30])
    ids = np.array([f"s{i}" for i in range(len(y))])
    train, val, test = trainer.split_indices(ids, y, 0.2, 0.1, seed=1)
    assert sorted([*train, *val, *test]) == list(range(len(y)))
    assert np.bincount(y[val]).tolist() == [20, 10, 6] and np.bincount(y[test]).tolist() == [10, 5, 3]


def test_that_the_test_split_depends_only_on_the_sample_ids() -> None:
    y = np.repeat([0, 1], 60)
    ids = np.array([f"s{i}" for i in range(len(y))])
    _, val_a, test_a = trainer.split_indices(ids, y, 0.2, 0.2, seed=1)
    _, val_b, test_b = trainer.split_indices(ids, y, 0.2, 0.2, seed=2)
    assert test_a.tolist() == test_b.tolist() and val_a.tolist() != val_b.tolist()
    order = np.random.default_rng(0).permutation(len(y))
    _, _, test_shuffled = trainer.split_indices(ids[order], y[order], 0.2, 0.2, seed=1)
    assert sorted(ids[order][test_shuffled]) == sorted(ids[test_a])
    _, _, test_bigger = trainer.split_indices(ids, y, 0.2, 0.3, seed=1)
    assert set(test_a) < set(test_bigger)


def test_that_augmentation_mirrors_whole_samples_along_the_width_and_adds_noise() -> None:
    import tensorflow as tf

    from blueno.zoo import keras_parts

    x = np.arange(64 * 2 * 3, dtype="float32").reshape(64, 2, 3)  # (N, H, W)
    y = np.arange(64)
    params = {"augment_flip": True, "augment_noise": 0.0, "seed": 0, "batch_size": 64}
    augment = keras_parts.augmenter(tf, params, 2, flip_axis=2)
    (batch, labels), = trainer.train_dataset(tf, x, y, np.arange(64), params, augment).take(1)
    batch, labels = batch.numpy(), labels.numpy()
    mirrored = [bool((batch[i] == x[label][:, ::-1]).all()) for i, label in enumerate(labels)]
    unchanged = [bool((batch[i] == x[label]).all()) for i, label in enumerate(labels)]
    assert all(m != u for m, u in zip(mirrored, unchanged, strict=True))
    assert 10 < sum(mirrored) < 54 and sorted(labels) == list(range(64))

    noisy = {**params, "augment_flip": False, "augment_noise": 0.5}
    augment = keras_parts.augmenter(tf, noisy, 2, flip_axis=2)
    (batch, labels), = trainer.train_dataset(tf, x, y, np.arange(64), noisy, augment).take(1)
    assert 0.3 < float(np.std(batch.numpy() - x[labels.numpy()])) < 0.7


class FakeModel:
    """Enough of a Keras model for the epoch bookkeeping: saves a file, has a learning rate."""

    def __init__(self) -> None:
        self.optimizer = type("Optimizer", (), {"learning_rate": 0.1})()

    def save(self, path: Path) -> None:
        Path(path).write_text("model")


def test_that_the_epoch_book_cuts_the_lr_on_plateaus_and_stops_early(
    workspace: Workspace, store: Store
) -> None:
    job_id, run = add_job(store, job_config("mlp", "none@0"))
    params = {"monitor": "val_loss", "epochs": 10, "early_stopping": 3, "reduce_lr_patience": 2,
              "batch_size": 32}
    checkpoints = trainer.Checkpoints(workspace.run_dir(run))
    state = trainer.TrainState(lr=0.1)
    path = workspace.logs_dir / "book.events.jsonl"
    writer = events.EventWriter(events.FileSink(path))
    book = trainer.EpochBook(writer, checkpoints, state, params, 70)
    model = FakeModel()

    book.epoch_begin(0)
    for batch, running_mean in enumerate([1.0, 1.5, (32 * 1 + 32 * 2 + 6 * 3) / 70]):
        book.batch_end(batch, running_mean)
    stops = []
    for epoch, val_loss in enumerate([1.0, 0.8, 0.9, 0.85, 0.81]):
        book.epoch_begin(epoch)
        stops.append(book.epoch_end(epoch, {"loss": 1.0, "val_loss": val_loss}, model))
    writer.close()
    ingest.settle(store, events.FileSource(path), job_id, 1, run)

    assert metrics.history(store, run, "batch_loss")[1] == pytest.approx([1.0, 2.0, 3.0])
    assert stops == [False, False, False, False, True]
    assert (state.best_epoch, state.best, state.epoch) == (2, 0.8, 5)
    assert metrics.history(store, run, "lr")[1].tolist() == [0.1, 0.1, 0.1, 0.1, 0.05]
    assert model.optimizer.learning_rate == 0.05
    saved = json.loads(checkpoints.state_path.read_text())
    assert saved["epoch"] == 5 and saved["best_file"] == "epoch-00002.keras" and saved["stopped_early"]
    assert sorted(p.name for p in checkpoints.folder.iterdir()) == [
        "epoch-00002.keras", "epoch-00005.keras", "state.json"]
    assert store.query_one("SELECT epoch FROM jobs")["epoch"] == 5
    assert ingest.resume_checkpoint(store, job_id) == str(checkpoints.state_path)


# -- blueno runs ----------------------------------------------------------------


def finished_run(store: Store, model: str, state: str, best: dict[str, float]) -> int:
    job, run = add_job(store, job_config(model, "digits@abc", epochs=3), state=state)
    with store.write() as conn:
        conn.execute(
            "UPDATE runs SET epochs_done = 3, best_epoch = 2, monitor = 'val_loss', best = ?, final = ?, "
            "evaluation = ?, model_path = ?, started = 100, ended = 160 WHERE id = ?",
            (dumps(best), dumps(best), dumps({"split": {"test": 5}, "test": {"accuracy": 0.9, "n": 5, "n_wrong": 1}}),
             f"models/run-{run}/model.keras", run),
        )
        conn.execute("UPDATE jobs SET epochs = 3 WHERE id = ?", (job,))
    with metrics.MetricsRecorder(store, run) as recorder:
        recorder.log("val_loss", 3, 0.5)
    return run


def test_that_runs_ls_lists_and_filters_runs(
    workspace: Workspace, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    from blueno.cli import main

    done = finished_run(store, "mlp", "succeeded", {"val_loss": 0.25})
    failed = finished_run(store, "cnn2d", "failed", {"val_loss": 0.75})

    assert main(["--home", str(workspace.root), "runs", "ls", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in listed] == [failed, done]
    assert listed[1]["state"] == "succeeded" and listed[1]["best"] == {"val_loss": 0.25}
    assert listed[1]["duration"] == 60

    assert main(["--home", str(workspace.root), "runs", "ls", "--state", "failed"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["run", "job", "exp", "state"]
    assert len(lines) == 2 and lines[1].split()[0] == str(failed) and "0.75" in lines[1]


def test_that_runs_show_gives_everything_about_one_run(
    workspace: Workspace, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    from blueno.cli import main

    run = finished_run(store, "mlp", "succeeded", {"val_loss": 0.25, "val_accuracy": 0.9})

    assert main(["--home", str(workspace.root), "runs", "show", str(run), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["params"] == {"epochs": 3} and shown["dataset"] == "digits@abc"
    assert shown["model_path"] == str(workspace.run_dir(run) / "model.keras")
    assert shown["latest_metrics"] == {"val_loss": 0.5} and shown["evaluation"]["test"]["accuracy"] == 0.9

    assert main(["--home", str(workspace.root), "runs", "show", str(run)]) == 0
    text = capsys.readouterr().out
    assert "val_loss 0.25 at epoch 2" in text and "held-out TEST split (test figures): 5 samples, 1 wrong" in text

    assert main(["--home", str(workspace.root), "runs", "show", "999"]) == 2
    assert "no run 999" in capsys.readouterr().err


def test_that_tensorboard_event_files_are_written_beside_the_log_when_the_setting_is_on(
    workspace: Workspace, store: Store, threes_and_eights: str
) -> None:
    from blueno.settings_check import settings_problems

    assert settings_problems({"tensorboard": {"enabled": "yes"}}) == ["[tensorboard] enabled must be true or false"]
    workspace.settings_path.write_text("[tensorboard]\nenabled = true\n")
    job, run = add_job(store, job_config("mlp", threes_and_eights, epochs=2, batch_size=32, hidden_units=4))

    code, out = finish(start_trainer(workspace, store, job, 1))
    assert code == trainer.EXIT_OK, out
    board = workspace.logs_dir / f"run-{run}"
    for split in ("train", "validation"):  # `tensorboard --logdir logs/` shows run-N/train and run-N/validation
        files = list((board / split).glob("events.out.tfevents.*"))
        assert len(files) == 1, (split, list(board.rglob("*")))
        assert b"epoch_loss" in files[0].read_bytes()  # the scalar's tag, in the TFRecord as written


def test_that_a_settings_file_broken_during_a_grid_turns_optional_features_off_not_the_training(
    workspace: Workspace, store: Store, threes_and_eights: str
) -> None:
    job, run = add_job(store, job_config("mlp", threes_and_eights, epochs=1, batch_size=32, hidden_units=4))
    workspace.settings_path.write_text("[gcs\nbucket = 'gs://half-saved'\n")  # a save interrupted mid-write

    code, out = finish(start_trainer(workspace, store, job, 1))
    assert code == trainer.EXIT_OK, out
    assert "tensorboard.enabled ignored" in out and "gcs.bucket ignored" in out
    record(workspace, store, job, 1)  # what the scheduler does with the trainer's events
    assert store.query_one("SELECT state FROM jobs WHERE id = ?", (job,))[0] == "succeeded"
    assert not (workspace.logs_dir / f"run-{run}" / "train").exists()
