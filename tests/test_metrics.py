"""Recording and reading metric series (blueno.metrics)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from blueno import metrics
from blueno.metrics import MetricsRecorder
from blueno.store import Store


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def count(store: Store, table: str = "metrics") -> int:
    return store.query_one(f"SELECT count(*) FROM {table}")[0]


def test_that_points_stay_buffered_until_the_batch_is_full(store: Store) -> None:
    recorder = MetricsRecorder(store, 1, flush_points=10, flush_seconds=3600)
    for step in range(9):
        recorder.log("loss", step, 1.0)
    assert count(store) == 0
    recorder.log("loss", 9, 1.0)
    assert count(store) == 10


def test_that_a_quiet_recorder_flushes_after_the_time_limit(store: Store) -> None:
    clock = FakeClock()
    recorder = MetricsRecorder(store, 1, flush_points=1000, flush_seconds=2.0, clock=clock)
    recorder.log("loss", 1, 1.0)
    clock.now = 1.9
    recorder.log("loss", 2, 1.0)
    assert count(store) == 0
    clock.now = 2.0
    recorder.log("loss", 3, 1.0)
    assert count(store) == 3


def test_that_each_flush_is_one_transaction(store: Store) -> None:
    statements: list[str] = []
    store.connection().set_trace_callback(statements.append)
    with MetricsRecorder(store, 1, flush_points=5000, flush_seconds=3600) as recorder:
        for step in range(10_000):
            recorder.log("batch_loss", step, 0.5)
    store.connection().set_trace_callback(None)
    assert sum(s.startswith("BEGIN") for s in statements) == 2
    assert count(store) == 10_000


def test_that_leaving_the_with_block_flushes(store: Store) -> None:
    with MetricsRecorder(store, 1) as recorder:
        recorder.log("loss", 1, 0.25)
    assert metrics.history(store, 1, "loss")[1].tolist() == [0.25]


def test_that_ingesting_the_same_points_twice_changes_nothing(store: Store) -> None:
    points = [("loss", step, 1.0 / (step + 1), 1000.0 + step) for step in range(50)]
    for _ in range(2):
        with MetricsRecorder(store, 7) as recorder:
            for key, step, value, time in points:
                recorder.log(key, step, value, time)
    rows = store.query("SELECT run_id, key, step, value, time FROM metrics ORDER BY step")
    assert [tuple(r) for r in rows] == [(7, *p) for p in points]
    assert tuple(store.query_one("SELECT step, value, time FROM latest_metrics")) == (49, 1 / 50, 1049.0)


def test_that_nan_is_stored_as_null_and_read_as_nan(store: Store) -> None:
    with MetricsRecorder(store, 1) as recorder:
        recorder.log("val_auc", 1, math.nan)
        recorder.log("val_auc", 2, 0.75)
    assert store.query_one("SELECT value FROM metrics WHERE step = 1")["value"] is None
    steps, values = metrics.history(store, 1, "val_auc")
    assert steps.tolist() == [1, 2]
    assert math.isnan(values[0]) and values[1] == 0.75


def test_that_latest_keeps_the_highest_step_even_when_an_older_point_arrives_later(store: Store) -> None:
    with MetricsRecorder(store, 1) as recorder:
        recorder.log("loss", 5, 0.5)
    with MetricsRecorder(store, 1) as recorder:
        recorder.log("loss", 3, 0.9)
        recorder.log("accuracy", 3, 0.8)
    assert metrics.latest(store, [1]) == {1: {"loss": 0.5, "accuracy": 0.8}}
    assert metrics.latest(store, [1], keys=["accuracy"]) == {1: {"accuracy": 0.8}}
    assert metrics.keys(store, 1) == ["accuracy", "loss"]


def test_that_history_returns_sorted_numpy_arrays_for_one_run_and_key(store: Store) -> None:
    with MetricsRecorder(store, 1) as recorder:
        for step in reversed(range(10_000)):
            recorder.log("batch_loss", step, step / 10)
        recorder.log("val_loss", 1, 9.0)
    with MetricsRecorder(store, 2) as recorder:
        recorder.log("batch_loss", 0, -1.0)
    steps, values = metrics.history(store, 1, "batch_loss")
    assert steps.dtype == np.int64 and values.dtype == np.float64
    np.testing.assert_array_equal(steps, np.arange(10_000))
    np.testing.assert_allclose(values, np.arange(10_000) / 10)


def test_that_since_returns_only_newer_points(store: Store) -> None:
    with MetricsRecorder(store, 1) as recorder:
        for step in range(1, 11):
            recorder.log("loss", step, float(step))
    steps, values = metrics.since(store, 1, "loss", 7)
    assert steps.tolist() == [8, 9, 10] and values.tolist() == [8.0, 9.0, 10.0]
    assert len(metrics.since(store, 1, "loss", 10)[0]) == 0
    assert len(metrics.history(store, 99, "loss")[0]) == 0


def test_that_histories_reads_many_runs_at_once(store: Store) -> None:
    for run_id in range(1, 1201):  # more runs than one IN (...) chunk
        with MetricsRecorder(store, run_id) as recorder:
            recorder.log("val_loss", 1, run_id)
            recorder.log("val_loss", 2, run_id / 2)
    series = metrics.histories(store, [*range(1, 1201), 5000], "val_loss")
    assert len(series) == 1200
    steps, values = series[1000]
    assert steps.tolist() == [1, 2] and values.tolist() == [1000.0, 500.0]
    assert len(metrics.latest(store, range(1, 1201))) == 1200


def test_that_binary_scores_match_their_definitions() -> None:
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.6, 0.2, 0.9, 0.4, 0.8, 0.7])
    scores = metrics.binary_scores(y, p)
    assert scores["sensitivity"] == pytest.approx(3 / 4)  # 0.4 is a missed positive
    assert scores["specificity"] == pytest.approx(2 / 3)  # 0.6 is a false alarm
    # AUC: the share of (positive, negative) pairs ranked correctly.
    pairs = [(pp > pn) + 0.5 * (pp == pn) for pp in p[y == 1] for pn in p[y == 0]]
    assert scores["auc"] == pytest.approx(np.mean(pairs))


def test_that_binary_scores_are_nan_when_a_class_is_missing() -> None:
    scores = metrics.binary_scores(np.array([1, 1]), np.array([0.9, 0.2]))
    assert math.isnan(scores["auc"]) and math.isnan(scores["specificity"])
    assert scores["sensitivity"] == 0.5
