"""Blueno's entry point.

    python main.py [--home DIR]         open the desktop app on the workspace
    python main.py --batch GRID [...]   run a grid headless (same as `blueno batch GRID`)
    python main.py COMMAND [...]        any `blueno` command, e.g. `python main.py queue ls`

The GUI (and Qt) is imported only when it is needed, so batch mode starts fast
and runs on boxes without a display.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from blueno.cli import main as cli_main

    if "--batch" in argv:
        index = argv.index("--batch")
        return cli_main([*argv[:index], "batch", *argv[index + 1:]])
    gui_options, rest = _gui_parser().parse_known_args(argv)
    if any(not arg.startswith("-") for arg in rest) or any(arg in ("-h", "--help", "--version") for arg in rest):
        return cli_main(argv)  # a command (or a typo of one: the CLI says which commands exist)
    return run_gui(gui_options, rest)


def _gui_parser():
    import argparse

    parser = argparse.ArgumentParser(prog="main.py", add_help=False)
    parser.add_argument("--home", metavar="DIR")
    parser.add_argument("--demo-setup", action="store_true")
    return parser


def run_gui(args, qt_args: list[str]) -> int:
    """Open the desktop app; ``--demo-setup`` first creates the demo dataset when it is missing."""
    from blueno import BluenoError
    from blueno.workspace import Workspace

    try:
        workspace = Workspace.locate(args.home).ensure()
        if args.demo_setup:
            from blueno import datasets

            with workspace.open_store() as store:
                datasets.make_demo(workspace, store)
    except BluenoError as exc:
        print(f"blueno: error: {exc}", file=sys.stderr)
        return 2
    if not _has_display():
        print(
            "blueno: error: no display to open the app on (DISPLAY and WAYLAND_DISPLAY are unset). "
            "On a headless box run grids with `python main.py --batch GRID` (or `make demo`); "
            "for the app use `ssh -X`, or `xvfb-run python main.py` to render off-screen.",
            file=sys.stderr,
        )
        return 2
    from gui.app import run

    return run(workspace, [sys.argv[0], *qt_args])


def _has_display() -> bool:
    import os

    if not sys.platform.startswith("linux"):
        return True
    if os.environ.get("QT_QPA_PLATFORM", "").split(":")[0] in ("offscreen", "minimal", "vnc", "eglfs", "linuxfb"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
