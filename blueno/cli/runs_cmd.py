"""``blueno runs …``: the results of trainings, from any shell.

``list_runs`` and ``describe_run`` are the library functions; the commands
only format what they return.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from blueno import BluenoError, metrics
from blueno.cli.common import format_value, print_json, print_table
from blueno.store import Store
from blueno.workspace import Workspace

JOB_STATES = ("queued", "held", "running", "succeeded", "failed", "cancelled")
_JSON_COLUMNS = ("params", "final", "best", "evaluation")

_SELECT = """
    SELECT runs.*, jobs.state, jobs.attempt, jobs.epoch AS job_epoch, jobs.epochs, jobs.error, jobs.slot
    FROM runs LEFT JOIN jobs ON jobs.id = runs.job_id
"""


def _row(row: Any) -> dict[str, Any]:
    run = dict(row)
    for column in _JSON_COLUMNS:
        run[column] = json.loads(run[column]) if run[column] else None
    started, ended = run["started"], run["ended"]
    if started is not None and ended is None and run["state"] == "running":
        ended = time.time()
    run["duration"] = ended - started if started is not None and ended is not None else None
    return run


def list_runs(
    store: Store, *, experiment_id: int | None = None, state: str | None = None
) -> list[dict[str, Any]]:
    """Runs with their job's state, newest first; JSON columns parsed, ``duration`` in seconds."""
    where, params = [], []
    if experiment_id is not None:
        where.append("runs.experiment_id = ?")
        params.append(experiment_id)
    if state is not None:
        where.append("jobs.state = ?")
        params.append(state)
    sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY runs.id DESC"
    return [_row(row) for row in store.query(sql, params)]


def describe_run(store: Store, workspace: Workspace, run_id: int) -> dict[str, Any]:
    """One run in full: parameters, final and best metrics, evaluation, paths, latest metric values."""
    row = store.query_one(_SELECT + " WHERE runs.id = ?", (run_id,))
    if row is None:
        raise BluenoError(f"there is no run {run_id}; `blueno runs ls` lists them")
    run = _row(row)
    for column in ("model_path", "log_path"):
        if run[column]:
            run[column] = str(workspace.root / run[column])
    run["latest_metrics"] = metrics.latest(store, [run_id]).get(run_id, {})
    return run


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("runs", help="list trainings and show their results")
    sub = parser.add_subparsers(dest="runs_command", metavar="ACTION", required=True)

    ls = sub.add_parser("ls", help="list runs, newest first")
    ls.add_argument("--experiment", type=int, metavar="N", help="only runs of experiment N")
    ls.add_argument("--state", choices=JOB_STATES, help="only runs whose job is in this state")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=cmd_ls)

    show = sub.add_parser("show", help="one run in full: parameters, metrics, dataset, files")
    show.add_argument("run", type=int, metavar="RUN")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=cmd_show)


def _duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _best_value(run: dict[str, Any]) -> float | None:
    return (run["best"] or {}).get(run["monitor"]) if run["monitor"] else None


def cmd_ls(workspace: Workspace, args: argparse.Namespace) -> int:
    with workspace.open_store() as store:
        runs = list_runs(store, experiment_id=args.experiment, state=args.state)
    if args.json:
        print_json(runs)
        return 0
    if not runs:
        print("no runs")
        return 0
    rows = [
        (run["id"], run["job_id"], run["experiment_id"], run["state"], run["model"], run["dataset"],
         f"{run['epochs_done']}/{run['epochs']}" if run["epochs"] else run["epochs_done"],
         run["monitor"], _best_value(run), run["best_epoch"], _duration(run["duration"]))
        for run in runs
    ]
    headers = ("run", "job", "exp", "state", "model", "dataset", "epoch", "monitor", "best", "at epoch",
               "time")
    print_table(rows, headers)
    return 0


def _section(title: str, headers: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    if rows:
        print(f"\n{title}")
        print_table(rows, headers)


def cmd_show(workspace: Workspace, args: argparse.Namespace) -> int:
    with workspace.open_store() as store:
        run = describe_run(store, workspace, args.run)
    if args.json:
        print_json(run)
        return 0
    best = None
    if run["monitor"]:
        best = f"{run['monitor']} {format_value(_best_value(run))} at epoch {format_value(run['best_epoch'])}"
    fields = [
        ("run", run["id"]), ("job", run["job_id"]), ("experiment", run["experiment_id"]),
        ("state", run["state"]), ("attempt", run["attempt"]), ("model", run["model"]),
        ("dataset", run["dataset"]), ("epochs", f"{run['epochs_done']} of {format_value(run['epochs'])}"),
        ("best", best),
        ("time", _duration(run["duration"])), ("host", run["host"]), ("gpu", run["gpu"]),
        ("model file", run["model_path"]), ("log", run["log_path"]), ("error", run["error"]),
    ]
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        print(f"{name.ljust(width)}  {format_value(value)}")
    _section("parameters", ("parameter", "value"), sorted((run["params"] or {}).items()))
    best, final = run["best"] or {}, run["final"] or {}
    _section("metrics", ("metric", "best epoch", "last epoch"),
             [(key, best.get(key), final.get(key)) for key in sorted({*best, *final})])
    evaluation = run["evaluation"] or {}
    _section("saved model on the test split", ("metric", "value"),
             sorted((k, v) for k, v in evaluation.items() if k != "split"))
    return 0
