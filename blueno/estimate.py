"""How long a grid (or what is left of the queue) will take, from this workspace's own runs.

Each finished run is split into a **start-up** time (process, TensorFlow,
data loading: from the job's start to its first epoch, less one epoch) and a
**per-epoch** time (the spacing of its epoch metrics).  A new training is
predicted from the runs of the same model on data of the same shape, the
per-epoch time scaled by the number of samples; failing that, the same model
on other data (scaled by the data's size), failing that every model.  The
trainings are then laid out on the configured slots (longest first, each on
the slot free soonest), which gives the wall-clock time the user will wait.

The answer is a range: the spread of the matching runs' times, widened when
the match is loose (another data shape, another model) or rests on one run.
Everything is read again on each call, so the estimate follows the runs as
they finish.
"""

from __future__ import annotations

import heapq
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from blueno.store import Store

LOOSE = 2.0  # the range is widened by this factor (both ways) when the match is not the same model and shape


@dataclass(frozen=True)
class Measured:
    """One finished run's timing: what the estimate learns from."""

    model: str
    shape: tuple[int, ...] | None
    samples: int | None
    startup: float  # seconds before the first epoch's work
    per_epoch: float  # seconds per epoch on ``samples`` samples


@dataclass(frozen=True)
class Planned:
    """One training to estimate: model, epochs, and its data's shape and size (None when unknown)."""

    model: str
    epochs: int
    shape: tuple[int, ...] | None = None
    samples: int | None = None
    warm: bool = False  # already running: its start-up is behind it


@dataclass(frozen=True)
class Estimate:
    """Wall-clock seconds on ``slots`` slots: the likely value and a range; ``basis`` says from what."""

    seconds: float
    low: float
    high: float
    slots: int
    basis: str

    def describe(self, fmt: Any = None) -> str:
        """``about 1:20 (1:05–1:40) on 2 slots``; ``fmt`` formats seconds (default m:ss)."""
        fmt = fmt or _clock
        span = "" if fmt(self.low) == fmt(self.high) else f" ({fmt(self.low)}–{fmt(self.high)})"
        return f"about {fmt(self.seconds)}{span} on {self.slots} slot{'s' * (self.slots != 1)}"


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def measurements(store: Store) -> list[Measured]:
    """Start-up and per-epoch seconds of every finished training run in this workspace."""
    rows = store.query(
        "SELECT r.id, r.model, r.dataset, r.epochs_done, j.started, j.ended, d.sample_shape, d.n_samples, "
        "(SELECT min(m.time) FROM metrics m WHERE m.run_id = r.id AND m.key = 'loss') AS first, "
        "(SELECT max(m.time) FROM metrics m WHERE m.run_id = r.id AND m.key = 'loss') AS last, "
        "(SELECT count(*) FROM metrics m WHERE m.run_id = r.id AND m.key = 'loss') AS points "
        "FROM runs r JOIN jobs j ON j.id = r.job_id "
        "LEFT JOIN datasets d ON d.name || '@' || d.version = r.dataset "
        "WHERE j.state = 'succeeded' AND j.started IS NOT NULL AND j.ended IS NOT NULL AND r.epochs_done > 0 "
        "AND r.kind = 'train'"
    )
    found = []
    for row in rows:
        total = max(float(row["ended"]) - float(row["started"]), 0.0)
        epochs = int(row["epochs_done"])
        if row["points"] and row["points"] >= 2:
            per_epoch = (float(row["last"]) - float(row["first"])) / (int(row["points"]) - 1)
            startup = max(float(row["first"]) - float(row["started"]) - per_epoch, 0.0)
        else:  # one epoch point (or none): the whole run is start-up plus epochs, split evenly is all we know
            per_epoch, startup = total / (epochs + 1), total / (epochs + 1)
        shape = tuple(json.loads(row["sample_shape"])) if row["sample_shape"] else None
        found.append(Measured(row["model"], shape, row["n_samples"], startup, max(per_epoch, 0.0)))
    return found


def _predict(plan: Planned, runs: Sequence[Measured]) -> tuple[float, float, float, str] | None:
    """Seconds for one training (likely, low, high) and how close the match was."""
    matches = (
        ("same model and data shape", lambda m: m.model == plan.model and m.shape == plan.shape),
        ("same model, other data", lambda m: m.model == plan.model),
        ("other models", lambda m: True),
    )
    found = next(((name, chosen) for name, match in matches if (chosen := [m for m in runs if match(m)])), None)
    if found is None:
        return None
    level, chosen = found
    times = []
    for m in chosen:
        scale = 1.0
        if plan.samples and m.samples:
            scale = plan.samples / m.samples
            if level != "same model and data shape" and plan.shape and m.shape:
                scale *= math.prod(plan.shape) / max(math.prod(m.shape), 1)
        times.append((0.0 if plan.warm else m.startup) + m.per_epoch * scale * plan.epochs)
    likely = statistics.median(times)
    low, high = min(times), max(times)
    widen = LOOSE if level != "same model and data shape" else (1.25 if len(chosen) == 1 else 1.0)
    return likely, min(low, likely / widen), max(high, likely * widen), level


def makespan(durations: Iterable[float], slots: int) -> float:
    """Wall-clock time of these trainings on ``slots`` slots: longest first, each on the slot free soonest."""
    free = [0.0] * max(slots, 1)
    for seconds in sorted(durations, reverse=True):
        heapq.heapreplace(free, free[0] + seconds)
    return max(free)


def estimate(store: Store, plans: Sequence[Planned], slots: int) -> Estimate | None:
    """The wall-clock time of ``plans`` on ``slots`` slots; None before any training has finished here."""
    runs = measurements(store)
    if not runs or not plans:
        return None
    predicted = [_predict(plan, runs) for plan in plans]
    if any(p is None for p in predicted):
        return None
    likely = [p[0] for p in predicted if p]
    levels = {p[3] for p in predicted if p}
    basis = f"{len(runs)} finished run{'s' * (len(runs) != 1)} here; " + (
        "matched by model and data shape" if levels == {"same model and data shape"} else
        "some trainings have no run of the same model and data shape yet, so the range is wide")
    return Estimate(
        makespan(likely, slots),
        makespan([p[1] for p in predicted if p], slots),
        makespan([p[2] for p in predicted if p], slots),
        slots,
        basis,
    )


def dataset_shapes(store: Store) -> dict[str, tuple[tuple[int, ...] | None, int | None]]:
    """``name`` (its newest version) and ``name@version`` → (sample shape, samples)."""
    shapes: dict[str, tuple[tuple[int, ...] | None, int | None]] = {}
    for row in store.query("SELECT name, version, sample_shape, n_samples FROM datasets ORDER BY created, id"):
        value = (tuple(json.loads(row["sample_shape"])) if row["sample_shape"] else None, row["n_samples"])
        shapes[f"{row['name']}@{row['version']}"] = value
        shapes[row["name"]] = value  # later rows are newer
    return shapes


def plan_grid(store: Store, configs: Iterable[Any]) -> list[Planned]:
    """The trainings of a grid's configs (``JobConfig``: model, params, dataset) as :class:`Planned`."""
    shapes = dataset_shapes(store)
    plans = []
    for config in configs:
        shape, samples = shapes.get(config.dataset, (None, None))
        plans.append(Planned(config.model, int(config.params.get("epochs", 1)), shape, samples))
    return plans


def plan_queue(store: Store) -> list[Planned]:
    """What is left of the queue: every queued job, and the remaining epochs of every running one."""
    shapes = dataset_shapes(store)
    plans = []
    for row in store.query("SELECT model, dataset, state, epoch, epochs, config FROM jobs "
                           "WHERE state IN ('queued', 'running')"):
        shape, samples = shapes.get(row["dataset"], (None, None))
        epochs = int(row["epochs"] or json.loads(row["config"]).get("params", {}).get("epochs", 1))
        if row["state"] == "running":
            plans.append(Planned(row["model"], max(epochs - int(row["epoch"] or 0), 0), shape, samples, warm=True))
        else:
            plans.append(Planned(row["model"], epochs, shape, samples))
    return plans
