"""The command line: ``blueno …`` and ``python main.py --batch GRID``.

Each command module registers its sub-commands and is a thin layer over a
library function the GUI also calls.  A command function takes the workspace
and the parsed arguments and returns the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from blueno import BluenoError, __version__
from blueno.workspace import Workspace

# Order here is the order of ``blueno --help``.
COMMAND_MODULES = (
    "blueno.cli.batch_cmd",
    "blueno.cli.grid_cmd",
    "blueno.cli.queue_cmd",
    "blueno.cli.scheduler_cmd",
    "blueno.cli.runs_cmd",
    "blueno.cli.data_cmd",
    "blueno.cli.sync_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blueno",
        description="Blueno: datasets, grids of Keras trainings on every GPU, results you can trust.",
    )
    parser.add_argument("--version", action="version", version=f"blueno {__version__}")
    parser.add_argument(
        "--home", metavar="DIR",
        help="workspace folder (default: $BLUENO_HOME, else the repository root in a checkout, "
        "else ~/.local/share/blueno)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a command module not written yet
                continue
            raise
        module.register(commands)
    _accept_home_anywhere(commands)
    return parser


def _accept_home_anywhere(commands: argparse._SubParsersAction) -> None:
    """Let ``--home`` follow the command too (``main.py --batch grid.toml --home DIR``)."""
    for sub in set(commands.choices.values()):
        if "--home" not in sub._option_string_actions:
            sub.add_argument("--home", metavar="DIR", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                _accept_home_anywhere(action)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        workspace = Workspace.locate(args.home)
        return int(args.func(workspace, args) or 0)
    except BluenoError as exc:
        print(f"blueno: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("blueno: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `blueno grid show … | head`: the reader left, that is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (the Python docs' recipe)
        return 0


if __name__ == "__main__":
    sys.exit(main())
