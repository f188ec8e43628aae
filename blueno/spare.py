"""Warm trainers: one spare trainer process per slot, already past its imports, waiting for its job.

A cold trainer pays for the Python start-up and the TensorFlow/Keras import
(4–5 CPU-seconds) after its job is claimed, while its slot (its GPU) idles.  A
*spare* pays for them before: the scheduler starts ``TRAINER_COMMAND --spare``
with the slot's environment while the slot's current job runs; the spare runs
its ``prepare`` step (the imports) in a thread at ``SCHED_IDLE`` priority, says
``ready`` and sleeps on a socket.  When the slot's next job is claimed the
scheduler sends the spare the job's argument list, its job-specific
environment (``$BLUENO_JOB``, ``$BLUENO_EVENTS``), its working directory and,
as an ``SCM_RIGHTS`` descriptor, the job's log; from there the spare *is* the
job's trainer, exactly as if it had been started with those arguments.

Guarantees (``docs/reliability.md``):

* one job per process: a trainer exits when its job ends, so its memory (GPU
  memory included: the CUDA context belongs to the process) goes back with the
  process, a crash touches only its own job, and no state needs resetting;
* the spare never initialises a GPU and holds no job: killing it loses nothing,
  and a job never waits for one (only a *ready* spare takes a job, otherwise
  the job starts cold and the spare stays for the next one);
* a spare outlives no scheduler: its socket's other end closes when the
  scheduler goes, however it goes, and the spare exits on that end-of-file;
  recovery never adopts one (a spare has no job row);
* the imports run at ``SCHED_IDLE``, so a spare only takes CPU time the running
  trainings leave unused.  Linux lets no unprivileged thread leave
  ``SCHED_IDLE``, hence a thread: the main thread, which later trains, keeps
  its normal priority.

Nothing here is specific to TensorFlow: any trainer whose entry point is a
``main(argv)`` function can serve as a spare (:func:`serve`).  The local
backend uses it; the Ray backend does not yet (a node starts each trainer
cold; only its Ray workers are started ahead, see ``blueno/cluster``): a
node-side pool needs a long-lived holder per node slot (an actor), which is
the next step.  Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

SPARE_FLAG = "--spare"  # `TRAINER_COMMAND --spare` starts a spare instead of a job
SPARE_FD_ENV = "BLUENO_SPARE_FD"  # the descriptor of the spare's end of its socket
READY = b"ready"
MAX_MESSAGE = 1 << 20  # a job message (argv, environment, cwd) is far smaller
MAX_EARLY_DEATHS = 3  # spares of a slot that die before ready, in a row, before the slot stops trying


# -- in the spare ------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One piece of a spare's preparation, run in a thread at idle priority unless ``idle`` is false.

    Threads a step starts keep its priority, so a step that starts threads the
    job will use (TensorFlow's runtime and its thread pools) must not be idle.
    """

    call: Callable[[], object]
    idle: bool = True


def serve(run: Callable[[list[str]], int], steps: Sequence[Step]) -> int:
    """Be a spare: run the preparation ``steps``, say ready, wait for one job, then ``run(argv)`` it.

    Returns the exit status: ``run``'s, 0 when told to go without a job (the
    scheduler closed its end), 1 when a step failed.
    """
    fd = os.environ.pop(SPARE_FD_ENV, None)
    if fd is None:
        print(f"{SPARE_FLAG}: no {SPARE_FD_ENV} in the environment; only a scheduler starts spares",
              file=sys.stderr)
        return 2
    channel = socket.socket(fileno=int(fd))
    os.set_inheritable(channel.fileno(), False)  # nothing the job starts may hold the channel open
    for step in steps:
        failure: list[BaseException] = []
        if step.idle:
            worker = threading.Thread(target=_idle_call, args=(step.call, failure), name="blueno-spare-prepare")
            worker.start()
            worker.join()
        else:
            try:
                step.call()
            except Exception as exc:
                failure.append(exc)
        if failure:
            traceback.print_exception(failure[0])
            return 1
    try:
        channel.sendall(READY)
        message, fds, _, _ = socket.recv_fds(channel, MAX_MESSAGE, 1)
    except OSError:  # the scheduler went away
        return 0
    if not message:  # end-of-file: the scheduler is gone or has no use for this spare
        return 0
    job = json.loads(message)
    channel.close()
    sys.stdout.flush()
    sys.stderr.flush()
    for log in fds[:1]:  # from here on the output is the job's log, like a cold trainer's
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
    os.environ.update(job["env"])
    os.chdir(job["cwd"])
    sys.argv = [sys.argv[0], *job["argv"]]
    return run(list(job["argv"]))


def _idle_call(prepare: Callable[[], object], failure: list[BaseException]) -> None:
    """Run ``prepare`` in this thread at idle CPU and I/O priority (threads it starts inherit it)."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # 0: this thread, on Linux
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall(251 if os.uname().machine == "x86_64" else 30, 1, 0, 3 << 13)  # ioprio_set: thread, IDLE
    try:
        prepare()
    except BaseException as exc:  # reported by the main thread; the spare then exits before ready
        failure.append(exc)


# -- in the scheduler -------------------------------------------------------------------


@dataclass
class Spare:
    """A spare trainer process of one slot, and the scheduler's end of its socket."""

    slot: str
    popen: subprocess.Popen[bytes]
    channel: socket.socket
    env: dict[str, str]  # the environment it was started with
    started: float = field(default_factory=time.monotonic)
    ready_at: float | None = None

    @property
    def ready(self) -> bool:
        return self.ready_at is not None and self.popen.poll() is None

    def hand(self, argv: Sequence[str], env: Mapping[str, str], cwd: str | os.PathLike[str], log_fd: int) -> bool:
        """Give the spare its job; False if it is gone (the job then starts cold)."""
        message = json.dumps({"argv": list(argv), "env": dict(env), "cwd": str(cwd)}).encode()
        try:
            socket.send_fds(self.channel, [message], [log_fd])
        except OSError:
            return False
        self.channel.close()
        return True

    def kill(self) -> None:
        """End the spare and everything it started (it holds no job: nothing is lost)."""
        self.channel.close()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5.0)


class SparePool:
    """At most one spare per slot: started, watched (through the scheduler's selector), handed out, ended.

    ``job_keys`` are the environment variables a job may add to a spare's
    environment; a job whose environment differs from its slot's spare in any
    other way starts cold (the spare was prepared for another setting).
    """

    def __init__(self, command: Sequence[str], cwd: Path, log_dir: Path, selector: selectors.BaseSelector,
                 job_keys: Collection[str]) -> None:
        self.command = [*command, SPARE_FLAG]
        self.cwd = cwd
        self.log_dir = log_dir
        self.selector = selector
        self.job_keys = frozenset(job_keys)
        self.spares: dict[str, Spare] = {}
        self.early_deaths: dict[str, int] = {}
        self.given_up: dict[str, str] = {}  # slot → why it no longer gets spares

    def log_path(self, slot: str) -> Path:
        """Where a spare's output goes until it has a job (the TensorFlow import's chatter, a crash)."""
        return self.log_dir / f"spare-{slot}.log"

    def ensure(self, slot: str, env: Mapping[str, str]) -> Spare | None:
        """The slot's spare, started now if it has none (None when its spares keep dying)."""
        if slot in self.spares:
            return self.spares[slot]
        if slot in self.given_up:
            return None
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        spare_env = {**env, SPARE_FD_ENV: str(child.fileno())}
        try:
            with open(self.log_path(slot), "wb") as log:
                popen = subprocess.Popen(
                    self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd,
                    env=spare_env, start_new_session=True, pass_fds=(child.fileno(),),
                )
        except OSError as exc:
            parent.close()
            self.given_up[slot] = f"cannot start {self.command[0]}: {exc.strerror}"
            return None
        finally:
            child.close()
        parent.setblocking(False)
        spare = Spare(slot, popen, parent, dict(env))
        self.spares[slot] = spare
        self.selector.register(parent, selectors.EVENT_READ, spare)
        return spare

    def on_readable(self, spare: Spare) -> None:
        """The spare said ready, or its socket closed (it died before its job)."""
        try:
            data = spare.channel.recv(64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data == READY:
            spare.ready_at = time.monotonic()
            self.early_deaths[spare.slot] = 0
            return
        self._forget(spare)
        spare.kill()
        if spare.ready_at is None:
            deaths = self.early_deaths.get(spare.slot, 0) + 1
            self.early_deaths[spare.slot] = deaths
            if deaths >= MAX_EARLY_DEATHS:
                self.given_up[spare.slot] = (
                    f"{deaths} spares in a row exited before they were ready (exit status "
                    f"{spare.popen.returncode}; see {self.log_path(spare.slot)}): jobs on {spare.slot} start cold"
                )

    def take(self, slot: str, env: Mapping[str, str]) -> tuple[Spare, dict[str, str]] | None:
        """The slot's ready spare and the variables to add for this job's ``env``; None: start cold.

        A spare whose environment no longer matches the slot's is ended (a new one starts).
        """
        spare = self.spares.get(slot)
        if spare is None or not spare.ready:
            return None
        differing = {key for key in set(env) | set(spare.env) if env.get(key) != spare.env.get(key)}
        if not differing <= self.job_keys or any(key not in env for key in differing):
            self.retire(slot)
            return None
        self._forget(spare)
        return spare, {key: env[key] for key in differing}

    def hand_over(self, slot: str, argv: Sequence[str], env: Mapping[str, str], cwd: str | os.PathLike[str],
                  log: IO[bytes]) -> subprocess.Popen[bytes] | None:
        """Make the slot's ready spare the trainer of a job: its process, or None (start the job cold)."""
        taken = self.take(slot, env)
        if taken is None:
            return None
        spare, job_env = taken
        waited = time.monotonic() - (spare.ready_at or spare.started)
        log.write(f"=== warm start: spare trainer {spare.popen.pid}, ready {waited:.1f} s before its job ===\n"
                  .encode())
        log.flush()
        if not spare.hand(argv, job_env, cwd, log.fileno()):
            spare.kill()  # it died just now: the job starts cold, a new spare starts
            return None
        return spare.popen

    def retire(self, slot: str) -> None:
        spare = self.spares.get(slot)
        if spare is not None:
            self._forget(spare)
            spare.kill()

    def close(self) -> None:
        """End every spare (scheduler shutdown)."""
        for slot in list(self.spares):
            self.retire(slot)

    def _forget(self, spare: Spare) -> None:
        if self.spares.get(spare.slot) is spare:
            del self.spares[spare.slot]
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(spare.channel)

    def describe(self) -> dict[str, str]:
        """Slot → "ready", "starting" or why it has none: for status displays and tests."""
        states = {slot: "ready" if spare.ready else "starting" for slot, spare in list(self.spares.items())}
        return {**self.given_up, **states}

    def pids(self) -> dict[str, int]:
        return {slot: spare.popen.pid for slot, spare in list(self.spares.items())}


def spare_requested(argv: Sequence[str]) -> bool:
    """Was this trainer started as a spare (``TRAINER_COMMAND --spare``)?"""
    return list(argv[:1]) == [SPARE_FLAG]
