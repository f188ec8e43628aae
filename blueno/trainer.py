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

At the end the best epoch's model is published as ``models/run-N/model.keras``,
loaded back from that file and evaluated on the validation split
(:mod:`blueno.evaluation`), so the reported figures are the saved file's.  The
held-out test split is never looked at here: :func:`predict_run` evaluates it
only when asked (``blueno runs test``).  The Keras-free bookkeeping (job row,
split, checkpoint, epoch book) lives in :mod:`blueno.training_state`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blueno import BluenoError, __version__, zoo
from blueno.evaluation import Prediction, evaluate, predictions_path
from blueno.metrics import MetricsRecorder, binary_scores
from blueno.queue import EXIT_OK, EXIT_PERMANENT, EXIT_STALE
from blueno.store import Store, add_outbox, dumps, now
from blueno.training_state import (  # noqa: F401  (re-exported: the trainer's public names)
    CHECKPOINT_DIR,
    DEFAULT_SPLIT,
    LR_FACTOR,
    MODEL_FILE,
    STATE_FILE,
    Checkpoints,
    Data,
    EpochBook,
    Job,
    StaleAttempt,
    TrainState,
    format_logs,
    load_data,
    read_job,
    split_indices,
    update_job,
)
from blueno.workspace import Workspace

EXIT_STOPPED = 128 + signal.SIGTERM
EXIT_CRASH = 1

CPU_THREADS_ENV = "BLUENO_CPU_THREADS"  # set by the scheduler for CPU slots


class Stopped(BaseException):
    """SIGTERM arrived.  A BaseException, like KeyboardInterrupt, so nothing swallows it."""


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


_TF_CONFIGURED: list[bool] = []


def _configure_tensorflow(tf: Any) -> None:
    """Share CPU cores between CPU slots; let GPU memory grow instead of grabbing it all (once per process)."""
    if _TF_CONFIGURED:
        return
    _TF_CONFIGURED.append(True)
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


READERS = max(4, os.cpu_count() or 1)  # batches read at once (pread and decoding release the GIL)
PREFETCH_BATCHES = 2  # batches ready ahead of the model
# So the input pipeline holds at most READERS + PREFETCH_BATCHES + 1 float32 batches at a time.


class Rows:
    """Samples ``indices`` of ``x`` as float32, read when sliced: a split that is never held whole."""

    def __init__(self, x: Any, indices: np.ndarray) -> None:
        self.x, self.indices = x, np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, positions: Any) -> np.ndarray:
        return np.asarray(self.x[self.indices[positions]], dtype=np.float32)


def stream(tf: Any, x: Any, y: np.ndarray, indices: np.ndarray, batch_size: int, seed: int | None = None) -> Any:
    """Batches of samples ``indices`` read from disk by parallel ``tf.data`` workers (shuffled with ``seed``).

    Only positions travel through the pipeline; each batch's samples are read
    (``x`` is array-like: a file read row by row, decoded images, ...) in a
    worker thread when the batch is due, so memory holds the batches in
    flight, never the dataset.  ``deterministic`` keeps the batch order, so a
    seed gives the same training whatever the parallelism.
    """
    indices, labels = np.asarray(indices, dtype=np.int64), np.asarray(y[indices], dtype=np.int64)
    dataset = tf.data.Dataset.range(len(indices))
    if seed is not None:
        dataset = dataset.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)

    def read(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(x[indices[positions]]), labels[positions]

    def load(positions: Any) -> tuple[Any, Any]:  # read as stored (uint8 images: a quarter of float32)
        batch, truth = tf.numpy_function(read, [positions], (tf.as_dtype(x.dtype), tf.int64), stateful=False)
        batch.set_shape((None, *x.shape[1:]))
        truth.set_shape((None,))
        return tf.cast(batch, tf.float32), truth

    return dataset.batch(batch_size).map(load, num_parallel_calls=READERS, deterministic=True)


def train_dataset(
    tf: Any, x: Any, y: np.ndarray, indices: np.ndarray, params: dict[str, Any], flip_axis: int
) -> Any:
    """Shuffled batches of the training samples, streamed from disk, with the configured augmentation."""
    noise, flip = params["augment_noise"], params["augment_flip"]

    def augment(batch: Any, truth: Any) -> tuple[Any, Any]:
        if flip:
            per_sample = tf.concat([tf.shape(truth), tf.ones([batch.shape.rank - 1], "int32")], 0)
            coin = tf.random.uniform(per_sample)
            batch = tf.where(coin < 0.5, tf.reverse(batch, [flip_axis]), batch)
        if noise:
            batch = batch + tf.random.normal(tf.shape(batch), stddev=noise)
        return batch, truth

    dataset = stream(tf, x, y, indices, params["batch_size"], seed=params["seed"])
    if flip or noise:
        dataset = dataset.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(PREFETCH_BATCHES)


def _keras_callback(keras: Any, book: EpochBook, x_val: Any, y_val: np.ndarray, binary: bool) -> Any:
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
    try:
        import keras
        import tensorflow as tf
    except ImportError:  # every job would fail the same way: say how to install it, don't retry
        raise BluenoError(
            "TensorFlow is not installed in this Python environment: install Blueno with "
            "`pip install -e '.[cpu]'` (or '.[gpu]' on a GPU box), as `make` does"
        ) from None

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
    validation = stream(tf, data.x, data.y, data.validation, params["batch_size"]).prefetch(PREFETCH_BATCHES)
    x_val, y_val = validation.map(lambda batch, _: batch), data.y[data.validation]
    book = EpochBook(store, job, recorder, checkpoints, state, params, len(data.train))
    model.fit(
        train_dataset(tf, data.x, data.y, data.train, params, _flip_axis(spec)),
        validation_data=validation,
        epochs=params["epochs"],
        initial_epoch=state.epoch,
        shuffle=False,  # the dataset shuffles itself
        verbose=0,
        callbacks=[_keras_callback(keras, book, x_val, y_val, data.binary)],
    )
    return state, checkpoints


PREDICT_CHUNK_BATCHES = 64  # samples predicted per read: bounded memory on a dataset larger than it


def predict(model_path: Path, x: Any, batch_size: int) -> np.ndarray:
    """Class probabilities of the model *file* (loaded afresh) for samples ``x``, read chunk by chunk."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quiet in-process use (`blueno runs test`)
    import keras
    import tensorflow as tf

    _configure_tensorflow(tf)
    model = keras.models.load_model(model_path)
    chunk = batch_size * PREDICT_CHUNK_BATCHES  # a multiple of the batch: the same batches as one call
    parts = [
        np.asarray(model.predict(np.asarray(x[start : start + chunk], dtype=np.float32), batch_size=batch_size,
                                 verbose=0), dtype=np.float32)
        for start in range(0, len(x), chunk)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, model.output_shape[-1]), np.float32)


def predict_split(model_path: Path, data: Data, split: str, batch_size: int) -> Prediction:
    """The saved model's prediction on one split of ``data``."""
    indices = data.indices(split)
    if len(indices) == 0:
        raise BluenoError(
            f"the {split} split of {data.ref} is empty: the run's grid reserved none "
            "([split] test = 0.1 reserves a test split for new runs)"
        )
    x, y = Rows(data.x, indices), data.y[indices]
    return Prediction(split, data.ids[indices], y, predict(model_path, x, batch_size), indices,
                      list(data.class_names), data.ref)


def run_config(store: Store, run_id: int) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """(job config, resolved params, model path) of a finished training run."""
    row = store.query_one(
        "SELECT runs.kind, runs.params, runs.model_path, jobs.config FROM runs "
        "LEFT JOIN jobs ON jobs.id = runs.job_id WHERE runs.id = ?", (run_id,),
    )
    if row is None:
        raise BluenoError(f"there is no run {run_id}; `blueno runs ls` lists them")
    if row["kind"] != "train" or row["config"] is None:
        raise BluenoError(f"run {run_id} is an {row['kind']} run: it has no model of its own to predict with")
    return json.loads(row["config"]), json.loads(row["params"]), row["model_path"]


def predict_run(workspace: Workspace, store: Store, run_id: int, split: str) -> Prediction:
    """Reload run ``run_id``'s saved model and predict ``split``; the prediction is also saved beside it.

    The split is rebuilt exactly as in training (same dataset version,
    preprocessing and split seed); the test split depends only on sample ids.
    """
    config, params, model_path = run_config(store, run_id)
    if not model_path or not (workspace.root / model_path).is_file():
        raise BluenoError(f"run {run_id} has no saved model (it has not finished training)")
    data = load_data(workspace, store, config)
    prediction = predict_split(workspace.root / model_path, data, split, int(params.get("batch_size", 32)))
    prediction.save(predictions_path(workspace.run_dir(run_id), split))
    return prediction


# -- the job's lifecycle -----------------------------------------------------


def _relative(workspace: Workspace, path: Path) -> str:
    return str(path.relative_to(workspace.root))


def _start_run(store: Store, workspace: Workspace, job: Job, params: dict[str, Any], data: Data) -> None:
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES") or None
    with store.write() as conn:
        update_job(conn, job, "epochs = ?", (params["epochs"],))
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
    prediction = predict_split(model_path, data, "validation", params["batch_size"])
    prediction.save(predictions_path(model_path.parent, "validation"))
    t = now()
    evaluation = {
        "split": {"train": len(data.train), "validation": len(data.validation), "test": len(data.test)},
        "validation": {**evaluate(prediction), "model": _relative(workspace, model_path),
                       "epoch": state.best_epoch, "evaluated": t},
    }
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a stop now would only lose finished work
    with store.write() as conn:
        update_job(conn, job, "state = 'succeeded', epoch = ?, error = NULL, ended = ?", (state.epoch, t))
        conn.execute(
            "UPDATE runs SET epochs_done = ?, best_epoch = ?, monitor = ?, final = ?, best = ?, "
            "evaluation = ?, model_path = ?, ended = ? WHERE id = ?",
            (state.epoch, state.best_epoch, params["monitor"], dumps(state.last_logs), dumps(state.best_logs),
             dumps(evaluation), _relative(workspace, model_path), t, job.run_id),
        )
        recorder.flush()
        add_outbox(conn, "run", job.run_id)
    checkpoints.remove()
    figures = {k: evaluation["validation"].get(k) for k in ("accuracy", "loss", "auc", "kappa")}
    print(
        f"done: best {params['monitor']} {state.best:.4g} at epoch {state.best_epoch} of {state.epoch}; "
        f"saved {model_path}; the saved model on validation: {format_logs(figures)}",
        flush=True,
    )


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
    _upload_model(workspace, store, job.run_id)


def _upload_model(workspace: Workspace, store: Store, run_id: int) -> None:
    """Copy the saved model to Cloud Storage when a bucket is configured; the run has succeeded either way."""
    if not workspace.settings().get("gcs", {}).get("bucket"):
        return
    from blueno.datasets import remote

    try:
        url = remote.upload_run_model(workspace, store, run_id)
    except BluenoError as exc:  # the result is committed: say why the copy is missing, don't fail the run
        print(f"model not uploaded to Cloud Storage: {exc}", flush=True)
    else:
        print(f"model uploaded, checksum verified: {url}", flush=True)


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
