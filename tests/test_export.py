"""``blueno runs export``: the runs table as SQLite (sqlite-utils), CSV, or a clear word about Parquet."""

from __future__ import annotations

import csv
import importlib.util
import sqlite3

import pytest
from test_runs_search import filled  # noqa: F401 - the fixture: five runs of two models

from blueno import BluenoError
from blueno.cli import main as cli
from blueno.export import export_runs


def test_that_a_sqlite_export_is_a_flat_typed_runs_table_with_the_curves(filled, tmp_path) -> None:  # noqa: F811
    with filled.write() as conn:
        conn.executemany("INSERT INTO metrics (run_id, key, step, value, time) VALUES (?, ?, ?, ?, 0)",
                         [(1, "loss", step, 1.0 / (step + 1)) for step in range(5)])
    result = export_runs(filled, tmp_path / "runs.db", filter="model=mlp")
    assert (result.runs, result.metric_points) == (3, 5)
    db = sqlite3.connect(tmp_path / "runs.db")
    rows = db.execute("SELECT run, state, model, learning_rate, best_val_accuracy FROM runs ORDER BY run").fetchall()
    assert rows == [(1, "succeeded", "mlp", 0.1, 0.95), (2, "failed", "mlp", 0.01, None),
                    (5, "cancelled", "MLP", 0.001, 0.5)]
    types = {row[1]: row[2] for row in db.execute("PRAGMA table_info(runs)")}
    assert types["learning_rate"] == "REAL" and types["units"] == "INTEGER" and types["run"] == "INTEGER"
    assert db.execute("SELECT count(*), max(step) FROM metrics WHERE run = 1").fetchone() == (5, 4)


def test_that_a_csv_export_has_the_selected_runs(filled, tmp_path) -> None:  # noqa: F811
    export_runs(filled, tmp_path / "runs.csv", run_ids=[3, 4])
    with open(tmp_path / "runs.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [row["run"] for row in table] == ["3", "4"] and table[0]["best_val_accuracy"] == "0.91"


def test_that_an_unknown_format_or_run_is_a_clear_error_and_writes_nothing(filled, tmp_path) -> None:  # noqa: F811
    with pytest.raises(BluenoError, match=r"\*\.db .*\*\.csv"):
        export_runs(filled, tmp_path / "runs.xlsx")
    with pytest.raises(BluenoError, match="no such run: 99"):
        export_runs(filled, tmp_path / "runs.csv", run_ids=[1, 99])
    assert list(tmp_path.glob("runs.*")) == []


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is not None, reason="pyarrow is installed: Parquet works")
def test_that_parquet_without_pyarrow_says_what_to_do(filled, tmp_path) -> None:  # noqa: F811
    with pytest.raises(BluenoError, match="pip install pyarrow"):
        export_runs(filled, tmp_path / "runs.parquet")


def test_that_the_cli_exports_through_the_library(filled, workspace, tmp_path, capsys) -> None:  # noqa: F811
    out = tmp_path / "out" / "runs.db"
    assert cli(["--home", str(workspace.root), "runs", "export", str(out), "--where", "model=cnn"]) == 0
    assert "2 runs" in capsys.readouterr().out
    assert sqlite3.connect(out).execute("SELECT count(*) FROM runs").fetchone() == (2,)
