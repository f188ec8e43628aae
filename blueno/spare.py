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

On Linux the spares come from a *zygote*: the pool starts one more spare
(``$BLUENO_SPARE_ZYGOTE``) that does the imports once, at normal priority
when the scheduler starts (the first jobs wait for it rather than import
beside it), and then forks a ready spare for each slot on request, twice over
so that the spare is orphaned at once and adopted by the scheduler (a child
subreaper), which reaps it and reads its exit status like any trainer's.  A
forked spare shares the zygote's imported pages until it writes to them, and
costs a fork instead of an import: on 2 CPU slots the demo grid took 0.52-0.75
x its cold makespan over six pairs, median 0.61 (separate spares, each
importing beside the trainings: 0.98).  The forked spare sets its slot's environment (``CUDA_VISIBLE_DEVICES``,
the CPU thread share) before its job; TensorFlow reads it only when its
runtime starts, which no spare and no zygote does.  Without a subreaper (or
when the zygote dies) each slot starts spares of its own, as below.

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
import logging
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

from blueno.events import GATE_ENV

log = logging.getLogger(__name__)

SPARE_FLAG = "--spare"  # `TRAINER_COMMAND --spare` starts a spare instead of a job
SPARE_FD_ENV = "BLUENO_SPARE_FD"  # the descriptor of the spare's end of its socket
ZYGOTE_ENV = "BLUENO_SPARE_ZYGOTE"  # set: this spare forks spares for every slot instead of taking a job
READY = b"ready"
MAX_MESSAGE = 1 << 20  # a job message (argv, environment, cwd) is far smaller
MAX_EARLY_DEATHS = 3  # spares of a slot that die before ready, in a row, before the slot stops trying
ZYGOTE_SLOT = "zygote"  # the pool's name for its zygote (it has no slot of its own)
ZYGOTE_WAIT_S = 60.0  # a claimed job waits for a spare from the zygote until this long after it was asked for


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
    zygote = bool(os.environ.pop(ZYGOTE_ENV, None))
    for step in steps:
        failure: list[BaseException] = []
        if step.idle and not zygote:  # the zygote starts with the scheduler, before any training: jobs wait on it
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
    if zygote:
        return _zygote(channel, run)
    return _take_job(channel, run)


def _take_job(channel: socket.socket, run: Callable[[list[str]], int]) -> int:
    """Say ready, wait for one job on ``channel``, become its trainer: ``run``'s exit status (0: no job)."""
    try:
        channel.sendall(READY)
        message, fds, _, _ = socket.recv_fds(channel, MAX_MESSAGE, 2)  # the job's log and its gate
    except OSError:  # the scheduler went away
        return 0
    if not message:  # end-of-file: the scheduler is gone or has no use for this spare
        return 0
    job = json.loads(message)
    channel.close()
    sys.stdout.flush()
    sys.stderr.flush()
    for job_log in fds[:1]:  # from here on the output is the job's log, like a cold trainer's
        os.dup2(job_log, 1)
        os.dup2(job_log, 2)
        os.close(job_log)
    os.environ.update(job["env"])
    for gate in fds[1:2]:  # the job waits on it until the scheduler has recorded this process
        os.environ[GATE_ENV] = str(gate)
    os.chdir(job["cwd"])
    sys.argv = [sys.argv[0], *job["argv"]]
    return run(list(job["argv"]))


def _zygote(channel: socket.socket, run: Callable[[list[str]], int]) -> int:
    """Fork ready spares on request, each past the imports this process did once (copy-on-write).

    A request is ``{"env": {...}}`` (the slot's environment) with the spare's
    log as a descriptor.  The spare is forked twice over (this process forks
    a child that forks the spare and exits), so the spare is orphaned at once
    and adopted by the scheduler, a child subreaper: the scheduler is its
    parent, reaps it and reads its exit status like any trainer's.  The reply
    is ``{"pid": N}`` with the scheduler's end of the spare's own socket.
    Nothing here runs TensorFlow (its runtime starts no thread before a job),
    so each spare starts from the state a fresh process has after the imports.
    """
    try:
        channel.sendall(READY)
    except OSError:
        return 0
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(channel, MAX_MESSAGE, 1)
        except OSError:
            return 0
        if not message:  # the scheduler is gone: so is every use for this process
            return 0
        env = json.loads(message)["env"]
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        read_pid, write_pid = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        middle = os.fork()
        if middle == 0:
            try:
                spare = os.fork()
                if spare == 0:
                    os.close(read_pid)
                    os.close(write_pid)
                    channel.close()
                    ours.close()
                    os.setsid()  # its own process group, like a spare the scheduler starts
                    for spare_log in fds[:1]:  # the spare's own log until it has a job
                        os.dup2(spare_log, 1)
                        os.dup2(spare_log, 2)
                        os.close(spare_log)
                    os.environ.clear()
                    os.environ.update(env)
                    code = _take_job(theirs, run)
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
                os.write(write_pid, str(spare).encode())
            finally:
                os._exit(0)  # the spare is now an orphan: the scheduler (a subreaper) adopts it
        os.close(write_pid)
        os.waitpid(middle, 0)
        with os.fdopen(read_pid, "rb") as pipe:
            pid = pipe.read()
        theirs.close()
        for fd in fds:
            os.close(fd)
        try:
            socket.send_fds(channel, [json.dumps({"pid": int(pid or 0)}).encode()], [ours.fileno()])
        except OSError:
            return 0
        finally:
            ours.close()


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


class Adopted:
    """A spare the zygote forked, adopted by this process (a child subreaper): ``Popen``'s handle on it.

    The scheduler supervises it as it does a process it started: ``pid``,
    ``poll``, ``wait``, ``returncode`` (negative for a signal, as ``Popen``).
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                done, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # not ours after all (never adopted): it is gone, status unknown
                self.returncode = -signal.SIGKILL
            else:
                if done:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
            time.sleep(0.005)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


@dataclass
class Spare:
    """A spare trainer process of one slot, and the scheduler's end of its socket."""

    slot: str
    popen: subprocess.Popen[bytes] | Adopted
    channel: socket.socket
    env: dict[str, str]  # the environment it was started with
    started: float = field(default_factory=time.monotonic)
    ready_at: float | None = None

    @property
    def ready(self) -> bool:
        return self.ready_at is not None and self.popen.poll() is None

    def hand(self, argv: Sequence[str], env: Mapping[str, str], cwd: str | os.PathLike[str], log_fd: int,
             gate_fd: int | None = None) -> bool:
        """Give the spare its job (its log, and the gate it waits on: ``events.await_go``); False if it
        is gone (the job then starts cold)."""
        message = json.dumps({"argv": list(argv), "env": dict(env), "cwd": str(cwd)}).encode()
        try:
            socket.send_fds(self.channel, [message], [log_fd] if gate_fd is None else [log_fd, gate_fd])
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
        # One zygote per pool when this process adopts orphans: it imports once and forks every spare.
        self.zygote: Spare | None = None
        self.zygote_off = not is_subreaper()
        self.forking: list[tuple[str, dict[str, str]]] = []  # slots whose spare the zygote is forking
        self.asked: dict[str, float] = {}  # slot → when its latest spare was asked of the zygote

    def log_path(self, slot: str) -> Path:
        """Where a spare's output goes until it has a job (the TensorFlow import's chatter, a crash)."""
        return self.log_dir / f"spare-{slot}.log"

    def ensure(self, slot: str, env: Mapping[str, str]) -> Spare | None:
        """The slot's spare, asked for now if it has none (None while the zygote forks it, or when
        its spares keep dying)."""
        if slot in self.spares:
            return self.spares[slot]
        if slot in self.given_up or any(waiting == slot for waiting, _ in self.forking):
            return None
        if not self.zygote_off:
            if self.zygote is None and self._start(ZYGOTE_SLOT, {**env, ZYGOTE_ENV: "1"}) is None:
                self.zygote_off = True  # it could not even start: every slot starts its own spares
                self.given_up.pop(ZYGOTE_SLOT, None)
            if self.zygote is not None:
                self.forking.append((slot, dict(env)))
                self.asked[slot] = time.monotonic()
                if self.zygote.ready:
                    self._ask_zygote(slot, env)
                return None
        return self._start(slot, env)

    def coming(self, slot: str) -> bool:
        """Is a spare for ``slot`` on its way from the zygote, soon enough for a job to wait for it?

        While the zygote imports (it starts with the scheduler, before any
        training, and does the import a cold trainer would do) and while it
        forks, a job claimed for the slot waits for the spare rather than
        import everything again beside it; for at most ZYGOTE_WAIT_S after
        the spare was asked for (the first ones wait for the zygote's import;
        later ones for a fork, milliseconds).
        """
        asked = self.asked.get(slot)
        if self.zygote is None or asked is None or time.monotonic() - asked > ZYGOTE_WAIT_S:
            return False
        if any(waiting == slot for waiting, _ in self.forking):
            return True
        spare = self.spares.get(slot)
        return spare is not None and not spare.ready and isinstance(spare.popen, Adopted)

    def _ask_zygote(self, slot: str, env: Mapping[str, str]) -> None:
        assert self.zygote is not None
        try:
            with open(self.log_path(slot), "wb") as spare_log:
                socket.send_fds(self.zygote.channel, [json.dumps({"env": dict(env)}).encode()],
                                [spare_log.fileno()])
        except OSError:
            self._lose_zygote("its socket closed")

    def _lose_zygote(self, why: str) -> None:
        """The zygote is gone: its slots get spares of their own from now on."""
        zygote, self.zygote, self.zygote_off, self.forking = self.zygote, None, True, []
        if zygote is not None:
            self._forget(zygote)
            zygote.kill()
        self.given_up.pop(ZYGOTE_SLOT, None)
        log.info("the spare zygote is gone (%s): each slot starts its own spares", why)

    def _start(self, slot: str, env: Mapping[str, str]) -> Spare | None:
        """A spare process started for ``slot`` (the zygote: ZYGOTE_SLOT)."""
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
        return self._watch(Spare(slot, popen, parent, dict(env)))

    def _watch(self, spare: Spare) -> Spare:
        spare.channel.setblocking(False)
        if spare.slot == ZYGOTE_SLOT:
            self.zygote = spare
        else:
            self.spares[spare.slot] = spare
        self.selector.register(spare.channel, selectors.EVENT_READ, spare)
        return spare

    def _on_zygote(self, zygote: Spare) -> None:
        """The zygote said ready, sent a forked spare, or died."""
        if zygote.ready_at is None:
            try:
                data = zygote.channel.recv(64)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if data != READY:
                self._lose_zygote(f"it exited before it was ready, status {zygote.popen.poll()}; see "
                                  f"{self.log_path(ZYGOTE_SLOT)}")
                return
            zygote.ready_at = time.monotonic()
            for slot, env in self.forking:
                self._ask_zygote(slot, env)
            return
        try:
            message, fds, _, _ = socket.recv_fds(zygote.channel, MAX_MESSAGE, 1)
        except BlockingIOError:
            return
        except OSError:
            message, fds = b"", []
        if not message or not fds or not self.forking:
            for fd in fds:
                os.close(fd)
            self._lose_zygote("its socket closed" if not message else "it sent no spare")
            return
        slot, env = self.forking.pop(0)
        pid = json.loads(message)["pid"]
        channel = socket.socket(fileno=fds[0])
        if not pid:  # the fork failed: this slot starts a spare of its own
            channel.close()
            self._start(slot, env)
            return
        self._watch(Spare(slot, Adopted(pid), channel, env))

    def on_readable(self, spare: Spare) -> None:
        """The spare said ready, or its socket closed (it died before its job)."""
        if spare.slot == ZYGOTE_SLOT:
            self._on_zygote(spare)
            return
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
                  log: IO[bytes], gate_fd: int | None = None) -> subprocess.Popen[bytes] | Adopted | None:
        """Make the slot's ready spare the trainer of a job: its process, or None (start the job cold)."""
        taken = self.take(slot, env)
        if taken is None:
            return None
        spare, job_env = taken
        waited = time.monotonic() - (spare.ready_at or spare.started)
        log.write(f"=== warm start: spare trainer {spare.popen.pid}, ready {waited:.1f} s before its job ===\n"
                  .encode())
        log.flush()
        if not spare.hand(argv, job_env, cwd, log.fileno(), gate_fd):
            spare.kill()  # it died just now: the job starts cold, a new spare starts
            return None
        return spare.popen

    def retire(self, slot: str) -> None:
        spare = self.spares.get(slot)
        if spare is not None:
            self._forget(spare)
            spare.kill()

    def close(self) -> None:
        """End every spare, and the zygote (scheduler shutdown)."""
        for slot in list(self.spares):
            self.retire(slot)
        if self.zygote is not None:
            zygote, self.zygote, self.forking = self.zygote, None, []
            self._forget(zygote)
            zygote.kill()

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
        """Slot → its spare's pid, and the zygote's under ZYGOTE_SLOT (processes that hold no job)."""
        pids = {slot: spare.popen.pid for slot, spare in list(self.spares.items())}
        if self.zygote is not None:
            pids[ZYGOTE_SLOT] = self.zygote.popen.pid
        return pids


def is_subreaper() -> bool:
    """Does this process adopt orphaned descendants (Linux ``PR_GET_CHILD_SUBREAPER``)?

    The zygote's spares are orphans by design: only a subreaper becomes their
    parent, reaps them and learns their exit status.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        flag = ctypes.c_int(0)
        return libc.prctl(37, ctypes.byref(flag), 0, 0, 0) == 0 and flag.value == 1  # PR_GET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def spare_requested(argv: Sequence[str]) -> bool:
    """Was this trainer started as a spare (``TRAINER_COMMAND --spare``)?"""
    return list(argv[:1]) == [SPARE_FLAG]
