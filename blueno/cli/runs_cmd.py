"""``blueno runs …`` and ``blueno report``: the results of trainings, from any shell.

The library functions live in :mod:`blueno.runs` (shared with the GUI) and
:mod:`blueno.report`; the commands only format what they return.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Any

from blueno.cli.common import format_value, print_json, print_table
from blueno.evaluation import HEADLINE
from blueno.runs import (
    JOB_STATES,
    compare_runs,
    describe_run,
    evaluate_test,
    list_runs,
    make_ensemble,
    repeat_groups,
    repeat_run,
    score,
    search,
)
from blueno.workspace import Workspace


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("runs", help="list trainings, show, compare, test, repeat and ensemble them")
    sub = parser.add_subparsers(dest="runs_command", metavar="ACTION", required=True)

    ls = sub.add_parser("ls", help="list runs, newest first, or those a filter selects in the order asked")
    ls.add_argument("--experiment", type=int, metavar="N", help="only runs of experiment N")
    ls.add_argument("--state", choices=JOB_STATES, help="only runs whose job is in this state")
    ls.add_argument("--where", metavar="FILTER", default="",
                    help="the app's filter grammar, e.g. 'model=mlp val_accuracy>0.9 lr<=0.01' "
                    "(key=value, key<number, words; see docs/runs.md)")
    ls.add_argument("--sort", metavar="KEY", help="sort by a column, parameter or metric; --sort=-KEY sorts descending")
    ls.add_argument("--limit", type=int, metavar="N", help="at most N runs")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=cmd_ls)

    export = sub.add_parser(
        "export", help="write runs to a flat file: .db (SQLite for Datasette/pandas), .csv or .parquet")
    export.add_argument("out", metavar="FILE", help="the file to write; its suffix picks the format")
    export.add_argument("runs", type=int, nargs="*", metavar="RUN", help="these runs (default: all, or --where)")
    export.add_argument("--where", metavar="FILTER", default="", help="the runs the filter selects (as runs ls)")
    export.set_defaults(func=cmd_export)

    show = sub.add_parser("show", help="one run in full: parameters, metrics, evaluation, files")
    show.add_argument("run", type=int, metavar="RUN")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=cmd_show)

    compare = sub.add_parser("compare", help="runs side by side: parameters (differences marked *) and metrics")
    compare.add_argument("runs", type=int, nargs="+", metavar="RUN")
    compare.add_argument("--json", action="store_true", help="machine-readable output")
    compare.set_defaults(func=cmd_compare)

    test = sub.add_parser(
        "test", help="evaluate chosen runs on the held-out test split (stored, marked as test figures)")
    test.add_argument("runs", type=int, nargs="+", metavar="RUN")
    test.add_argument("--json", action="store_true", help="machine-readable output")
    test.set_defaults(func=cmd_test)

    pull = sub.add_parser("pull", help="download a run's model back from Cloud Storage (checksum-verified)")
    pull.add_argument("run", type=int, metavar="RUN")
    pull.set_defaults(func=cmd_pull)

    repeat = sub.add_parser("repeat", help="queue a run's configuration again with new seeds")
    repeat.add_argument("run", type=int, metavar="RUN")
    repeat.add_argument("--seeds", type=int, default=5, metavar="N", help="how many new seeds (default 5)")
    repeat.set_defaults(func=cmd_repeat)

    repeats = sub.add_parser("repeats", help="configurations run with several seeds: mean ± std of each metric")
    repeats.add_argument("--experiment", type=int, metavar="N", help="only runs of experiment N")
    repeats.add_argument("--json", action="store_true", help="machine-readable output")
    repeats.set_defaults(func=cmd_repeats)

    ensemble = sub.add_parser(
        "ensemble", help="average runs' predicted probabilities and record the ensemble as a run")
    ensemble.add_argument("runs", type=int, nargs="+", metavar="RUN")
    ensemble.add_argument("--name", help="a name for the ensemble")
    ensemble.add_argument("--test", action="store_true", help="also evaluate the held-out test split")
    ensemble.set_defaults(func=cmd_ensemble)

    report = commands.add_parser(
        "report", help="write a self-contained HTML report of a run or of an experiment")
    report.add_argument("target", metavar="RUN|EXPERIMENT",
                        help="a run id, or an experiment as exp:N, experiment:N or its name")
    report.add_argument("--experiment", action="store_true", help="the number is an experiment id, not a run")
    report.add_argument("--out", required=True, metavar="DIR", help="folder to write report.html into")
    report.set_defaults(func=cmd_report)


def _duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def cmd_ls(workspace: Workspace, args: argparse.Namespace) -> int:
    where = args.where + (f" state={args.state}" if args.state else "")
    with workspace.open_store() as store:
        found = search(store, where, args.sort, args.limit, experiment_id=args.experiment)
        by_id = {run["id"]: run for run in list_runs(store, ids=[row[0] for row in found.rows])}
    runs = [by_id[row[0]] for row in found.rows if row[0] in by_id]
    if args.json:
        print_json(runs)
        return 0
    if not runs:
        print("no runs" + (" match" if where.strip() else ""))
        return 0
    rows = [
        (run["id"], run["job_id"], run["experiment_id"], run["state"], run["model"], run["dataset"],
         f"{run['epochs_done']}/{run['epochs']}" if run["epochs"] else run["epochs_done"],
         run["monitor"], score(run), run["best_epoch"], _duration(run["duration"]))
        for run in runs
    ]
    headers = ("run", "job", "exp", "state", "model", "dataset", "epoch", "monitor", "best", "at epoch",
               "time")
    print_table(rows, headers)
    return 0


def cmd_export(workspace: Workspace, args: argparse.Namespace) -> int:
    from blueno.export import export_runs

    with workspace.open_store() as store:
        result = export_runs(store, args.out, run_ids=args.runs or None, filter=args.where)
    points = f" and {result.metric_points} metric points" if result.metric_points else ""
    print(f"{result.path}: {result.runs} runs{points} ({result.format})")
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
        best = f"{run['monitor']} {format_value(score(run))} at epoch {format_value(run['best_epoch'])}"
    fields = [
        ("run", run["id"]), ("kind", run["kind"]), ("job", run["job_id"]), ("experiment", run["experiment_id"]),
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
    for split, title in (("validation", "the saved model on the validation split"),
                         ("test", "the saved model on the held-out TEST split (test figures)")):
        part = evaluation.get(split)
        if isinstance(part, dict):
            rows = [(key, part.get(key)) for key in (*HEADLINE, "average_precision") if key in part]
            _section(f"{title}: {part.get('n')} samples, {part.get('n_wrong')} wrong", ("metric", "value"), rows)
            if part.get("youden"):
                youden = part["youden"]
                print(f"Youden's J {format_value(youden['j'])} at threshold {format_value(youden['threshold'])}: "
                      f"sensitivity {format_value(youden['sensitivity'])}, "
                      f"specificity {format_value(youden['specificity'])}")
            _confusion(part)
    return 0


def _confusion(part: dict[str, Any]) -> None:
    classes, matrix = part.get("classes"), part.get("confusion")
    if classes and matrix and len(classes) <= 20:
        _section("confusion matrix (rows: true class, columns: predicted)", ("true", *map(str, classes)),
                 [(name, *row) for name, row in zip(classes, matrix, strict=True)])


def cmd_compare(workspace: Workspace, args: argparse.Namespace) -> int:
    with workspace.open_store() as store:
        comparison = compare_runs(store, args.runs)
    if args.json:
        print_json(asdict(comparison))
        return 0
    rows = [(("* " if p["differs"] else "  ") + p["name"], *p["values"]) for p in comparison.params]
    print_table(rows, ("parameter", *comparison.labels))
    rows = []
    for m in comparison.metrics:
        values = [format_value(v) + (" <" if i == m["best"] else "") for i, v in enumerate(m["values"])]
        rows.append((m["name"] + (" (TEST)" if m["test"] else ""), *values))
    print()
    print_table(rows, ("metric (< best)", *comparison.labels))
    return 0


def cmd_test(workspace: Workspace, args: argparse.Namespace) -> int:
    with workspace.open_store() as store:
        results = evaluate_test(workspace, store, args.runs)
    if args.json:
        print_json(results)
        return 0
    rows = [(run_id, r["n"], *(r.get(k) for k in HEADLINE)) for run_id, r in results.items()]
    print("held-out TEST split (stored with each run as evaluation.test):")
    print_table(rows, ("run", "samples", *HEADLINE))
    return 0


def cmd_pull(workspace: Workspace, args: argparse.Namespace) -> int:
    from blueno.cli.common import run_with_progress
    from blueno.datasets import remote

    with workspace.open_store() as store:
        print(run_with_progress(remote.pull_run_model, workspace, store, args.run))
    return 0


def cmd_repeat(workspace: Workspace, args: argparse.Namespace) -> int:
    with workspace.open_store() as store:
        added = repeat_run(store, args.run, args.seeds)
    for job_id, run_id, seed in added:
        print(f"queued job {job_id} (run {run_id}) with seed {seed}")
    print(f"{len(added)} repeats of run {args.run} queued; `blueno runs repeats` shows mean ± std as they finish")
    return 0


def _plus_minus(stat: dict[str, Any]) -> str:
    if stat["mean"] is None:
        return "-"
    text = format_value(stat["mean"])
    return text + (f" ± {format_value(stat['std'])}" if stat["std"] is not None else "") + f" (n={stat['n']})"


def cmd_repeats(workspace: Workspace, args: argparse.Namespace) -> int:
    with workspace.open_store() as store:
        groups = repeat_groups(store, args.experiment)
    if args.json:
        print_json([asdict(g) for g in groups])
        return 0
    if not groups:
        print("no configuration has been run with several seeds; `blueno runs repeat RUN --seeds 5` queues some")
        return 0
    for group in groups:
        print(f"\n{group.model} " + " ".join(f"{k}={format_value(v)}" for k, v in sorted(group.params.items())))
        print(f"runs {', '.join(map(str, group.run_ids))}; seeds {', '.join(map(str, group.seeds))}")
        rows = [(name + (" (TEST)" if name.startswith("test.") else ""), _plus_minus(stat))
                for name, stat in group.stats.items()]
        print_table(rows, ("metric", "mean ± std"))
    return 0


def cmd_ensemble(workspace: Workspace, args: argparse.Namespace) -> int:
    with workspace.open_store() as store:
        run_id = make_ensemble(workspace, store, args.runs, name=args.name, test=args.test)
        run = describe_run(store, workspace, run_id)
    print(f"ensemble of runs {', '.join(map(str, args.runs))} recorded as run {run_id}")
    for split in ("validation", "test"):
        part = (run["evaluation"] or {}).get(split)
        if part:
            figures = ", ".join(f"{k} {format_value(part.get(k))}" for k in HEADLINE if k in part)
            print(f"{split.upper() if split == 'test' else split}: {figures}")
    return 0


def cmd_report(workspace: Workspace, args: argparse.Namespace) -> int:
    from blueno import report

    with workspace.open_store() as store:
        kind, ident = report.parse_target(store, args.target, args.experiment)
        if kind == "run":
            path = report.write_run_report(workspace, store, ident, Path(args.out))
        else:
            path = report.write_experiment_report(workspace, store, ident, Path(args.out))
    print(f"wrote {path}")
    return 0
