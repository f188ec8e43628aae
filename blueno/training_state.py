"""The Keras-free half of a training: the job, the data split, the checkpoint and the epoch book.

Everything here is plain Python and numpy, so it can be used (and tested) without
TensorFlow: :mod:`blueno.trainer` drives it from Keras callbacks, and
:mod:`blueno.runs` uses :func:`load_data` to rebuild a finished run's splits.
The epoch book reports through :mod:`blueno.events`; it never opens the database.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from blueno import BluenoError
from blueno.events import EventWriter
from blueno.store import Store
from blueno.workspace import Workspace

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.json"
MODEL_FILE = "model.keras"
DEFAULT_SPLIT = {"validation": 0.2, "test": 0.0, "seed": 0}
LR_FACTOR = 0.5  # reduce-on-plateau multiplies the learning rate by this


# -- the job -----------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    id: int
    attempt: int
    run_id: int
    config: dict[str, Any]


def job_from_spec(spec: dict[str, Any]) -> Job:
    """The job an attempt's spec describes (``blueno.jobspec``)."""
    return Job(int(spec["job_id"]), int(spec["attempt"]), int(spec["run_id"]), dict(spec["config"]))


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
    ids: np.ndarray  # sample ids (str), aligned with x and y

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

    def indices(self, split: str) -> np.ndarray:
        """The sample indices of ``"train"``, ``"validation"`` or ``"test"``."""
        if split not in ("train", "validation", "test"):
            raise ValueError(f"unknown split {split!r}")
        return getattr(self, split)


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
    return data_from_version(workspace, version, config)


def data_from_version(workspace: Workspace, version: Any, config: dict[str, Any]) -> Data:
    """A prepared dataset version's arrays, split as the job configures (no database needed)."""
    from blueno import datasets

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
    return Data(version.ref, x, np.asarray(y, dtype=np.int64), list(class_names), train, val, tst,
                np.asarray(ids))


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


# -- the epoch book -------------------------------------------------------


def json_safe(logs: dict[str, Any]) -> dict[str, float | None]:
    """Floats for JSON columns: NaN and infinities (not JSON) become null."""
    out: dict[str, float | None] = {}
    for key, value in logs.items():
        value = float(value)
        out[key] = value if math.isfinite(value) else None
    return out


def format_logs(logs: dict[str, float | None]) -> str:
    return "  ".join(f"{k} {'-' if v is None else f'{v:.4g}'}" for k, v in logs.items())


class EpochBook:
    """The per-batch and per-epoch bookkeeping of one training, free of Keras.

    Reports metrics, keeps the best epoch, decides early stopping and
    learning-rate cuts, writes the checkpoint, then reports the epoch done.
    """

    def __init__(
        self, events: EventWriter, checkpoints: Checkpoints,
        state: TrainState, params: dict[str, Any], n_train: int,
    ) -> None:
        self.events, self.checkpoints = events, checkpoints
        self.state, self.params, self.n_train = state, params, n_train
        self.batch_size = params["batch_size"]
        self.steps_per_epoch = math.ceil(n_train / self.batch_size)
        self._epoch = state.epoch
        self._epoch_loss_total = 0.0
        self._epoch_started = time.monotonic()
        self._first_batch_sent = False

    def epoch_begin(self, epoch: int) -> None:
        self._epoch, self._epoch_loss_total, self._epoch_started = epoch, 0.0, time.monotonic()

    def batch_end(self, batch: int, running_loss: float) -> None:
        """Record the batch's own loss, recovered from Keras' sample-weighted running mean."""
        seen = min((batch + 1) * self.batch_size, self.n_train)
        size = seen - batch * self.batch_size
        total = running_loss * seen
        step = self._epoch * self.steps_per_epoch + batch + 1
        self.events.metric("batch_loss", step, (total - self._epoch_loss_total) / size)
        self._epoch_loss_total = total
        if not self._first_batch_sent:  # at once: its time says when the attempt began training
            self._first_batch_sent = True
            self.events.flush()

    def epoch_end(self, epoch: int, logs: dict[str, float], model: Any) -> bool:
        """Book a finished epoch; return True to stop training (early stopping)."""
        state, params = self.state, self.params
        logs = json_safe({**logs, "lr": state.lr})
        state.epoch, state.last_logs = epoch + 1, logs
        value = logs.get(params["monitor"])
        improved = value is not None and (
            state.best is None or (value < state.best if params["monitor"].endswith("loss") else value > state.best)
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
            state.lr = max(state.lr * params.get("reduce_lr_factor", LR_FACTOR), params.get("reduce_lr_min", 0.0))
            state.plateau = 0
            model.optimizer.learning_rate = state.lr
        self.checkpoints.save(model, state, improved)
        # Only now, with the checkpoint on disk: the epoch's logs become points at step = epoch.
        self.events.emit("epoch", epoch=state.epoch, logs=logs, checkpoint=str(self.checkpoints.state_path))
        notes = [f"{time.monotonic() - self._epoch_started:.1f}s"]
        if improved:
            notes.append("best")
        if cut and not stop:
            notes.append(f"lr -> {state.lr:.3g}")
        if stop:
            notes.append(f"early stop: no better {params['monitor']} for {state.since_best} epochs")
        print(f"epoch {state.epoch}/{params['epochs']}  {format_logs(logs)}  ({', '.join(notes)})",
              flush=True)
        return stop


