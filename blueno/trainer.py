"""What runs inside a training subprocess: ``python -m blueno.trainer JOB_ID ATTEMPT``.

The scheduler starts one per slot (see ``docs/ARCHITECTURE.md``).  The trainer
loads the job's dataset, builds the model from the zoo, trains it, and records
everything in the workspace database.  Exit codes, which the scheduler acts on:

* 0 — success: results, the outbox row and ``state='succeeded'`` were written
  in one transaction guarded by the attempt;
* 2 — permanent failure (bad configuration or data): ``jobs.error`` says what
  and how to fix it; retrying would fail the same way;
* 3 — stale attempt: the job is no longer this attempt's; nothing was written;
* 143 — stopped by SIGTERM (cancel or shutdown); the last epoch checkpoint is
  kept and a retried attempt resumes from it;
* anything else — a crash (traceback in the log); the scheduler may retry.

Every epoch writes a checkpoint (model + a small JSON state) before it is
reported, so the database never claims progress that cannot be resumed.
TensorFlow is imported only once the job is known to be current and valid.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import signal
import socket
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from blueno import BluenoError, __version__, zoo
from blueno.metrics import MetricsRecorder, binary_scores
from blueno.queue import EXIT_OK, EXIT_PERMANENT, EXIT_STALE
from blueno.store import Store, add_outbox, dumps, now
from blueno.workspace import Workspace

EXIT_STOPPED = 128 + signal.SIGTERM
EXIT_CRASH = 1

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.json"
MODEL_FILE = "model.keras"
DEFAULT_SPLIT = {"validation": 0.2, "test": 0.0, "seed": 0}
LR_FACTOR = 0.5  # reduce-on-plateau multiplies the learning rate by this
CPU_THREADS_ENV = "BLUENO_CPU_THREADS"  # set by the scheduler for CPU slots


class StaleAttempt(Exception):
    """The job was reclaimed by another attempt (or ended) while this one ran."""


class Stopped(BaseException):
    """SIGTERM arrived.  A BaseException, like KeyboardInterrupt, so nothing swallows it."""


# -- the job -----------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    id: int
    attempt: int
    run_id: int
    config: dict[str, Any]


def read_job(store: Store, job_id: int, attempt: int) -> Job | None:
    """The job if this attempt still owns it (running, same attempt), else None."""
    row = store.query_one(
        "SELECT jobs.state, jobs.attempt, jobs.config, runs.id AS run_id FROM jobs "
        "LEFT JOIN runs ON runs.job_id = jobs.id WHERE jobs.id = ?",
        (job_id,),
    )
    if row is None or row["state"] != "running" or row["attempt"] != attempt:
        return None
    if row["run_id"] is None:
        raise BluenoError(f"job {job_id} has no row in runs; it was not enqueued through the queue")
    return Job(job_id, attempt, row["run_id"], json.loads(row["config"]))


def _update_job(conn: Any, job: Job, assignments: str, values: tuple[Any, ...]) -> None:
    """Update this attempt's job row inside a write transaction.

    Raises StaleAttempt, which rolls the whole transaction back, when the job
    is no longer running under this attempt: a late write changes nothing.
    """
    cursor = conn.execute(
        f"UPDATE jobs SET {assignments} WHERE id = ? AND attempt = ? AND state = 'running'",
        (*values, job.id, job.attempt),
    )
    if cursor.rowcount == 0:
        raise StaleAttempt


# -- data --------------------------------------------------------------------


@dataclass
class Data:
    ref: str  # the exact dataset version trained on
    x: np.ndarray
    y: np.ndarray  # int64 class indices
    class_names: list[str]
    train: np.ndarray  # sample indices
    validation: np.ndarray
    test: np.ndarray

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def binary(self) -> bool:
        return self.n_classes == 2

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def part(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.x[indices], dtype=np.float32), self.y[indices]


def _id_order(ids: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random order of samples that depends only on their ids."""
    digests = b"".join(hashlib.blake2b(str(i).encode(), digest_size=8).digest() for i in ids)
    return np.argsort(np.frombuffer(digests, dtype=">u8"), kind="stable")


def split_indices(
    ids: np.ndarray, y: np.ndarray, validation: float, test: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, validation, test) indices, stratified by class.

    The test split is chosen by a hash of each sample's id, not by the seed or
    the order of the samples: every run on a dataset (and on versions derived
    from it that keep the ids) sees the same test samples, and a larger test
    fraction only adds samples.  Validation is drawn from the rest with ``seed``.
    """
    rng = np.random.default_rng(seed)
    hashed = _id_order(ids)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for label in np.unique(y):
        members = hashed[y[hashed] == label]
        n_test = round(test * len(members))
        n_val = round(validation * len(members))
        rest = rng.permutation(members[n_test:])
        for target, chosen in zip(parts, (rest[n_val:], rest[:n_val], members[:n_test]), strict=True):
            target.append(chosen)
    return tuple(np.sort(np.concatenate(p)) for p in parts)  # type: ignore[return-value]


def load_data(workspace: Workspace, store: Store, config: dict[str, Any]) -> Data:
    """The job's dataset, derived through its preprocessing chain, split as configured."""
    from blueno import datasets

    version = datasets.prepare(workspace, store, config["dataset"], config.get("preprocessing") or [])
    x, y, ids, class_names = datasets.load_arrays(workspace, version)
    split = {**DEFAULT_SPLIT, **(config.get("split") or {})}
    validation, test = float(split["validation"]), float(split["test"])
    if not 0 < validation < 1 or not 0 <= test < 1 or validation + test >= 1:
        raise BluenoError(
            f"split validation={validation:g}, test={test:g}: the best epoch is chosen on the validation "
            "split, so use 0 < validation, 0 <= test and validation + test < 1 (e.g. 0.2 and 0.1)"
        )
    if len(class_names) < 2:
        raise BluenoError(f"{version.ref} has {len(class_names)} class; a classifier needs at least 2")
    train, val, tst = split_indices(ids, y, validation, test, int(split["seed"]))
    if len(train) == 0 or len(val) == 0:
        raise BluenoError(
            f"{version.ref} has {len(y)} samples: too few for validation={validation:g}, test={test:g}"
        )
    return Data(version.ref, x, np.asarray(y, dtype=np.int64), list(class_names), train, val, tst)


# -- parameters --------------------------------------------------------------


def check_config(spec: zoo.ModelSpec, params: dict[str, Any], data: Data) -> None:
    """Refuse combinations of model, parameters and data that cannot train, saying why."""
    zoo.check_input(spec, data.sample_shape, data.ref)
    if params["monitor"] == "val_auc" and not data.binary:
        raise BluenoError(
            f"monitor 'val_auc' needs a binary task, but {data.ref} has {data.n_classes} classes: "
            "monitor val_loss or val_accuracy instead"
        )
    if params["augment_flip"] and spec.input_kind != "volume" and len(data.sample_shape) < 2:
        raise BluenoError(
            f"augment_flip flips images or volumes, but {data.ref} has flat samples shaped "
            f"{data.sample_shape}: turn augment_flip off"
        )


def _flip_axis(spec: zoo.ModelSpec) -> int:
    """The width axis of a batch: (N, H, W[, C]) for images, (N, D, H, W[, C]) for volumes."""
    return 3 if spec.input_kind == "volume" else 2


def _minimize(monitor: str) -> bool:
    return monitor.endswith("loss")


# -- the checkpoint ----------------------------------------------------------


@dataclass
class TrainState:
    """What a resumed attempt needs besides the model; saved as JSON next to the epoch's model file."""

    epoch: int = 0  # epochs completed
    lr: float = 0.0
    best: float | None = None
    best_epoch: int | None = None
    best_logs: dict[str, float | None] = field(default_factory=dict)
    last_logs: dict[str, float | None] = field(default_factory=dict)
    since_best: int = 0  # epochs without improvement: early stopping
    plateau: int = 0  # epochs without improvement since the last learning-rate cut
    stopped_early: bool = False
    last_file: str | None = None
    best_file: str | None = None


def _fsync(path: Path) -> None:
    """Put a file's content on disk before a rename makes it the one to trust."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Checkpoints:
    """Epoch model files plus ``state.json``, the commit point that names the files to trust.

    A model file is complete before the state that references it is renamed
    into place, so a crash at any moment leaves a consistent checkpoint.
    """

    def __init__(self, run_dir: Path) -> None:
        self.folder = run_dir / CHECKPOINT_DIR
        self.state_path = self.folder / STATE_FILE

    def load(self) -> TrainState | None:
        try:
            state = TrainState(**json.loads(self.state_path.read_text()))
        except FileNotFoundError:
            return None
        if state.last_file is None or not (self.folder / state.last_file).is_file():
            return None
        return state

    def model_path(self, name: str) -> Path:
        return self.folder / name

    def save(self, model: Any, state: TrainState, improved: bool) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{state.epoch:05d}.keras"
        model.save(self.folder / name)
        _fsync(self.folder / name)
        state.last_file = name
        if improved:
            state.best_file = name
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state), indent=1))
        _fsync(tmp)
        os.replace(tmp, self.state_path)
        keep = {STATE_FILE, state.last_file, state.best_file}
        for path in self.folder.iterdir():
            if path.name not in keep:
                path.unlink(missing_ok=True)

    def publish_best(self, state: TrainState, target: Path) -> None:
        """Copy the best epoch's model to ``target`` atomically."""
        tmp = target.with_name(target.name + ".tmp")
        shutil.copyfile(self.folder / str(state.best_file), tmp)
        os.replace(tmp, target)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


# -- the training loop -------------------------------------------------------


def _json_safe(logs: dict[str, Any]) -> dict[str, float | None]:
    """Floats for JSON columns: NaN and infinities (not JSON) become null."""
    out: dict[str, float | None] = {}
    for key, value in logs.items():
        value = float(value)
        out[key] = value if math.isfinite(value) else None
    return out


def _format_logs(logs: dict[str, float | None]) -> str:
    return "  ".join(f"{k} {'-' if v is None else f'{v:.4g}'}" for k, v in logs.items())


class EpochBook:
    """The per-batch and per-epoch bookkeeping of one training, free of Keras.

    Records metrics, keeps the best epoch, decides early stopping and
    learning-rate cuts, writes the checkpoint and the job's progress.
    """

    def __init__(
        self, store: Store, job: Job, recorder: MetricsRecorder, checkpoints: Checkpoints,
        state: TrainState, params: dict[str, Any], n_train: int,
    ) -> None:
        self.store, self.job, self.recorder, self.checkpoints = store, job, recorder, checkpoints
        self.state, self.params, self.n_train = state, params, n_train
        self.batch_size = params["batch_size"]
        self.steps_per_epoch = math.ceil(n_train / self.batch_size)
        self._epoch = state.epoch
        self._epoch_loss_total = 0.0
        self._epoch_started = time.monotonic()

    def epoch_begin(self, epoch: int) -> None:
        self._epoch, self._epoch_loss_total, self._epoch_started = epoch, 0.0, time.monotonic()

    def batch_end(self, batch: int, running_loss: float) -> None:
        """Record the batch's own loss, recovered from Keras' sample-weighted running mean."""
        seen = min((batch + 1) * self.batch_size, self.n_train)
        size = seen - batch * self.batch_size
        total = running_loss * seen
        step = self._epoch * self.steps_per_epoch + batch + 1
        self.recorder.log("batch_loss", step, (total - self._epoch_loss_total) / size)
        self._epoch_loss_total = total

    def epoch_end(self, epoch: int, logs: dict[str, float], model: Any) -> bool:
        """Book a finished epoch; return True to stop training (early stopping)."""
        state, params = self.state, self.params
        logs = _json_safe({**logs, "lr": state.lr})
        state.epoch, state.last_logs = epoch + 1, logs
        value = logs.get(params["monitor"])
        improved = value is not None and (
            state.best is None or (value < state.best if _minimize(params["monitor"]) else value > state.best)
        )
        if improved:
            state.best, state.best_epoch, state.best_logs = value, state.epoch, logs
            state.since_best = state.plateau = 0
        else:
            state.since_best += 1
            state.plateau += 1
        stop = bool(params["early_stopping"]) and state.since_best >= params["early_stopping"]
        state.stopped_early = stop
        cut = bool(params["reduce_lr_patience"]) and state.plateau >= params["reduce_lr_patience"]
        if cut and not stop:
            state.lr *= LR_FACTOR
            state.plateau = 0
            model.optimizer.learning_rate = state.lr
        self.checkpoints.save(model, state, improved)
        for key, val in logs.items():
            self.recorder.log(key, state.epoch, math.nan if val is None else val)
        with self.store.write() as conn:
            _update_job(conn, self.job, "epoch = ?", (state.epoch,))
            conn.execute("UPDATE runs SET epochs_done = ? WHERE id = ?", (state.epoch, self.job.run_id))
            self.recorder.flush()
        notes = [f"{time.monotonic() - self._epoch_started:.1f}s"]
        if improved:
            notes.append("best")
        if cut and not stop:
            notes.append(f"lr -> {state.lr:.3g}")
        if stop:
            notes.append(f"early stop: no better {params['monitor']} for {state.since_best} epochs")
        print(f"epoch {state.epoch}/{params['epochs']}  {_format_logs(logs)}  ({', '.join(notes)})",
              flush=True)
        return stop


def _configure_tensorflow(tf: Any) -> None:
    """Share CPU cores between CPU slots; let GPU memory grow instead of grabbing it all."""
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    threads = os.environ.get(CPU_THREADS_ENV)
    if threads and not gpus:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(min(2, int(threads)))


def _optimizer(keras: Any, name: str, learning_rate: float) -> Any:
    classes = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
               "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}
    return classes[name](learning_rate=learning_rate)


def train_dataset(tf: Any, x: np.ndarray, y: np.ndarray, params: dict[str, Any], flip_axis: int) -> Any:
    """Shuffled batches (by index, so the samples are held once) with the configured augmentation."""
    x_all, y_all = tf.constant(x), tf.constant(y)
    noise, flip = params["augment_noise"], params["augment_flip"]

    def gather(indices: Any) -> tuple[Any, Any]:
        batch = tf.gather(x_all, indices)
        if flip:
            per_sample = tf.concat([tf.shape(indices), tf.ones([batch.shape.rank - 1], "int32")], 0)
            coin = tf.random.uniform(per_sample)
            batch = tf.where(coin < 0.5, tf.reverse(batch, [flip_axis]), batch)
        if noise:
            batch = batch + tf.random.normal(tf.shape(batch), stddev=noise)
        return batch, tf.gather(y_all, indices)

    return (
        tf.data.Dataset.range(len(x))
        .shuffle(len(x), seed=params["seed"], reshuffle_each_iteration=True)
        .batch(params["batch_size"])
        .map(gather, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def _keras_callback(keras: Any, book: EpochBook, x_val: np.ndarray, y_val: np.ndarray, binary: bool) -> Any:
    """Forwards Keras' events to the book, adding the binary validation scores to the epoch logs."""

    class Bridge(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            book.epoch_begin(epoch)

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            book.batch_end(batch, float((logs or {})["loss"]))

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            logs = dict(logs or {})
            if binary:
                probs = self.model.predict(x_val, batch_size=book.batch_size, verbose=0)
                logs.update({f"val_{k}": v for k, v in binary_scores(y_val, probs[:, 1]).items()})
            if book.epoch_end(epoch, _ordered(logs), self.model):
                self.model.stop_training = True

    return Bridge()


_KEY_ORDER = ("loss", "accuracy", "val_loss", "val_accuracy", "val_auc", "val_sensitivity", "val_specificity")


def _ordered(logs: dict[str, Any]) -> dict[str, Any]:
    """Logs in reading order: training, then validation, then anything else."""
    rank = {key: i for i, key in enumerate(_KEY_ORDER)}
    return dict(sorted(logs.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0])))


def build_model(spec: zoo.ModelSpec, data: Data, params: dict[str, Any]) -> Any:
    """The zoo's model for this data; a model that cannot be built is a configuration error."""
    try:
        model = spec.build(data.sample_shape, data.n_classes, params)
    except BluenoError:
        raise
    except (ValueError, TypeError) as exc:
        raise BluenoError(
            f"model {spec.name!r} cannot be built for samples shaped {data.sample_shape} "
            f"with {data.n_classes} classes: {exc}"
        ) from exc
    if tuple(model.output_shape) != (None, data.n_classes):
        raise BluenoError(
            f"model {spec.name!r} outputs shape {tuple(model.output_shape)}, but the trainer needs "
            f"class probabilities shaped (None, {data.n_classes}): end the model with "
            f"Dense(n_classes, activation='softmax')"
        )
    return model


def fit(
    workspace: Workspace, store: Store, job: Job, spec: zoo.ModelSpec, params: dict[str, Any], data: Data,
    recorder: MetricsRecorder,
) -> tuple[TrainState, Checkpoints]:
    """Train from scratch or from the last checkpoint, up to ``epochs`` or an early stop."""
    import keras
    import tensorflow as tf

    _configure_tensorflow(tf)
    keras.utils.set_random_seed(params["seed"])
    checkpoints = Checkpoints(workspace.run_dir(job.run_id))
    state = checkpoints.load()
    if state is None:
        state = TrainState(lr=params["learning_rate"])
        model = build_model(spec, data, params)
        model.compile(optimizer=_optimizer(keras, params["optimizer"], params["learning_rate"]),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    else:
        model = keras.models.load_model(checkpoints.model_path(str(state.last_file)))
        print(f"resuming after epoch {state.epoch} from {checkpoints.folder}", flush=True)
    if state.epoch >= params["epochs"] or state.stopped_early:
        return state, checkpoints
    x_train, y_train = data.part(data.train)
    x_val, y_val = data.part(data.validation)
    book = EpochBook(store, job, recorder, checkpoints, state, params, len(x_train))
    model.fit(
        train_dataset(tf, x_train, y_train, params, _flip_axis(spec)),
        validation_data=(x_val, y_val),
        validation_batch_size=params["batch_size"],
        epochs=params["epochs"],
        initial_epoch=state.epoch,
        shuffle=False,  # the dataset shuffles itself
        verbose=0,
        callbacks=[_keras_callback(keras, book, x_val, y_val, data.binary)],
    )
    return state, checkpoints


def evaluate(model_path: Path, data: Data, batch_size: int) -> dict[str, Any]:
    """Split sizes and, when there is a test split, the saved model's scores on it."""
    evaluation: dict[str, Any] = {
        "split": {"train": len(data.train), "validation": len(data.validation), "test": len(data.test)}
    }
    if len(data.test) == 0:
        return evaluation
    import keras

    x_test, y_test = data.part(data.test)
    probs = keras.models.load_model(model_path).predict(x_test, batch_size=batch_size, verbose=0)
    p_true = np.clip(probs[np.arange(len(y_test)), y_test], 1e-7, 1.0)  # Keras' epsilon
    scores = {"loss": float(-np.log(p_true).mean()), "accuracy": float((probs.argmax(1) == y_test).mean())}
    if data.binary:
        scores.update(binary_scores(y_test, probs[:, 1]))
    evaluation.update(_json_safe({f"test_{k}": v for k, v in scores.items()}))
    return evaluation


# -- the job's lifecycle -----------------------------------------------------


def _relative(workspace: Workspace, path: Path) -> str:
    return str(path.relative_to(workspace.root))


def _start_run(store: Store, workspace: Workspace, job: Job, params: dict[str, Any], data: Data) -> None:
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES") or None
    with store.write() as conn:
        _update_job(conn, job, "epochs = ?", (params["epochs"],))
        conn.execute(
            "UPDATE runs SET dataset = ?, params = ?, started = COALESCE(started, ?), host = ?, gpu = ?, "
            "log_path = ?, blueno_version = ?, git_commit = ? WHERE id = ?",
            (data.ref, dumps(params), now(), socket.gethostname(), gpu,
             _relative(workspace, workspace.run_log(job.run_id)), __version__, workspace.git_commit(),
             job.run_id),
        )


def _finish(
    store: Store, workspace: Workspace, job: Job, params: dict[str, Any], data: Data, state: TrainState,
    checkpoints: Checkpoints, recorder: MetricsRecorder,
) -> None:
    """Publish the best model, evaluate it, then commit results, outbox and success together."""
    if state.best_file is None:
        raise BluenoError(
            f"no epoch produced a finite {params['monitor']}: training diverged (lower the learning_rate) "
            "or the validation split cannot measure it (monitor val_loss)"
        )
    model_path = workspace.run_dir(job.run_id) / MODEL_FILE
    checkpoints.publish_best(state, model_path)
    evaluation = evaluate(model_path, data, params["batch_size"])
    t = now()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a stop now would only lose finished work
    with store.write() as conn:
        _update_job(conn, job, "state = 'succeeded', epoch = ?, error = NULL, ended = ?", (state.epoch, t))
        conn.execute(
            "UPDATE runs SET epochs_done = ?, best_epoch = ?, monitor = ?, final = ?, best = ?, "
            "evaluation = ?, model_path = ?, ended = ? WHERE id = ?",
            (state.epoch, state.best_epoch, params["monitor"], dumps(state.last_logs), dumps(state.best_logs),
             dumps(evaluation), _relative(workspace, model_path), t, job.run_id),
        )
        recorder.flush()
        add_outbox(conn, "run", job.run_id)
    checkpoints.remove()
    print(
        f"done: best {params['monitor']} {state.best:.4g} at epoch {state.best_epoch} of {state.epoch}; "
        f"saved {model_path}" + (f"; {_format_logs(_test_scores(evaluation))}" if len(data.test) else ""),
        flush=True,
    )


def _test_scores(evaluation: dict[str, Any]) -> dict[str, float | None]:
    return {k: v for k, v in evaluation.items() if k.startswith("test_")}


def train(workspace: Workspace, store: Store, job: Job, recorder: MetricsRecorder) -> None:
    """Everything between a valid claim and a recorded result."""
    config = job.config
    zoo.load(workspace)
    spec = zoo.get(config["model"])
    params = zoo.resolve_params(spec, config.get("params") or {})
    data = load_data(workspace, store, config)
    _start_run(store, workspace, job, params, data)
    check_config(spec, params, data)
    print(
        f"job {job.id} attempt {job.attempt}: run {job.run_id}, model {spec.name} on {data.ref} "
        f"(samples {data.sample_shape}, {data.n_classes} classes; {len(data.train)} train, "
        f"{len(data.validation)} validation, {len(data.test)} test)\nparams {dumps(params)}",
        flush=True,
    )
    state, checkpoints = fit(workspace, store, job, spec, params, data, recorder)
    _finish(store, workspace, job, params, data, state, checkpoints, recorder)


def _record_error(store: Store, job_id: int, attempt: int, message: str) -> int:
    """Write a permanent failure's reason for this attempt; EXIT_STALE when the job moved on."""
    print(f"error: {message}", flush=True)
    with store.write() as conn:
        written = conn.execute(
            "UPDATE jobs SET error = ? WHERE id = ? AND attempt = ? AND state = 'running'",
            (message, job_id, attempt),
        ).rowcount
    return EXIT_PERMANENT if written else EXIT_STALE


def _flush_quietly(recorder: MetricsRecorder) -> None:
    """Keep the points measured before a failure, if the database takes them; never mask the failure."""
    try:
        recorder.flush()
    except Exception:  # e.g. the disk that just failed the training is still full
        pass


def _raise_stopped(signum: int, frame: object) -> None:
    raise Stopped


def run_job(workspace: Workspace, store: Store, job_id: int, attempt: int) -> int:
    """Train one claimed job attempt; return the exit code the scheduler acts on."""
    try:
        job = read_job(store, job_id, attempt)
    except BluenoError as exc:
        return _record_error(store, job_id, attempt, str(exc))
    if job is None:
        print(f"job {job_id} attempt {attempt} is not running under this attempt: nothing to do", flush=True)
        return EXIT_STALE
    previous_handler = signal.signal(signal.SIGTERM, _raise_stopped)
    recorder = MetricsRecorder(store, job.run_id)
    try:
        train(workspace, store, job, recorder)
    except StaleAttempt:
        print(f"job {job_id} was reclaimed or ended while attempt {attempt} ran: stopping", flush=True)
        return EXIT_STALE
    except Stopped:
        _flush_quietly(recorder)
        print("stopped by SIGTERM; the last epoch checkpoint is kept for a resume", flush=True)
        return EXIT_STOPPED
    except BluenoError as exc:
        _flush_quietly(recorder)
        return _record_error(store, job.id, job.attempt, str(exc))
    except Exception:
        _flush_quietly(recorder)
        traceback.print_exc()  # its last line becomes the job's error (the scheduler reads the log's tail)
        return EXIT_CRASH
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m blueno.trainer", description="Train one claimed job (started by the scheduler)."
    )
    parser.add_argument("job_id", type=int)
    parser.add_argument("attempt", type=int)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info and warning lines
    workspace = Workspace.locate()
    with workspace.open_store() as store:
        return run_job(workspace, store, args.job_id, args.attempt)


if __name__ == "__main__":
    sys.exit(main())
