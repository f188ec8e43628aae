"""Metric series: batched recording and fast reads, plus binary evaluation scores.

A training writes thousands of points (one ``batch_loss`` per step); the GUI
redraws curves a few times a second.  So points are buffered and written in
one transaction per flush (``executemany``), and reads go straight to the
``metrics`` primary key ``(run_id, key, step)`` and come back as numpy arrays.
Writing the same ``(run, key, step)`` twice replaces the point, so a resumed
or re-ingested run never duplicates anything.  ``latest_metrics`` keeps the
point with the highest step per ``(run, key)`` so a runs table never scans
history.

This module knows nothing of job states and imports nothing heavy.
"""

from __future__ import annotations

import itertools
import math
import time as _time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from blueno.store import Store

FLUSH_POINTS = 20_000
FLUSH_SECONDS = 2.0
_IN_CHUNK = 500  # run ids per ``IN (...)``: far below SQLite's variable limit

_INSERT = "INSERT OR REPLACE INTO metrics (run_id, key, step, value, time) VALUES (?, ?, ?, ?, ?)"
# Only a newer (or the same) step may replace the latest point: a late,
# out-of-order flush never moves ``latest_metrics`` backwards.
_UPSERT_LATEST = """
    INSERT INTO latest_metrics (run_id, key, step, value, time) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (run_id, key) DO UPDATE SET step = excluded.step, value = excluded.value,
        time = excluded.time
    WHERE excluded.step >= latest_metrics.step
"""

Series = tuple[np.ndarray, np.ndarray]  # (steps: int64, values: float64 with NaN for missing)


class MetricsRecorder:
    """Buffers metric points for one run and writes them in batches.

    A flush happens when ``flush_points`` points are buffered, when
    ``flush_seconds`` have passed since the last flush (checked on ``log``),
    on :meth:`flush`, and when the ``with`` block ends.  Each flush is one
    write transaction; called inside an open ``store.write()`` it joins that
    transaction, so a caller can commit points together with other state.
    """

    def __init__(
        self,
        store: Store,
        run_id: int,
        *,
        flush_points: int = FLUSH_POINTS,
        flush_seconds: float = FLUSH_SECONDS,
        clock: Callable[[], float] = _time.monotonic,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.flush_points = flush_points
        self.flush_seconds = flush_seconds
        self._clock = clock
        self._rows: list[tuple[int, str, int, float | None, float]] = []
        self._last_flush = clock()

    def log(self, key: str, step: int, value: float, time: float | None = None) -> None:
        """Buffer one point; NaN is stored as NULL."""
        value = float(value)
        self._rows.append(
            (self.run_id, key, int(step), None if math.isnan(value) else value,
             _time.time() if time is None else time)
        )
        if len(self._rows) >= self.flush_points or self._clock() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> int:
        """Write the buffered points in one transaction; return how many were written."""
        rows = self._rows
        if not rows:
            self._last_flush = self._clock()
            return 0
        with self.store.write() as conn:
            write_points(conn, rows)
        self._rows = []
        self._last_flush = self._clock()
        return len(rows)

    def __enter__(self) -> MetricsRecorder:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        # Keep what was measured even when training fails: the curves explain the failure.
        self.flush()


def write_points(conn: Any, rows: list[tuple[int, str, int, float | None, float]]) -> None:
    """Write ``(run_id, key, step, value, time)`` points inside the caller's transaction (idempotent)."""
    if rows:
        conn.executemany(_INSERT, rows)
        conn.executemany(_UPSERT_LATEST, _newest_per_key(rows))


def _newest_per_key(rows: list[tuple[int, str, int, float | None, float]]) -> list[tuple]:
    newest: dict[str, tuple] = {}
    for row in rows:
        current = newest.get(row[1])
        if current is None or row[2] >= current[2]:
            newest[row[1]] = row
    return list(newest.values())


# -- reading ---------------------------------------------------------------


def _series(rows: Sequence[tuple[Any, ...]]) -> Series:
    """(step, value) rows to arrays; NULL values become NaN."""
    n = len(rows)
    flat = np.fromiter(
        (math.nan if v is None else v for v in itertools.chain.from_iterable(rows)),
        dtype=np.float64, count=2 * n,
    ).reshape(n, 2)
    return flat[:, 0].astype(np.int64), flat[:, 1].copy()


def _fetch(store: Store, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    return store.query_tuples(sql, params)


def history(store: Store, run_id: int, key: str) -> Series:
    """One run's whole series for ``key``, ordered by step."""
    return since(store, run_id, key, None)


def since(store: Store, run_id: int, key: str, after_step: int | None) -> Series:
    """The points of a series after ``after_step`` (all when None): the GUI's incremental read."""
    lower = -(2**63) if after_step is None else after_step
    return _series(_fetch(
        store,
        "SELECT step, value FROM metrics WHERE run_id = ? AND key = ? AND step > ? ORDER BY step",
        (run_id, key, lower),
    ))


def histories(store: Store, run_ids: Iterable[int], key: str) -> dict[int, Series]:
    """The ``key`` series of many runs; runs without that key are absent."""
    result: dict[int, Series] = {}
    for chunk in _chunks(list(run_ids)):
        marks = ",".join("?" * len(chunk))
        rows = _fetch(
            store,
            f"SELECT run_id, step, value FROM metrics WHERE run_id IN ({marks}) AND key = ? "
            "ORDER BY run_id, step",
            (*chunk, key),
        )
        for run_id, group in itertools.groupby(rows, key=lambda row: row[0]):
            result[run_id] = _series([row[1:] for row in group])
    return result


def latest(
    store: Store, run_ids: Iterable[int], keys: Iterable[str] | None = None
) -> dict[int, dict[str, float | None]]:
    """The newest value of each key per run (NaN was stored as None), without touching history."""
    wanted = None if keys is None else set(keys)
    result: dict[int, dict[str, float | None]] = {}
    for chunk in _chunks(list(run_ids)):
        marks = ",".join("?" * len(chunk))
        rows = _fetch(
            store, f"SELECT run_id, key, value FROM latest_metrics WHERE run_id IN ({marks})", chunk
        )
        for run_id, key, value in rows:
            if wanted is None or key in wanted:
                result.setdefault(run_id, {})[key] = value
    return result


def keys(store: Store, run_id: int) -> list[str]:
    """The metric names a run has recorded."""
    rows = _fetch(store, "SELECT key FROM latest_metrics WHERE run_id = ? ORDER BY key", (run_id,))
    return [row[0] for row in rows]


def _chunks(items: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start:start + _IN_CHUNK]


# -- evaluation ------------------------------------------------------------


def binary_scores(y_true: np.ndarray, p_positive: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """AUC, sensitivity and specificity of predicted probabilities for class 1.

    A score that is undefined on these labels (AUC or sensitivity without a
    positive, specificity without a negative) is NaN rather than a made-up 0.
    """
    from sklearn.metrics import roc_auc_score  # sklearn is slow to import; only evaluations need it

    y_true = np.asarray(y_true).astype(bool)
    p_positive = np.asarray(p_positive, dtype=np.float64)
    predicted = p_positive >= threshold
    positives = int(y_true.sum())
    negatives = len(y_true) - positives
    true_pos = int((predicted & y_true).sum())
    true_neg = int((~predicted & ~y_true).sum())
    return {
        "auc": float(roc_auc_score(y_true, p_positive)) if positives and negatives else math.nan,
        "sensitivity": true_pos / positives if positives else math.nan,
        "specificity": true_neg / negatives if negatives else math.nan,
    }
