"""``blueno runs export``: runs as a flat file for Datasette, pandas or a paper's table.

The rows are the app's runs table (:mod:`blueno.run_table`): one row per run,
a column per parameter, best and final metric; the same filter grammar
selects them.  Formats, from the file's suffix:

- ``.db`` / ``.sqlite``: a SQLite file written with sqlite-utils (typed
  columns, a ``runs`` table with ``run`` as primary key and a ``metrics``
  table of every curve point: ``run, key, step, value``), ready for
  ``datasette runs.db`` or ``pandas.read_sql``.
- ``.csv``: the runs table only.
- ``.parquet``: the runs table, when pyarrow is installed.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blueno import BluenoError, runs
from blueno.store import Store

FORMATS = {".db": "sqlite", ".sqlite": "sqlite", ".sqlite3": "sqlite", ".csv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    runs: int
    metric_points: int = 0


def column_names(titles: list[str]) -> list[str]:
    """Column titles as identifiers pandas and SQL take without quoting: ``best val_accuracy`` →
    ``best_val_accuracy``, ``Run`` → ``run``; a parameter named like a fixed column gets ``param_``."""
    names: list[str] = []
    for title in titles:
        name = re.sub(r"\W+", "_", title.strip()).strip("_").lower() or "column"
        while name in names:
            name = f"param_{name}"
        names.append(name)
    return names


def export_runs(
    store: Store, path: str | Path, *, run_ids: list[int] | None = None, filter: str = "",
) -> ExportResult:
    """Write the chosen runs (``run_ids``, else those ``filter`` selects, else all) to ``path``."""
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise BluenoError(f"{path}: unknown export format {path.suffix or '(no suffix)'!r}; name the file "
                          f"*.db (SQLite, for Datasette or pandas), *.csv or *.parquet")
    if kind == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise BluenoError(f"{path}: Parquet needs pyarrow, which is not installed here; `pip install pyarrow`, "
                              "or export to .csv or .db (pandas reads both)") from None
    found = runs.search(store, filter, order="id")
    rows = found.rows if run_ids is None else [row for row in found.rows if row[0] in set(run_ids)]
    if run_ids is not None:
        missing = sorted(set(run_ids) - {row[0] for row in rows})
        if missing:
            raise BluenoError(f"no such run: {', '.join(map(str, missing))}; `blueno runs ls` lists them")
    names = column_names(found.columns)
    records = [dict(zip(names, row, strict=True)) for row in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "csv":
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(names)
            writer.writerows(rows)
        return ExportResult(path, kind, len(rows))
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), path)
        return ExportResult(path, kind, len(rows))
    return _write_sqlite(store, path, names, records)


def _write_sqlite(store: Store, path: Path, names: list[str], records: list[dict[str, Any]]) -> ExportResult:
    import sqlite_utils

    if path.exists():
        path.unlink()  # an export is a snapshot: never half old, half new
    db = sqlite_utils.Database(path)
    try:
        db["runs"].insert_all(records, pk="run", columns=_types(names, records), alter=True)
        ids = [record["run"] for record in records]
        points = 0
        with store.snapshot() as conn:
            cursor = conn.execute(
                "SELECT run_id AS run, key, step, value FROM metrics WHERE run_id IN "
                "(SELECT value FROM json_each(?)) ORDER BY run_id, key, step", (json_ids(ids),))
            batch = cursor.fetchmany(10_000)
            while batch:
                db["metrics"].insert_all(
                    (dict(row) for row in batch), pk=("run", "key", "step"),
                    foreign_keys=[("run", "runs", "run")],
                )
                points += len(batch)
                batch = cursor.fetchmany(10_000)
        if points:
            db["metrics"].create_index(["key"], if_not_exists=True)
    finally:
        db.close()
    return ExportResult(path, "sqlite", len(records), points)


def _types(names: list[str], records: list[dict[str, Any]]) -> dict[str, type]:
    """A column's type from its values (a column of None would otherwise be guessed as text)."""
    types: dict[str, type] = {}
    for name in names:
        values = [r[name] for r in records if r[name] is not None]
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            types[name] = int
        elif values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            types[name] = float
        else:
            types[name] = str
    return types


def json_ids(ids: list[int]) -> str:
    import json

    return json.dumps(ids)
