"""``blueno queue …``: look at and steer the job queue (from any shell, while jobs run)."""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict

from blueno import actions
from blueno.cli.common import print_json, print_table
from blueno.queue import JobQueue, JobState
from blueno.workspace import Workspace


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("queue", help="list, add, cancel, retry, hold or prioritize jobs")
    sub = parser.add_subparsers(dest="queue_command", metavar="ACTION", required=True)

    ls = sub.add_parser("ls", help="list jobs (all but finished ones, unless --all)")
    ls.add_argument("--all", action="store_true", help="include succeeded, failed and cancelled jobs")
    ls.add_argument("--state", choices=[str(s) for s in JobState], help="only jobs in this state")
    ls.add_argument("--experiment", type=int, metavar="N", help="only jobs of experiment N")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=cmd_ls)

    add = sub.add_parser("add", help="queue a grid for the running (or next) scheduler without running it")
    add.add_argument("grid", metavar="GRID")
    add.set_defaults(func=cmd_add)

    for name, helptext in (
        ("cancel", "cancel jobs: queued ones at once, running ones are stopped (SIGTERM, grace, SIGKILL)"),
        ("retry", "queue failed or cancelled jobs again"),
        ("hold", "keep queued jobs from starting"),
        ("release", "let held jobs start again"),
    ):
        action = sub.add_parser(name, help=helptext)
        action.add_argument("ids", nargs="+", type=int, metavar="ID")
        action.set_defaults(func=cmd_transition, action=name)

    prio = sub.add_parser("prioritize", help="set a job's priority (higher runs first; default 0)")
    prio.add_argument("ids", nargs="+", type=int, metavar="ID")
    prio.add_argument("priority", type=int, metavar="N")
    prio.set_defaults(func=cmd_prioritize)


def _age(t: float | None) -> str:
    if t is None:
        return "-"
    seconds = int(time.time() - t)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def cmd_ls(workspace: Workspace, args: argparse.Namespace) -> int:
    with workspace.open_store() as store:
        jobs = JobQueue(store).jobs(state=args.state, experiment_id=args.experiment)
    if not (args.all or args.state):
        jobs = [job for job in jobs if not job.state.is_terminated]
    if args.json:
        print_json([asdict(job) for job in jobs])
        return 0
    if not jobs:
        print("no jobs" + ("" if args.all else " waiting or running (--all shows finished ones)"))
        return 0
    rows = [
        (job.id, job.run_id, job.experiment_id, job.shown_state, job.model, job.priority, job.attempt,
         f"{job.epoch}/{job.epochs}" if job.epochs else job.epoch,
         job.slot if job.state == "running" and not job.placing else None,
         _age(job.claimed) if job.state == "running" else None, (job.error or "")[:60])
        for job in jobs
    ]
    print_table(rows, ("job", "run", "exp", "state", "model", "prio", "attempt", "epoch", "slot", "running",
                       "error"))
    return 0


def cmd_add(workspace: Workspace, args: argparse.Namespace) -> int:
    from blueno.cli.batch_cmd import describe_submit

    with workspace.open_store() as store:
        _, result = actions.submit_grid(workspace, store, args.grid)
    print(describe_submit(args.grid, result))
    return 0


def cmd_transition(workspace: Workspace, args: argparse.Namespace) -> int:
    with workspace.open_store() as store:
        result = actions.TRANSITIONS[args.action](workspace, store, args.ids)
    for outcome, ids in result.items():
        if ids:
            print(f"{outcome}: {', '.join(map(str, ids))}")
    return 0


def cmd_prioritize(workspace: Workspace, args: argparse.Namespace) -> int:
    with workspace.open_store() as store:
        actions.set_priority(store, args.ids, args.priority)
    print(f"priority {args.priority}: {', '.join(map(str, args.ids))}")
    return 0
