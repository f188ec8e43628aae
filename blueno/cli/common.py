"""Small output helpers shared by the command modules."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

from blueno.datasets.task import Progress, Task


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> None:
    """A plain aligned text table (no colours: the output is also read by scripts and logs)."""
    cells = [[format_value(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


class TerminalProgress:
    """A one-line progress bar on stderr, redrawn at most ten times a second (silent when not a TTY)."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self._last = 0.0

    def __call__(self, p: Progress) -> None:
        if not self.enabled:
            return
        moment = time.monotonic()
        if moment - self._last < 0.1 and p.files_done < p.files_total:
            return
        self._last = moment
        width = 30
        filled = int(p.fraction * width)
        counts = f"{p.files_done}/{p.files_total} files" if p.files_total else ""
        size = f"{p.bytes_done / 1e6:.1f}/{p.bytes_total / 1e6:.1f} MB" if p.bytes_total else ""
        line = f"{p.stage:<11} [{'#' * filled}{'.' * (width - filled)}] {counts} {size} {p.current[-30:]}"
        sys.stderr.write("\r" + line[:110].ljust(110))
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 110 + "\r")


def run_with_progress(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a long library function with a terminal progress bar (Ctrl-C: it undoes unfinished work)."""
    from blueno.datasets.importing import sigterm_as_interrupt

    bar = TerminalProgress()
    task = Task(bar)
    try:
        with sigterm_as_interrupt():  # SIGTERM undoes unfinished work like Ctrl-C
            return fn(*args, task=task, **kwargs)
    finally:
        bar.done()
