"""Helpers of the fault-injection suite: the ledger, waiting, and finding a workspace's processes."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import psutil
from waiting import wait_until

T = TypeVar("T")


def read_ledger(path: Path) -> list[tuple[int, int, float, float]]:
    """The stand-in's completions: (job, attempt, start, end), one per line, append-only."""
    if not path.exists():
        return []
    rows = [line.split(",") for line in path.read_text().splitlines() if line]
    return [(int(j), int(a), float(s), float(e)) for j, a, s, e in rows]


def completions(path: Path) -> collections.Counter[int]:
    """How many times each job completed, according to the ledger."""
    return collections.Counter(job for job, *_ in read_ledger(path))


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.02) -> T:
    """The shared polling helper (tests/waiting.py), under the name this suite uses."""
    return wait_until(predicate, timeout=timeout, interval=interval)


def workspace_processes(root: Path, spares: Callable[[], Iterable[int]] = tuple) -> list[psutil.Process]:
    """Every live process started for this workspace: trainers and whatever they spawned.

    The scheduler gives each trainer ``BLUENO_HOME``; descendants inherit it, even those that
    left the trainer's process group or session, so none can hide from this search.  ``spares``
    gives the pids of the scheduler's spare trainers still waiting for a job
    (``Scheduler.spare_pids``), which belong to no job; it is asked before and after the scan, so
    a spare started meanwhile is not mistaken for a job's process.  A spare that took a job
    counts like any trainer.
    """
    wanted = str(root)
    waiting = set(spares())
    found = []
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get("BLUENO_HOME") == wanted:
                found.append(proc)
        except psutil.Error:
            continue
    waiting |= set(spares())
    return [proc for proc in found if proc.pid not in waiting]


def alive(pid: int, started: float | None) -> bool:
    """Is this exact process (pid and start time) still running, and not a zombie?"""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) < 0.05
    except psutil.Error:
        return False
