"""Process control for trainers: process trees, stopping them, reaping, the subreaper.

A trainer runs in its own process group; whatever it starts (data loaders,
shell pipelines, a grandchild that called ``setsid``) must end with it.  These
helpers signal a whole tree (the group and every descendant found through
``psutil``), wait for it without blocking the scheduler's loop
(:class:`Launched`), and reap what is left, so nothing a job started outlives
it, not even as a zombie.  Nothing here knows about the database.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import psutil

GRACE_S = 10.0  # SIGTERM → SIGKILL


def process_alive(pid: int, started: float | None) -> bool:
    """Is *this* process (pid and start time: pids are reused) still running?"""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) < 0.05
    except psutil.Error:
        return False


def kill_trees(pids: Sequence[int], grace: float = GRACE_S) -> None:
    """Stop processes, their process groups and every descendant: SIGTERM, grace, SIGKILL.

    All are signalled first and waited for together, so stopping many costs
    one grace period, not one each.  Blocking; the scheduler's loop uses
    :class:`Launched` to do the same without waiting.
    """
    members: dict[int, list[psutil.Process]] = {}
    for pid in pids:
        try:
            members[pid] = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            members[pid] = []
        _signal_group(pid, signal.SIGTERM, members[pid])
    everyone = [proc for group in members.values() for proc in group]
    if _wait_gone(everyone, grace):
        return
    for pid, group in members.items():
        _signal_group(pid, signal.SIGKILL, group)
    _wait_gone(everyone, 2.0)


def _wait_gone(processes: Sequence[psutil.Process], timeout: float) -> bool:
    """Wait until none of ``processes`` runs; a zombie counts as gone (whoever reaps it, it holds nothing)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in processes if _running(p)]
        if not alive:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux ``PR_SET_CHILD_SUBREAPER``).

    A trainer's grandchildren whose parent died are re-parented to the
    scheduler instead of init, so it can kill and reap them: nothing a job
    started outlives it, not even as a zombie.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def reap(processes: set[int]) -> set[int]:
    """Collect the exit status of those of ``processes`` that are our finished children; the rest remain."""
    remaining = set()
    for pid in processes:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not (or no longer) our child: gone, or someone else's to reap
            if psutil.pid_exists(pid) and process_alive(pid, None):
                remaining.add(pid)
            continue
        if done == 0:
            remaining.add(pid)
    return remaining


def _signal_group(pgid: int, sig: int, members: Sequence[psutil.Process]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    for member in members:  # descendants that left the group (setsid) too
        with contextlib.suppress(psutil.Error):
            member.send_signal(sig)


@dataclass
class Launched:
    """A trainer process the scheduler started and supervises."""

    job: Any  # blueno.queue.Job
    slot: Any  # blueno.scheduler.Slot
    popen: subprocess.Popen[bytes]
    log: IO[bytes]
    pidfd: int | None
    kill_at: float | None = None  # set once SIGTERM was sent
    interrupted: bool = False  # stopped by the scheduler, not by the user or a crash
    members: list[psutil.Process] = field(default_factory=list)
    source: Any = None  # where its events are read from (blueno.events.FileSource)
    next_ingest: float = 0.0  # monotonic time of the next routine ingest
    failure: str | None = None  # why the scheduler stopped it (its events could not be recorded)

    def poll(self) -> int | None:
        """The returncode once the trainer exited (``blueno.cluster.backend.RayLaunched`` has the same)."""
        return self.popen.poll()

    def terminate(self, grace: float, *, interrupted: bool) -> None:
        """SIGTERM the group now; :meth:`escalate` sends SIGKILL after ``grace``."""
        self.interrupted = self.interrupted or interrupted
        if self.kill_at is not None:
            return
        try:
            self.members = psutil.Process(self.popen.pid).children(recursive=True)
        except psutil.Error:
            self.members = []
        _signal_group(self.popen.pid, signal.SIGTERM, self.members)
        self.kill_at = time.monotonic() + grace

    def escalate(self) -> None:
        """SIGKILL once the grace is over, to the group and every descendant, including those born since SIGTERM.

        A trainer that ignores SIGTERM may start a process in a session of its
        own during the grace period (a warm trainer, running its job's code at
        once, easily does): scanning again now keeps it from escaping.
        """
        if self.kill_at is not None and time.monotonic() >= self.kill_at:
            try:
                known = {member.pid for member in self.members}
                self.members += [child for child in psutil.Process(self.popen.pid).children(recursive=True)
                                 if child.pid not in known]
            except psutil.Error:
                pass  # the trainer is gone: its descendants were scanned at SIGTERM
            _signal_group(self.popen.pid, signal.SIGKILL, self.members)

    def cleanup(self) -> set[int]:
        """After the trainer exits: nothing it started may outlive it; returns the pids to reap."""
        _signal_group(self.popen.pid, signal.SIGKILL, self.members)
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        self.log.close()
        return {member.pid for member in self.members}


