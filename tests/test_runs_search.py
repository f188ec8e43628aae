"""``blueno.runs.search`` and the one filter grammar it shares with the app and ``blueno runs ls``."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blueno import runs
from blueno.cli import main as cli
from blueno.run_filter import FilterError, parse
from blueno.run_table import read_table
from blueno.store import Store, dumps, now

# model, state, learning_rate, units, best val_accuracy, final val_accuracy
RUNS = [
    ("mlp", "succeeded", 0.1, 16, 0.95, 0.93),
    ("mlp", "failed", 0.01, 32, None, None),
    ("cnn", "succeeded", 0.01, 16, 0.91, 0.90),
    ("cnn", "succeeded", 0.001, 64, 0.85, 0.84),
    ("MLP", "cancelled", 0.001, 8, 0.5, 0.5),
]


@pytest.fixture
def filled(store: Store) -> Store:
    t = now()
    with store.write() as conn:
        experiment = conn.execute(
            "INSERT INTO experiments (name, grid_text, created) VALUES ('my sweep', '', ?)", (t,)).lastrowid
        for i, (model, state, lr, units, best, final) in enumerate(RUNS):
            config = {"model": model, "params": {"learning_rate": lr, "units": units}, "dataset": "digits@abc"}
            job = conn.execute(
                "INSERT INTO jobs (experiment_id, config_hash, config, model, dataset, state, created) "
                "VALUES (?, ?, ?, ?, 'digits@abc', ?, ?)", (experiment, f"h{i}", dumps(config), model, state, t),
            ).lastrowid
            metrics = dumps({"val_accuracy": best}) if best is not None else None
            conn.execute(
                "INSERT INTO runs (job_id, experiment_id, model, params, dataset, epochs_done, best, final, created) "
                "VALUES (?, ?, ?, ?, 'digits@abc', 3, ?, ?, ?)",
                (job, experiment, model, dumps(config["params"]), metrics,
                 dumps({"val_accuracy": final}) if final is not None else None, t),
            )
    return store


def ids(result: runs.SearchResult) -> list[int]:
    return [row[0] for row in result.rows]


@pytest.mark.parametrize(("text", "expected"), [
    ("state=failed", [2]),  # lower-case key, column title "State"
    ("State=FAILED", [2]),
    ("model=mlp", [5, 2, 1]),  # values ignore case
    ("val_accuracy>0.9", [3, 1]),  # a metric name: its best value
    ("final_val_accuracy>=0.9", [3, 1]),
    ("lr<=0.01 cnn", []),  # lr is not a key: an error, tested below
    ("learning_rate<=0.01 cnn", [4, 3]),  # a comparison and a bare word
    ("learning_rate=1e-2", [3, 2]),  # numbers compare as numbers
    ("units!=16", [5, 4, 2]),
    ("succeeded 16", [3, 1]),  # bare words match anywhere
    ('experiment="my sweep" model=cnn', [4, 3]),
    ("id>=4", [5, 4]),
    ("", [5, 4, 3, 2, 1]),
])
def test_that_the_filter_grammar_selects_the_documented_runs(filled, text, expected) -> None:
    if text.startswith("lr"):
        with pytest.raises(FilterError, match="no column 'lr'"):
            runs.search(filled, text)
        return
    assert ids(runs.search(filled, text)) == expected


def test_that_a_run_without_the_metric_never_passes_a_numeric_comparison(filled) -> None:
    assert 2 not in ids(runs.search(filled, "val_accuracy<2"))


def test_that_order_and_limit_sort_by_any_key_with_missing_values_last(filled) -> None:
    assert ids(runs.search(filled, order="-val_accuracy")) == [1, 3, 4, 5, 2]
    assert ids(runs.search(filled, order="val_accuracy")) == [5, 4, 3, 1, 2]
    assert ids(runs.search(filled, order="model", limit=2))[0] in (3, 4)
    assert ids(runs.search(filled, "model=mlp", order="-id", limit=2)) == [5, 2]


def test_that_comparing_text_with_a_number_is_a_clear_error(filled) -> None:
    with pytest.raises(FilterError, match="compares numbers"):
        runs.search(filled, "model>abc")


def test_that_parse_splits_comparisons_from_words() -> None:
    parsed = parse("val_accuracy>0.9 mlp State=failed")
    assert [(t.key, t.op, t.value) for t in parsed.terms] == [("val_accuracy", ">", "0.9"), ("State", "=", "failed")]
    assert parsed.words == ("mlp",)


def test_that_runs_ls_where_and_sort_use_the_same_search(filled, workspace, capsys) -> None:
    assert cli(["--home", str(workspace.root), "runs", "ls", "--where", "model=mlp val_accuracy>0.9",
                "--sort=-val_accuracy", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [run["id"] for run in printed] == [1]
    assert cli(["--home", str(workspace.root), "runs", "ls", "--where", "nope=1"]) == 2
    assert "no column 'nope'" in capsys.readouterr().err


# -- SQLite narrows, Python decides: the narrowing never drops a run the filter matches ---------------

# Cells and values chosen where SQL and Python could disagree: numbers as text, yes/no, case,
# text beyond ASCII, integers against floats, missing values.
CELLS = st.sampled_from([None, True, False, 0, 1, 2, 16, 300, -3, 0.1, 0.01, 1e-3, 0.5, 2.0, -0.0, 1e-9,
                         0.30000000000000004, "adam", "ADAM", "Adam ", "1e-3", "0.01", " 16", "yes", "no",
                         "Äpfel", "äpfel", "", "x y"])
VALUES = st.sampled_from(["adam", "ADAM", "1e-3", "0.001", "0.01", "16", "yes", "no", "true", "Äpfel", "äPFEL",
                          "0", "-0", "2", "0.5", "0.3", "1e-9", "300", "", "x"])


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cells=st.lists(st.tuples(CELLS, CELLS, CELLS), min_size=1, max_size=12),
    terms=st.lists(st.tuples(st.sampled_from(["a", "b", "val_accuracy", "final_val_accuracy", "model", "epochs"]),
                             st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), VALUES), min_size=1, max_size=3),
)
def test_that_sqlite_narrowing_returns_exactly_the_runs_the_python_filter_matches(
    tmp_path_factory, cells, terms
) -> None:
    store = Store(tmp_path_factory.mktemp("narrow") / "blueno.db")
    t = now()
    with store.write() as conn:
        experiment = conn.execute("INSERT INTO experiments (name, grid_text, created) VALUES ('e', '', ?)",
                                  (t,)).lastrowid
        for i, (a, b, metric) in enumerate(cells):
            params = {key: value for key, value in (("a", a), ("b", b)) if i % 4 or value is not None}
            conn.execute(
                "INSERT INTO runs (experiment_id, model, params, dataset, epochs_done, best, final, created) "
                "VALUES (?, ?, ?, 'd@1', ?, ?, ?, ?)",
                (experiment, ["mlp", "MLP", "cnn"][i % 3], dumps(params), i % 5,
                 dumps({"val_accuracy": metric}), dumps({"val_accuracy": a if i % 2 else metric}), t),
            )
    text = " ".join(f"{key}{op}{value}" for key, op, value in terms)
    try:
        everything = read_table(store)  # no narrowing: every run, matched in Python only
        match = parse(text).matcher(everything.keys.titles())
        expected = [row for row in everything.rows if match(row)]
    except FilterError:
        with pytest.raises(FilterError):
            runs.search(store, text)
        return
    found = runs.search(store, text, order="id")
    assert found.rows == expected, text
    assert found.total == len(cells)


# -- the run_keys table the triggers keep equals the names in the runs' JSON --------------------------


def _names_from_json(store: Store) -> set[tuple[int, str, str]]:
    rows = store.query(
        "SELECT coalesce(r.experiment_id, 0), 'p', k.key FROM runs r, json_each(r.params) k UNION "
        "SELECT coalesce(r.experiment_id, 0), 'm', k.key FROM runs r, json_each(r.best) k UNION "
        "SELECT coalesce(r.experiment_id, 0), 'm', k.key FROM runs r, json_each(r.final) k")
    return {tuple(row) for row in rows}


def _names_kept(store: Store) -> set[tuple[int, str, str]]:
    return {tuple(row) for row in store.query("SELECT experiment_id, kind, key FROM run_keys")}


def _json(value: dict | None) -> str | None:
    return None if value is None else dumps(value)


KEYS = st.sampled_from(["lr", "units", "seed", "val_accuracy", "loss", "odd key \"'", "ü"])
OBJECTS = st.one_of(st.none(), st.dictionaries(KEYS, st.integers(0, 3), max_size=4))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.sampled_from(["insert", "update", "delete", "move"]), st.integers(0, 5),
                                OBJECTS, OBJECTS, OBJECTS), min_size=1, max_size=25))
def test_that_the_kept_run_keys_always_equal_the_names_in_the_runs_json(tmp_path_factory, steps) -> None:
    store = Store(tmp_path_factory.mktemp("keys") / "blueno.db")
    t = now()
    with store.write() as conn:
        for name in ("a", "b"):
            conn.execute("INSERT INTO experiments (name, grid_text, created) VALUES (?, '', ?)", (name, t))
    for op, n, params, best, final in steps:
        with store.write() as conn:
            ids = [row[0] for row in conn.execute("SELECT id FROM runs ORDER BY id")]
            target = ids[n % len(ids)] if ids else None
            if op == "insert" or target is None:
                conn.execute("INSERT INTO runs (experiment_id, model, params, dataset, best, final, created) "
                             "VALUES (?, 'm', ?, 'd@1', ?, ?, ?)",
                             ([1, 2, None][n % 3], dumps(params or {}), _json(best),
                              _json(final), t))
            elif op == "update":
                conn.execute("UPDATE runs SET best = ?, final = ? WHERE id = ?",
                             (_json(best), _json(final), target))
            elif op == "move":
                conn.execute("UPDATE runs SET experiment_id = ?, params = ? WHERE id = ?",
                             ([1, 2, None][n % 3], dumps(params or {}), target))
            else:
                conn.execute("DELETE FROM runs WHERE id = ?", (target,))
        assert _names_kept(store) == _names_from_json(store), (op, n, params, best, final)
    assert store.query("SELECT count(*) FROM run_keys WHERE uses <= 0")[0][0] == 0
    store.close()


def test_that_a_database_from_before_run_keys_gets_them_filled_when_it_migrates(tmp_path) -> None:
    import sqlite3

    from blueno.store import MIGRATIONS, _split_sql

    path = tmp_path / "blueno.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for index, (_, sql) in enumerate(MIGRATIONS[:2]):  # the database as the release before this one left it
        for statement in _split_sql(sql):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {index + 1}")
    conn.execute("INSERT INTO experiments (name, grid_text, created) VALUES ('old', '', 0)")
    conn.execute("INSERT INTO runs (experiment_id, model, params, dataset, best, final, created) VALUES "
                 "(1, 'm', '{\"lr\": 0.1, \"units\": 8}', 'd@1', '{\"val_loss\": 1}', '{\"loss\": 2}', 0)")
    conn.close()
    store = Store(path)
    assert _names_kept(store) == {(1, "p", "lr"), (1, "p", "units"), (1, "m", "val_loss"), (1, "m", "loss")}
    assert runs.search(store).columns[-4:] == ["best loss", "best val_loss", "final loss", "final val_loss"]
    store.close()
