"""Documents built from the workspace database alone, with ids that make a resend harmless."""

from __future__ import annotations

import json
import math
import sqlite3
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from blueno.store import Store


def workspace_id(store: Store) -> str:
    """This workspace's UUID, made once: it keeps the documents of a lab's boxes apart."""
    row = store.query_one("SELECT value FROM meta WHERE key = 'workspace_id'")
    if row is not None:
        return row[0]
    with store.write() as conn:
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('workspace_id', ?)", (str(uuid.uuid4()),)
        )
        return conn.execute("SELECT value FROM meta WHERE key = 'workspace_id'").fetchone()[0]


def iso_time(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _finite(value: Any) -> Any:
    """JSON without NaN or infinity, which Elasticsearch refuses."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _numbers(blob: str | None, prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a metrics JSON object, flattened with dots (all mapped as double)."""
    flat: dict[str, float] = {}
    data = json.loads(blob) if isinstance(blob, str) else blob
    for key, value in (data or {}).items():
        if isinstance(value, dict):
            flat.update(_numbers(value, f"{prefix}{key}."))
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            flat[f"{prefix}{key}"] = float(value)
    return flat


def _span(start: float | None, end: float | None) -> float | None:
    return round(end - start, 3) if start is not None and end is not None else None


def run_document(run: Mapping[str, Any], workspace: str) -> dict[str, Any]:
    """The runs-index document for one row of :data:`RUNS_SQL`."""
    name, _, version = run["dataset"].partition("@")
    best = _numbers(run["best"])
    monitor = run["monitor"]
    ended = run["ended"] or run["job_ended"]
    return {
        "@timestamp": iso_time(ended or run["started"] or run["created"]),
        "workspace": workspace,
        "host": run["host"],
        "run_id": run["id"],
        "job_id": run["job_id"],
        "experiment_id": run["experiment_id"],
        "experiment": run["experiment"],
        "config_hash": run["config_hash"],
        "kind": run["kind"],
        "model": run["model"],
        "dataset": run["dataset"],
        "dataset_name": name,
        "dataset_version": version or None,
        "params": _finite(json.loads(run["params"] or "{}")),
        "final": _numbers(run["final"]),
        "best": best,
        "evaluation": _numbers(run["evaluation"]),
        "monitor": monitor,
        "best_value": best.get(monitor) if monitor else None,
        "best_epoch": run["best_epoch"],
        "epochs_done": run["epochs_done"],
        "epochs_planned": run["epochs_planned"],
        "state": run["state"] or ("succeeded" if ended else None),
        "attempt": run["attempt"],
        "failures": run["failures"],
        "error": (run["error"] or "")[:4000] or None,
        "created": iso_time(run["created"]),
        "started": iso_time(run["started"]),
        "ended": iso_time(ended),
        "duration_s": _span(run["started"], ended),
        "queue_s": _span(run["job_created"], run["job_started"]),
        "gpu": run["gpu"],
        "model_url": run["model_url"],
        "blueno_version": run.get("blueno_version"),
        "git_commit": run.get("git_commit"),
    }


def metric_document(run: Mapping[str, Any], point: sqlite3.Row, workspace: str) -> dict[str, Any]:
    """A metrics-index document: one point of one curve, with what Kibana filters on."""
    value = point["value"]
    return {
        "@timestamp": iso_time(point["time"]),
        "workspace": workspace,
        "host": run["host"],
        "run_id": run["id"],
        "experiment": run["experiment"],
        "model": run["model"],
        "dataset": run["dataset"],
        "metric": point["key"],
        "step": point["step"],
        "value": value if value is None or math.isfinite(value) else None,
    }


RUNS_SQL = """
    SELECT r.*, e.name AS experiment, j.state, j.attempt, j.failures, j.config_hash, j.error,
           j.epochs AS epochs_planned, j.created AS job_created, j.started AS job_started,
           j.ended AS job_ended
    FROM runs r
    LEFT JOIN jobs j ON j.id = r.job_id
    LEFT JOIN experiments e ON e.id = r.experiment_id
    WHERE r.id IN ({marks})
"""
