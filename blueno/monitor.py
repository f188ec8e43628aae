"""What is happening now, read from the database: one reader for every display.

The ``--batch`` terminal display and the GUI's status bar read progress the
same way, from the same tables, so they never disagree (and neither holds
state the database lacks).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from blueno.queue import JobState
from blueno.store import Store

if TYPE_CHECKING:
    from blueno.grid import Grid

# Metrics where larger is better; anything else (losses) is minimised.
MAXIMIZED = ("accuracy", "auc", "sensitivity", "specificity", "precision", "recall", "f1", "kappa")


def is_maximized(metric: str) -> bool:
    return any(metric.endswith(word) for word in MAXIMIZED)


@dataclass(frozen=True)
class SlotProgress:
    slot: str
    job_id: int
    run_id: int | None
    model: str
    attempt: int
    epoch: int
    epochs: int | None
    metric: str | None  # the newest validation metric, e.g. "val_accuracy"
    value: float | None
    claimed: float | None


@dataclass(frozen=True)
class Progress:
    counts: dict[JobState, int]
    running: list[SlotProgress]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def finished(self) -> int:
        return sum(n for state, n in self.counts.items() if state.is_terminated)


def progress(store: Store, experiment_id: int | None = None) -> Progress:
    """Job counts and what each busy slot is doing, in one consistent snapshot."""
    where, params = ("WHERE experiment_id = ?", (experiment_id,)) if experiment_id is not None else ("", ())
    with store.snapshot() as conn:
        found = dict(conn.execute(f"SELECT state, count(*) FROM jobs {where} GROUP BY state", params).fetchall())
        rows = conn.execute(
            "SELECT jobs.id, jobs.slot, jobs.model, jobs.attempt, jobs.epoch, jobs.epochs, jobs.claimed, "
            "       runs.id AS run_id, "
            "       (SELECT key || '=' || value FROM latest_metrics lm WHERE lm.run_id = runs.id "
            "        AND lm.key IN ('val_accuracy', 'val_loss') ORDER BY lm.key LIMIT 1) AS newest "
            "FROM jobs LEFT JOIN runs ON runs.job_id = jobs.id "
            "WHERE jobs.state = 'running' ORDER BY jobs.slot"
        ).fetchall()
    running = []
    for row in rows:
        metric = value = None
        if row["newest"]:
            metric, _, text = row["newest"].partition("=")
            value = float(text) if text else None
        running.append(SlotProgress(
            row["slot"] or "?", row["id"], row["run_id"], row["model"], row["attempt"], row["epoch"],
            row["epochs"], metric, value, row["claimed"],
        ))
    return Progress({state: found.get(str(state), 0) for state in JobState}, running)


@dataclass(frozen=True)
class RunSummary:
    run_id: int
    job_id: int | None
    model: str
    state: str
    monitor: str | None
    score: float | None  # the monitored metric at the best epoch
    best: dict[str, float]
    params: dict[str, object]
    duration: float | None


def best_runs(store: Store, experiment_id: int | None = None, limit: int = 5) -> list[RunSummary]:
    """Finished runs ranked by their monitored metric (best first)."""
    where, params = ("AND runs.experiment_id = ?", (experiment_id,)) if experiment_id is not None else ("", ())
    rows = store.query(
        "SELECT runs.id, runs.job_id, runs.model, runs.monitor, runs.best, runs.params, runs.started, "
        "       runs.ended, jobs.state FROM runs LEFT JOIN jobs ON jobs.id = runs.job_id "
        f"WHERE runs.best IS NOT NULL {where}",
        params,
    )
    summaries = []
    for row in rows:
        best = json.loads(row["best"]) if row["best"] else {}
        monitor = row["monitor"]
        score = best.get(monitor) if monitor else None
        duration = row["ended"] - row["started"] if row["ended"] and row["started"] else None
        summaries.append(RunSummary(
            row["id"], row["job_id"], row["model"], row["state"] or "succeeded", monitor,
            score, best, json.loads(row["params"]), duration,
        ))

    def rank(summary: RunSummary) -> float:
        if summary.score is None or not math.isfinite(summary.score):
            return math.inf
        return -summary.score if summary.monitor and is_maximized(summary.monitor) else summary.score

    summaries.sort(key=rank)
    return summaries[:limit]


def estimate_seconds(store: Store, grid: Grid) -> float | None:
    """Total training time of ``grid`` at the per-epoch pace of past runs of the same models.

    A model never run here takes the mean pace of those that were; None when
    no run of any chosen model has finished on this workspace yet.
    """
    rows = store.query(
        "SELECT model, sum(ended - started) AS seconds, sum(epochs_done) AS epochs FROM runs "
        "WHERE ended IS NOT NULL AND started IS NOT NULL AND epochs_done > 0 GROUP BY model"
    )
    pace = {row["model"]: row["seconds"] / row["epochs"] for row in rows}
    if not any(model in pace for model in grid.models):
        return None
    fallback = sum(pace.values()) / len(pace)
    return sum(pace.get(c.model, fallback) * int(c.params.get("epochs", 1)) for c in grid.configs)
