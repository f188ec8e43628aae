"""Blueno's entry point.

    python main.py                      open the desktop app on the workspace
    python main.py --batch GRID [...]   run a grid headless (same as `blueno batch GRID`)
    python main.py COMMAND [...]        any `blueno` command, e.g. `python main.py queue ls`

The GUI (and Qt) is imported only when it is needed, so batch mode starts fast
and runs on boxes without a display.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from blueno.cli import build_parser
    from blueno.cli import main as cli_main

    if "--batch" in argv:
        index = argv.index("--batch")
        return cli_main([*argv[:index], "batch", *argv[index + 1:]])
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    if any(arg in commands for arg in argv) or any(arg in ("-h", "--help", "--version") for arg in argv):
        return cli_main(argv)
    return run_gui(argv)


def run_gui(argv: list[str]) -> int:
    import argparse

    from blueno import BluenoError
    from blueno.workspace import Workspace

    parser = argparse.ArgumentParser(prog="main.py", description="Open the Blueno desktop app.")
    parser.add_argument("--home", metavar="DIR", help="workspace folder")
    parser.add_argument("--demo-setup", action="store_true",
                        help="create the demo dataset in the workspace first when it has none")
    args, qt_args = parser.parse_known_args(argv)
    try:
        workspace = Workspace.locate(args.home).ensure()
        if args.demo_setup:
            from blueno import datasets

            with workspace.open_store() as store:
                datasets.make_demo(workspace, store)
    except BluenoError as exc:
        print(f"blueno: error: {exc}", file=sys.stderr)
        return 2
    from gui.app import run

    return run(workspace, [sys.argv[0], *qt_args])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
