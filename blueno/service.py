"""The workspace's scheduler as a process of its own: start it, pause, resume and stop it from anywhere.

``blueno batch`` without a grid (``python main.py --batch`` with no grid) is
that process: it serves the queue until stopped.  The GUI's Start launches it
with :func:`start_scheduler` and attaches to it as to any batch; Pause,
Resume and Stop are signals to the process the workspace names (its
``schedulers`` row and the lock it holds), so the CLI (``blueno scheduler
pause``) and the window do the same thing, and the trainings go on when the
window closes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from blueno import BluenoError
from blueno.scheduler import SchedulerInfo, active_scheduler
from blueno.workspace import Workspace

# What each control asks of the scheduler process (handled in blueno.cli.batch_cmd).
SIGNALS = {"pause": signal.SIGUSR1, "resume": signal.SIGUSR2, "stop": signal.SIGTERM}
SERVICE_MODE = "service"  # the ``schedulers.mode`` of a scheduler that runs without a grid
LOG_NAME = "scheduler.log"
_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


def scheduler_command(workspace: Workspace, *, sync: bool = True) -> list[str]:
    """The command line of a scheduler process serving ``workspace`` until stopped."""
    command = [sys.executable, "-P", "-m", "blueno", "--home", str(workspace.root), "batch"]  # -P: cwd not on sys.path
    return command if sync else [*command, "--no-sync"]


def start_scheduler(workspace: Workspace, *, sync: bool = True, timeout: float = 30.0) -> subprocess.Popen:
    """Launch the scheduler process and return once it holds the workspace (or say why it could not).

    It runs in a session of its own, so it outlives the caller; its output
    goes to ``logs/scheduler.log``.  The caller should ``poll()`` the returned
    handle now and then so that, once it ends, it does not linger as a zombie.
    """
    workspace.ensure()
    other = active_scheduler(workspace)
    if other is not None:
        raise BluenoError(f"a {other.mode} scheduler (pid {other.pid} on {other.host}) already runs on "
                          f"{workspace.root}; stop it first, or queue jobs for it.")
    log_path = workspace.logs_dir / LOG_NAME
    launched = time.time()
    environment = dict(os.environ)  # this very Blueno, installed or run from a checkout
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_PARENT, environment.get("PYTHONPATH")]))
    with open(log_path, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} scheduler started ===\n".encode())
        log.flush()
        process = subprocess.Popen(
            scheduler_command(workspace, sync=sync), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, cwd=workspace.root, env=environment, start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = active_scheduler(workspace)
        if info is not None and info.pid == process.pid:
            return process
        if process.poll() is not None:
            if _registered(workspace, process.pid, launched):  # it ran, and a Stop ended it between two looks
                return process
            tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
            raise BluenoError(f"the scheduler did not start: {' '.join(tail) or f'exit status {process.returncode}'}"
                              f" (see {log_path})")
        time.sleep(0.05)
    return process  # slow to register (a loaded machine): the caller's probe will see it


def _registered(workspace: Workspace, pid: int, since: float) -> bool:
    """Did the process ``pid`` started at ``since`` register as this workspace's scheduler (still or once)?"""
    with workspace.open_store() as store:
        return store.query_one("SELECT 1 FROM schedulers WHERE pid = ? AND host = ? AND started >= ?",
                               (pid, socket.gethostname(), since - 1.0)) is not None


def control_scheduler(workspace: Workspace, action: str) -> SchedulerInfo:
    """Pause, resume or stop the scheduler running on ``workspace`` (``stop``: running jobs are requeued)."""
    if action not in SIGNALS:
        raise BluenoError(f"unknown scheduler action {action!r}; use one of {', '.join(SIGNALS)}")
    info = active_scheduler(workspace)
    if info is None:
        raise BluenoError(f"no scheduler runs on {workspace.root}; `blueno batch` (or the app's Start) starts one")
    if not info.pid:
        raise BluenoError("the scheduler is still starting; try again in a moment")
    if info.host != socket.gethostname():
        raise BluenoError(f"the scheduler runs on {info.host} (pid {info.pid}); {action} it there")
    try:
        os.kill(info.pid, SIGNALS[action])
    except ProcessLookupError:
        pass  # it ended meanwhile: nothing left to do
    return info


def wait_stopped(workspace: Workspace, timeout: float) -> bool:
    """Wait until no scheduler holds the workspace; False if one still does after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while active_scheduler(workspace) is not None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
