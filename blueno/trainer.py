"""What runs inside a training subprocess: ``python -m blueno.trainer JOB_ID ATTEMPT``.

The scheduler starts one per slot (see ``docs/ARCHITECTURE.md``) and hands it
its job spec (``$BLUENO_JOB``: the config, the prepared dataset version, the run
folder).  The trainer loads the data, builds the model from the zoo, trains it
and *reports* what happens as events (``$BLUENO_EVENTS``, see
``docs/trainer-protocol.md``); it never opens the workspace database: the
scheduler ingests the events and is the only writer of the job's progress.
Exit codes, which the scheduler acts on:

* 0 — success: the ``result`` event (figures, evaluation, model path) is on
  disk; the scheduler commits it with the outbox row and ``state='succeeded'``
  in one transaction guarded by the attempt;
* 2 — permanent failure (bad configuration or data): the ``error`` event says
  what and how to fix it; retrying would fail the same way;
* 143 — stopped by SIGTERM (cancel or shutdown); the last epoch checkpoint is
  kept and a retried attempt resumes from it;
* anything else — a crash (traceback in the log); the scheduler may retry.

Every epoch writes a checkpoint (model + a small JSON state) before its
``epoch`` event is sent, so the database never claims progress that cannot be
resumed.  TensorFlow is imported only once the job is known to be valid.

At the end the best epoch's model is published as ``models/run-N/model.keras``,
loaded back from that file and evaluated on the validation split
(:mod:`blueno.evaluation`), so the reported figures are the saved file's.  The
held-out test split is never looked at here: :func:`predict_run` evaluates it
only when asked (``blueno runs test``).  The Keras-free bookkeeping (job row,
split, checkpoint, epoch book) lives in :mod:`blueno.training_state`;
:func:`predict_run` (``blueno runs test``) is not a trainer and reads the database.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blueno import BluenoError, events, jobspec, spare, zoo
from blueno.evaluation import Prediction, evaluate, predictions_path
from blueno.metrics import binary_scores
from blueno.queue import EXIT_OK, EXIT_PERMANENT
from blueno.store import Store, dumps, now
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
    TrainState,
    data_from_version,
    format_logs,
    job_from_spec,
    load_data,
    split_indices,
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
    zoo.check_fits(spec, params, data.sample_shape, data.ref)
    from blueno.zoo.knobs import knob_problem

    problem = knob_problem(spec, params, data.sample_shape, data.ref, data.n_classes)
    if problem:
        raise BluenoError(problem)
    if params["monitor"] == "val_auc" and not data.binary:
        raise BluenoError(
            f"monitor 'val_auc' needs a binary task, but {data.ref} has {data.n_classes} classes: "
            "monitor val_loss or val_accuracy instead"
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


def _enable_determinism(tf: Any) -> None:
    """On a CPU, make every op deterministic: a resumed run then repeats an uninterrupted one bit for bit."""
    if not tf.config.list_physical_devices("GPU"):
        tf.config.experimental.enable_op_determinism()


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

    return dataset.batch(batch_size).map(_plain(tf, load), num_parallel_calls=READERS, deterministic=True)


def _plain(tf: Any, fn: Any) -> Any:
    """``fn`` for ``Dataset.map`` without AutoGraph's rewrite of its source.

    The pipeline's functions have no Python control flow on tensors, so the
    rewrite changes nothing they compute; it cost about 0.8 s of every job's
    start on the critical path (measured: transpiling ``load``, the epoch
    order and the augmentation).
    """
    return tf.autograph.experimental.do_not_convert(fn)


def train_dataset(
    tf: Any, x: Any, y: np.ndarray, indices: np.ndarray, params: dict[str, Any], augment: Any = None,
    first_epoch: int = 0, end_epoch: int = 1,
) -> Any:
    """The training batches of epochs ``first_epoch`` to ``end_epoch - 1``, streamed from disk.

    Each epoch's order is a stateless shuffle keyed by (seed, epoch), and each
    batch's augmentation (``augment(batch, seed)``, from
    :func:`blueno.zoo.keras_parts.augmenter`) by (seed, epoch, step): nothing
    depends on how many epochs this process has run, so a resumed run sees the
    batches an uninterrupted one would.  Only positions travel through the
    pipeline; samples are read by parallel workers as in :func:`stream`.  Fit
    it with ``steps_per_epoch = steps_per_epoch(len(indices), batch_size)``.
    """
    indices, labels = np.asarray(indices, dtype=np.int64), np.asarray(y[indices], dtype=np.int64)
    n, seed, size = len(indices), params["seed"], params["batch_size"]

    def epoch_batches(epoch: Any) -> Any:
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        batches = tf.data.Dataset.from_tensor_slices(order).batch(size)
        steps = tf.data.Dataset.range(steps_per_epoch(n, size))
        return tf.data.Dataset.zip((batches, steps)).map(_plain(
            tf, lambda positions, step: (positions, tf.stack([tf.constant(seed, tf.int64), epoch * 100_003 + step]))))

    def read(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(x[indices[positions]]), labels[positions]

    def load(positions: Any, batch_seed: Any) -> tuple[Any, Any, Any]:
        batch, truth = tf.numpy_function(read, [positions], (tf.as_dtype(x.dtype), tf.int64), stateful=False)
        batch.set_shape((None, *x.shape[1:]))
        truth.set_shape((None,))
        return tf.cast(batch, tf.float32), truth, batch_seed

    dataset = (tf.data.Dataset.range(first_epoch, end_epoch).flat_map(_plain(tf, epoch_batches))
               .map(_plain(tf, load), num_parallel_calls=READERS, deterministic=True))
    if augment is None:
        dataset = dataset.map(_plain(tf, lambda batch, truth, _: (batch, truth)))
    else:  # Keras' layers share their seed generators: one batch at a time then
        dataset = dataset.map(_plain(tf, lambda batch, truth, batch_seed: (augment(batch, batch_seed), truth)),
                              num_parallel_calls=1 if getattr(augment, "sequential", False) else READERS,
                              deterministic=True)
    return dataset.prefetch(PREFETCH_BATCHES)


def steps_per_epoch(n_samples: int, batch_size: int) -> int:
    return -(-n_samples // batch_size)


def _keras_callback(keras: Any, book: EpochBook, x_val: Any, y_val: np.ndarray, binary: bool) -> Any:
    """Forwards Keras' events to the book, adding the binary validation scores to the epoch logs."""

    class Bridge(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            from blueno.zoo.keras_parts import reseed

            check_stop()
            reseed(self.model, book.params["seed"], epoch)  # dropout draws depend on (seed, epoch) only
            book.epoch_begin(epoch)

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            check_stop()
            book.batch_end(batch, float((logs or {})["loss"]))

        def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            check_stop()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            check_stop()
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


def _compile(model: Any, params: dict[str, Any], n_classes: int, lr: float) -> None:
    from blueno.zoo import keras_parts

    model.compile(optimizer=keras_parts.optimizer(params, lr), loss=keras_parts.loss(params, n_classes),
                  metrics=["accuracy"])


def _phases(params: dict[str, Any], start: int) -> list[tuple[int, int, bool]]:
    """(first epoch, end epoch, unfreeze the base first) of the fits still to run."""
    end, after = params["epochs"], params.get("fine_tune_after", 0)
    if not params.get("freeze_base") or not after or after >= end:
        return [(start, end, False)]
    if start >= after:
        return [(start, end, False)]  # the checkpoint was saved after unfreezing
    return [(start, after, False), (after, end, True)]


def fit(
    workspace: Workspace, job: Job, spec: zoo.ModelSpec, params: dict[str, Any], data: Data,
    writer: events.EventWriter,
) -> tuple[TrainState, Checkpoints]:
    """Train from scratch or from the last checkpoint, up to ``epochs`` or an early stop."""
    try:
        import keras
        import tensorflow as tf

        from blueno.zoo import keras_parts  # registers the custom losses before a checkpoint loads
    except ImportError:  # every job would fail the same way: say how to install it, don't retry
        raise BluenoError(
            "TensorFlow is not installed in this Python environment: install Blueno with "
            "`pip install -e '.[cpu]'` (or '.[gpu]' on a GPU box), as `make` does"
        ) from None

    _configure_tensorflow(tf)
    keras.utils.set_random_seed(params["seed"])
    _enable_determinism(tf)
    checkpoints = Checkpoints(workspace.run_dir(job.run_id))
    state = checkpoints.load()
    if state is None:
        state = TrainState(lr=params["learning_rate"])
        model = build_model(spec, data, params)
        _compile(model, params, data.n_classes, params["learning_rate"])
    else:
        model = keras.models.load_model(checkpoints.model_path(str(state.last_file)))
        print(f"resuming after epoch {state.epoch} from {checkpoints.folder}", flush=True)
    if state.epoch >= params["epochs"] or state.stopped_early:
        return state, checkpoints
    validation = stream(tf, data.x, data.y, data.validation, params["batch_size"]).prefetch(PREFETCH_BATCHES)
    x_val, y_val = validation.map(_plain(tf, lambda batch, _: batch)), data.y[data.validation]
    book = EpochBook(writer, checkpoints, state, params, len(data.train))
    callbacks = [_keras_callback(keras, book, x_val, y_val, data.binary)]
    if _optional_setting(workspace, "tensorboard", "enabled") is True:  # docs/workspace.md#tensorboard
        if importlib.util.find_spec("tensorboard") is None:
            raise BluenoError("[tensorboard] enabled = true in settings.toml, but TensorBoard is not installed in "
                              f"{sys.prefix}. Install it (pip install tensorboard, or reinstall Blueno with its "
                              "[cpu] or [gpu] extra), or set enabled = false.")
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(workspace.logs_dir / f"run-{job.run_id}")))
    augment = keras_parts.augmenter(tf, params, _spatial_rank(spec, data), _flip_axis(spec))
    weights = keras_parts.class_weight(params, data.y[data.train], data.n_classes)
    for first, end, unfreeze in _phases(params, state.epoch):
        if unfreeze and keras_parts.set_base_trainable(model, True):
            _compile(model, params, data.n_classes, state.lr)
            print(f"epoch {first}: the pretrained base is unfrozen for fine-tuning", flush=True)
        model.fit(
            train_dataset(tf, data.x, data.y, data.train, params, augment, first, end),
            steps_per_epoch=steps_per_epoch(len(data.train), params["batch_size"]),
            validation_data=validation,
            epochs=end,
            initial_epoch=first,
            class_weight=weights,
            shuffle=False,  # the dataset shuffles itself
            verbose=0,
            callbacks=callbacks,
        )
        if state.stopped_early or state.epoch < end:
            break
    return state, checkpoints


def _spatial_rank(spec: zoo.ModelSpec, data: Data) -> int:
    from blueno.zoo.knobs import spatial_rank

    return spatial_rank(spec, data.sample_shape)


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


def _finish(
    workspace: Workspace, job: Job, params: dict[str, Any], data: Data, state: TrainState,
    checkpoints: Checkpoints, writer: events.EventWriter,
) -> None:
    """Publish the best model, evaluate it, then report the result (durable before the checkpoint goes)."""
    check_stop()
    if state.best_file is None:
        raise BluenoError(
            f"no epoch produced a finite {params['monitor']}: training diverged (lower the learning_rate) "
            "or the validation split cannot measure it (monitor val_loss)"
        )
    model_path = workspace.run_dir(job.run_id) / MODEL_FILE
    checkpoints.publish_best(state, model_path)
    prediction = predict_split(model_path, data, "validation", params["batch_size"])
    prediction.save(predictions_path(model_path.parent, "validation"))
    evaluation = {
        "split": {"train": len(data.train), "validation": len(data.validation), "test": len(data.test)},
        "validation": {**evaluate(prediction), "model": _relative(workspace, model_path),
                       "epoch": state.best_epoch, "evaluated": now()},
    }
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a stop now would only lose finished work
    writer.emit("result", epochs_done=state.epoch, best_epoch=state.best_epoch, monitor=params["monitor"],
                final=state.last_logs, best=state.best_logs, evaluation=evaluation,
                model_path=_relative(workspace, model_path))
    checkpoints.remove()  # the result is on disk: the scheduler commits it even if it is restarting now
    figures = {k: evaluation["validation"].get(k) for k in ("accuracy", "loss", "auc", "kappa")}
    print(
        f"done: best {params['monitor']} {state.best:.4g} at epoch {state.best_epoch} of {state.epoch}; "
        f"saved {model_path}; the saved model on validation: {format_logs(figures)}",
        flush=True,
    )


def train(workspace: Workspace, spec_: dict[str, Any], writer: events.EventWriter) -> None:
    """Everything between a valid job spec and a reported result."""
    job = job_from_spec(spec_)
    config = job.config
    spec = zoo.registry(workspace).get(config["model"])
    params = zoo.resolve_params(spec, config.get("params") or {})
    if spec_.get("dataset_error") or not spec_.get("dataset"):
        raise BluenoError(spec_.get("dataset_error") or f"job {job.id} names no dataset: zoo models train on one")
    data = data_from_version(workspace, jobspec.version_from_spec(spec_["dataset"]), config)
    writer.emit("start", params=params, dataset=data.ref, epochs=params["epochs"])
    check_config(spec, params, data)
    print(
        f"job {job.id} attempt {job.attempt}: run {job.run_id}, model {spec.name} on {data.ref} "
        f"(samples {data.sample_shape}, {data.n_classes} classes; {len(data.train)} train, "
        f"{len(data.validation)} validation, {len(data.test)} test)\nparams {dumps(params)}",
        flush=True,
    )
    state, checkpoints = fit(workspace, job, spec, params, data, writer)
    _finish(workspace, job, params, data, state, checkpoints, writer)
    _upload_model(workspace, job.run_id, writer)


def _optional_setting(workspace: Workspace, section: str, key: str) -> Any:
    """A setting of an optional feature; a settings file broken mid-grid turns the feature off, not the job."""
    try:
        return workspace.settings().get(section, {}).get(key)
    except BluenoError as exc:
        print(f"{section}.{key} ignored: {exc}", flush=True)
        return None


def _upload_model(workspace: Workspace, run_id: int, writer: events.EventWriter) -> None:
    """Copy the saved model to Cloud Storage when a bucket is configured; the run has succeeded either way."""
    if not _optional_setting(workspace, "gcs", "bucket"):
        return
    from blueno.datasets import remote

    try:
        uploaded = remote.upload_model_file(workspace, run_id)
    except BluenoError as exc:  # the result is reported: say why the copy is missing, don't fail the run
        print(f"model not uploaded to Cloud Storage: {exc}", flush=True)
        return
    if uploaded is not None:
        url, crc = uploaded
        writer.emit("model", path=_relative(workspace, workspace.run_dir(run_id) / MODEL_FILE), url=url, crc32c=crc)
        print(f"model uploaded, checksum verified: {url}", flush=True)


def _report_error(writer: events.EventWriter, message: str) -> int:
    """Report a permanent failure's reason; the scheduler records it for this attempt."""
    print(f"error: {message}", flush=True)
    writer.emit("error", message=message)
    return EXIT_PERMANENT


def _flush_quietly(writer: events.EventWriter) -> None:
    """Send the points measured before a failure if the disk takes them; never mask the failure."""
    try:
        writer.flush()
    except Exception:  # e.g. the disk that just failed the training is still full
        pass


# Set by SIGTERM's handler.  The handler also raises Stopped, but when it runs inside a finalizer
# (a ``__del__``, a weakref callback: TensorFlow has many) Python prints that exception and drops
# it; the training then sees the flag at its next batch (check_stop) and stops there.
_stop_requested = False


def _raise_stopped(signum: int, frame: object) -> None:
    global _stop_requested
    _stop_requested = True
    raise Stopped


def check_stop() -> None:
    """Raise Stopped if SIGTERM arrived, even if the handler's own exception was swallowed."""
    if _stop_requested:
        raise Stopped


# True when this module runs as a trainer process (``python -m blueno.trainer``), never in-process.
_OWN_PROCESS = False


def _end(writer: events.EventWriter, code: int) -> int:
    """After a failure or a stop: in a trainer process, end it now, from inside the handler.

    Unwinding out of an interrupted ``fit`` frees the tf.data iterator while
    its parallel readers (``tf.numpy_function``, which need the GIL) are still
    in flight, and the iterator's destructor waits for them holding the GIL: a
    deadlock (seen in CI: a trainer stopped by SIGTERM printed its last line and
    never exited). The attempt is over, so the trainer flushes what the
    scheduler reads (events, log) and leaves without unwinding.  In-process
    callers (tests) get the code back.
    """
    if not _OWN_PROCESS:
        return code
    _flush_quietly(writer)
    try:
        writer.sink.close()
    except OSError:
        pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_job(workspace: Workspace, spec: dict[str, Any], writer: events.EventWriter) -> int:
    """Train one attempt described by its job spec; return the exit code the scheduler acts on."""
    global _stop_requested
    _stop_requested = False
    previous_handler = signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        train(workspace, spec, writer)
    except Stopped:
        _flush_quietly(writer)
        print("stopped by SIGTERM; the last epoch checkpoint is kept for a resume", flush=True)
        return _end(writer, EXIT_STOPPED)
    except BluenoError as exc:
        _flush_quietly(writer)
        return _end(writer, _report_error(writer, str(exc)))
    except Exception:
        _flush_quietly(writer)
        traceback.print_exc()  # its last line becomes the job's error (the scheduler reads the log's tail)
        return _end(writer, EXIT_CRASH)
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    return EXIT_OK


def warm_up_steps() -> list[spare.Step]:
    """What every job needs and none decides, done by a spare before its job (:mod:`blueno.spare`).

    TensorFlow and Keras imported (at idle priority; by the zygote, which runs
    before any training, at normal priority), and nothing more: starting
    TensorFlow's runtime or rehearsing a training would put work on thread
    pools that run at normal priority and slow the slot's running job (measured:
    docs/benchmarks.md), and on a GPU slot it would take the GPU from that job.
    """
    return [spare.Step(_import_tensorflow)]


def _import_tensorflow() -> None:
    import keras  # noqa: F401
    import tensorflow  # noqa: F401


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if spare.spare_requested(args_list):  # a warm trainer: imports now, its job later (blueno.spare)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # read by TensorFlow's import: set it first
        return spare.serve(main, warm_up_steps())
    parser = argparse.ArgumentParser(
        prog="python -m blueno.trainer",
        description="Train one claimed job attempt (started by the scheduler, which sets $BLUENO_JOB and "
                    "$BLUENO_EVENTS).",
    )
    parser.add_argument("job_id", type=int)
    parser.add_argument("attempt", type=int)
    args = parser.parse_args(args_list)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info and warning lines
    spec = events.read_spec()
    if (spec["job_id"], spec["attempt"]) != (args.job_id, args.attempt):
        print(f"the job spec is for job {spec['job_id']} attempt {spec['attempt']}, not "
              f"{args.job_id} attempt {args.attempt}", file=sys.stderr)
        return EXIT_PERMANENT
    writer = events.writer_from_env()
    try:
        return run_job(Workspace.locate(spec.get("workspace")), spec, writer)
    finally:
        _flush_quietly(writer)
        writer.sink.close()


if __name__ == "__main__":
    _OWN_PROCESS = True
    sys.exit(main())
