"""Shared pieces of the head-to-head benchmarks: paths, timing, the result rows and the machine."""

from __future__ import annotations

import os
import platform
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
for _path in (str(ROOT), str(ROOT / "tests")):
    if _path not in sys.path:
        sys.path.insert(0, _path)


@dataclass(frozen=True)
class Row:
    """One line of the table: what was measured, Blueno's figure, the peer's, and the target."""

    measure: str
    unit: str
    blueno: float
    peer: float
    peer_name: str
    higher_is_better: bool
    target: float | None = None  # the ratio to reach (Blueno vs the peer, "x times better")

    @property
    def ratio(self) -> float:
        """How many times better Blueno is (>1: better)."""
        if self.higher_is_better:
            return self.blueno / self.peer if self.peer else float("inf")
        return self.peer / self.blueno if self.blueno else float("inf")

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        return "met" if self.ratio >= self.target else "MISSED"


def median_time(operation: Callable[[], object], repeat: int = 5) -> float:
    """Median wall time of ``operation`` in seconds (after one warm-up call)."""
    operation()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        operation()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    for package in ("blueno", "mlflow", "huey", "sqlalchemy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.4f}"


def print_table(rows: list[Row], out=sys.stdout) -> None:
    headers = ("measure", "unit", "Blueno", "peer", "peer value", "Blueno is", "target", "")
    lines = [
        (r.measure, r.unit, fmt(r.blueno), r.peer_name, fmt(r.peer), f"{r.ratio:.1f}x",
         "" if r.target is None else f">= {r.target:g}x", r.verdict)
        for r in rows
    ]
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *lines, strict=True)]
    for line in (headers, tuple("-" * w for w in widths), *lines):
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip(), file=out)
