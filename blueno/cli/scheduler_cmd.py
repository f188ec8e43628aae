"""``blueno scheduler …``: see and steer the workspace's scheduler process from any shell.

The same library calls as the app's Start, Pause, Resume and Stop buttons
(:mod:`blueno.service`).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict

from blueno import service
from blueno.cli.common import print_json
from blueno.scheduler import active_scheduler
from blueno.workspace import Workspace


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("scheduler", help="start, pause, resume or stop the workspace's scheduler")
    sub = parser.add_subparsers(dest="scheduler_command", metavar="ACTION", required=True)
    status = sub.add_parser("status", help="which scheduler runs on the workspace, and its state")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)
    start = sub.add_parser("start", help="start a scheduler process in the background (as the app's Start)")
    start.add_argument("--no-sync", action="store_true", help="do not sync results to Elasticsearch")
    start.set_defaults(func=cmd_start)
    for name, helptext in (
        ("pause", "start no new job; running ones go on"),
        ("resume", "start queued jobs again"),
        ("stop", "stop the scheduler; running jobs checkpoint and are requeued to resume later"),
    ):
        action = sub.add_parser(name, help=helptext)
        action.set_defaults(func=cmd_control, action=name)
    stop = sub.choices["stop"]
    stop.add_argument("--wait", type=float, metavar="S", default=60.0,
                      help="wait up to S seconds for it to end (default 60; 0: do not wait)")


def cmd_status(workspace: Workspace, args: argparse.Namespace) -> int:
    info = active_scheduler(workspace)
    if args.json:
        print_json(asdict(info) if info else None)
    elif info is None:
        print(f"no scheduler runs on {workspace.root}")
    else:
        print(f"{info.mode} scheduler, pid {info.pid} on {info.host}: {info.state}, slots {', '.join(info.slots)}")
    return 0


def cmd_start(workspace: Workspace, args: argparse.Namespace) -> int:
    process = service.start_scheduler(workspace, sync=not args.no_sync)
    print(f"scheduler started, pid {process.pid}; its output goes to {workspace.logs_dir / service.LOG_NAME}")
    return 0


def cmd_control(workspace: Workspace, args: argparse.Namespace) -> int:
    info = service.control_scheduler(workspace, args.action)
    print(f"{args.action}: {info.mode} scheduler, pid {info.pid}")
    if args.action == "stop" and args.wait > 0 and not service.wait_stopped(workspace, args.wait):
        print(f"still stopping after {args.wait:g} s (trainers checkpoint first)")
        return 1
    return 0
