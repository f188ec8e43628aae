"""Generate docs/cli.md from the real parser, so the reference never drifts from the code.

    python -m blueno.cli.reference > docs/cli.md

``tests/test_cli_reference.py`` fails when the committed file is out of date.
"""

from __future__ import annotations

import argparse
import os
import sys

from blueno.cli import build_parser

INTRO = """# Command-line reference

Every command is `blueno COMMAND …` (the console script installed into
`.venv/bin/blueno`), or equally `python main.py COMMAND …` from a checkout.
`python main.py --batch GRID` is `blueno batch GRID`. Each takes `--home DIR`
to choose the workspace (see [workspace.md](workspace.md)); commands that
list things take `--json` for scripts.

Exit status: 0 success, 1 a job of the grid failed (`batch`), 2 bad input
(the message names the file, the key or field, and the fix; nothing was
changed), 130 interrupted.

This page is generated from the parser: `python -m blueno.cli.reference > docs/cli.md`.
"""


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices.items())
    return []


def _sections(parser: argparse.ArgumentParser, path: list[str]) -> list[str]:
    out = []
    children = _subcommands(parser)
    if path:
        out += [f"{'#' * min(len(path) + 1, 4)} `blueno {' '.join(path)}`", "", "```text",
                parser.format_help().rstrip(), "```", ""]
    for name, child in children:
        out += _sections(child, [*path, name])
    return out


def render() -> str:
    os.environ["COLUMNS"] = "100"  # argparse wraps help to the terminal width: fix it
    parser = build_parser()
    parser.prog = "blueno"
    return INTRO + "\n" + "\n".join(_sections(parser, [])).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
