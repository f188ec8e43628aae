"""Runs as one flat table: fixed columns, then a column per parameter, then best and final metrics.

The app's runs table, :func:`blueno.runs.search` (``blueno runs ls``) and
:mod:`blueno.export` read runs through :func:`read_table`.  SQLite extracts
each parameter and metric into its own column (``json_extract``): parsing
JSON in Python cost seconds for 100,000 runs.  A reader that already holds
the table asks only for runs that are new or may still change.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from blueno.queue import JobState
from blueno.run_filter import RunFilter
from blueno.store import Store

# Jobs in these states may still change their run's row.
OPEN_STATES = (JobState.QUEUED, JobState.HELD, JobState.RUNNING)
# The fixed columns: title and SQL, in row order.
BASE_COLUMNS = (
    ("Run", "r.id"),
    ("State", "coalesce(j.state, 'succeeded')"),
    ("Experiment", "e.name"),
    ("Model", "r.model"),
    ("Dataset", "r.dataset"),
    ("Epochs", "r.epochs_done"),
    ("Duration", "r.ended - r.started"),
)
RUN, STATE = 0, 1
_FROM = " FROM runs r LEFT JOIN jobs j ON j.id = r.job_id LEFT JOIN experiments e ON e.id = r.experiment_id "
_OPEN = ", ".join(f"'{state}'" for state in OPEN_STATES)
_CHANGED = (
    "(r.id > :after OR r.id IN (SELECT value FROM json_each(:open)) "
    f"OR r.job_id IN (SELECT id FROM jobs WHERE state IN ({_OPEN})))"
)


@dataclass(frozen=True)
class RunKeys:
    """The parameter and metric names that are columns, in order."""

    params: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()

    def titles(self) -> list[str]:
        """Every column's title, in row order."""
        return ([title for title, _ in BASE_COLUMNS] + list(self.params)
                + [f"{section} {k}" for section in ("best", "final") for k in self.metrics])


@dataclass(frozen=True)
class RunsBatch:
    keys: RunKeys
    rows: list[tuple]
    full: bool  # the keys changed (or a first read): these rows replace all others
    searched: int = 0  # runs in scope before ``narrow`` (a full read); rows may be fewer


def _path(key: str) -> str:
    return "'$.\"" + key.replace("'", "''").replace('"', '\\"') + "\"'"


def _discover(conn: sqlite3.Connection, where: str, args: dict[str, Any]) -> RunKeys:
    """The parameter and metric names of the runs ``where`` selects (every run's JSON read)."""
    found = conn.execute(
        f"SELECT DISTINCT 'p', k.key FROM runs r, json_each(r.params) k WHERE {where} UNION "
        f"SELECT DISTINCT 'm', k.key FROM runs r, json_each(r.best) k WHERE {where} UNION "
        f"SELECT DISTINCT 'm', k.key FROM runs r, json_each(r.final) k WHERE {where}",
        args,
    ).fetchall()
    return _keys(found)


def _keys(found: Sequence[tuple[str, str]]) -> RunKeys:
    return RunKeys(
        tuple(sorted(k for kind, k in found if kind == "p")),
        tuple(sorted(k for kind, k in found if kind == "m")),
    )


def _known_keys(conn: sqlite3.Connection, experiment_id: int | None) -> RunKeys:
    """The names of all runs (or one experiment's), from the table the database's triggers keep."""
    if experiment_id is None:
        return _keys(conn.execute("SELECT DISTINCT kind, key FROM run_keys").fetchall())
    return _keys(conn.execute("SELECT kind, key FROM run_keys WHERE experiment_id = ?", (experiment_id,)).fetchall())


def column_sql(keys: RunKeys) -> list[str]:
    """The SQL of every column of a table with these keys, in row order (see :meth:`RunKeys.titles`)."""
    columns = [sql for _, sql in BASE_COLUMNS] + [f"json_extract(r.params, {_path(k)})" for k in keys.params]
    for section in ("best", "final"):
        columns += [f"json_extract(r.{section}, {_path(k)})" for k in keys.metrics]
    return columns


def read_table(
    store: Store, after_id: int = 0, open_ids: Sequence[int] = (), known: RunKeys | None = None,
    *, experiment_id: int | None = None, ids: Sequence[int] | None = None, narrow: RunFilter | None = None,
) -> RunsBatch:
    """Runs as tuples ordered by id: all of them (``after_id`` 0), or those after ``after_id``, in
    ``open_ids`` or with an open job; every run again when these bring a parameter or metric not in ``known``.

    ``experiment_id`` and ``ids`` restrict the runs read (a full read).  ``narrow``, a filter, lets
    SQLite skip runs that cannot match it (:meth:`RunFilter.sql_prefilter`: the rows returned may
    still include some that do not match, and must be matched with it).
    """
    args: dict[str, Any] = {"after": after_id, "open": json.dumps(list(open_ids))}
    scope = "1"
    if experiment_id is not None:
        scope = "r.experiment_id = :experiment"
        args["experiment"] = experiment_id
    if ids is not None:
        scope += " AND r.id IN (SELECT value FROM json_each(:ids))"
        args["ids"] = json.dumps(list(ids))
    with store.snapshot() as conn:
        full = after_id == 0 or known is None
        if not full:
            keys = _discover(conn, f"{scope} AND {_CHANGED}", args)
            assert known is not None
            full = not (set(keys.params) <= set(known.params) and set(keys.metrics) <= set(known.metrics))
        if full:
            where = scope
            keys = _discover(conn, scope, args) if ids is not None else _known_keys(conn, experiment_id)
        else:
            assert known is not None
            keys, where = known, f"{scope} AND {_CHANGED}"
        columns = column_sql(keys)
        searched = None
        if narrow:
            condition, narrow_args = narrow.sql_prefilter(keys.titles(), columns)
            if condition != "1":
                searched = conn.execute(f"SELECT count(*) FROM runs r WHERE {where}", args).fetchone()[0]
                where = f"{where} AND {condition}"
                args.update(narrow_args)
        cursor = conn.cursor()
        cursor.row_factory = None  # plain tuples: sqlite3.Row costs more than the query on 100,000 rows
        rows = cursor.execute(f"SELECT {', '.join(columns)} {_FROM} WHERE {where} ORDER BY r.id", args).fetchall()
    return RunsBatch(keys, rows, full, len(rows) if searched is None else searched)
