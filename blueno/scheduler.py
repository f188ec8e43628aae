"""GPU slots, and launching and supervising one trainer subprocess per slot.

One scheduler per workspace (a lock file says which); it claims a job the
moment a slot frees, writes the attempt's job spec (:mod:`blueno.jobspec`),
starts ``python -m blueno.trainer JOB ATTEMPT`` (or the grid's own command) in
its own process group with ``CUDA_VISIBLE_DEVICES`` set to the slot's GPU, and
waits on the processes themselves (pidfds), so there is no polling gap between
one job ending and the next starting.  Trainers never open the database: the
scheduler is the only writer of a job's progress, ingesting the events each
attempt reports (:mod:`blueno.ingest`).  The GUI and the ``--batch`` display
read it all from the database.  Process trees are handled in :mod:`blueno.processes`.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shlex
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import psutil

from blueno import BluenoError, __version__, ingest, jobspec
from blueno.events import EVENTS_ENV, GATE_ENV, GO, JOB_ENV, FileSource
from blueno.locks import FileLock
from blueno.processes import (  # noqa: F401  (process_alive, kill_trees: re-exported)
    GRACE_S,
    Launched,
    become_subreaper,
    kill_trees,
    process_alive,
    reap,
)
from blueno.queue import EXIT_OK, EXIT_PERMANENT, PLACING, Job, JobQueue, JobState, RecoveryReport
from blueno.spare import Adopted, Spare, SparePool
from blueno.store import Store, dumps, now
from blueno.wakeup import WakeEndpoint
from blueno.workspace import Workspace, parse_gpu_ids

if TYPE_CHECKING:
    from blueno.cluster.backend import RayBackend

HEARTBEAT_S = 2.0
INGEST_S = 0.25  # how often a running trainer's new events are written to the database
TICK_S = 0.02  # how often the loop checks PRAGMA data_version for new jobs and cancel requests
WOKEN_TICK_S = 0.1  # the same, when enqueuers can poke the wake-up FIFO (blueno.wakeup)
TRAINER_ENV = "BLUENO_TRAINER"  # a command that replaces `python -m blueno.trainer`
_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)
JOB_ENV_KEYS = (JOB_ENV, EVENTS_ENV)  # what a job adds to its slot's environment (a spare gets them with its job)


# -- slots ------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    name: str  # "gpu0", "cpu1"
    gpu: str | None  # the CUDA device id the trainer sees, None for a CPU slot


def nvml_gpu_count() -> int:
    """GPUs NVML can see; 0 without a driver (a laptop, CI)."""
    try:
        import pynvml
    except ImportError:
        return 0
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, …
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def detect_slots(gpus: str | None = None, slots: int | None = None) -> list[Slot]:
    """``--gpus 0,2`` > ``--slots N`` (CPU) > ``$CUDA_VISIBLE_DEVICES`` > NVML > one CPU slot."""
    if gpus is not None and slots is not None:
        raise BluenoError("give either --gpus (GPU slots) or --slots (CPU slots), not both")
    if gpus is not None:
        ids = parse_gpu_ids(gpus)
        return [Slot(f"gpu{g}", g) for g in ids]
    if slots is not None:
        if slots < 1:
            raise BluenoError(f"--slots {slots}: need at least 1 slot")
        return [Slot(f"cpu{i}", None) for i in range(slots)]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
        if ids:
            return [Slot(f"gpu{g}", g) for g in ids]
        return [Slot("cpu0", None)]
    count = nvml_gpu_count()
    if count:
        return [Slot(f"gpu{i}", str(i)) for i in range(count)]
    return [Slot("cpu0", None)]


def configured_slots(workspace: Workspace, gpus: str | None = None, slots: int | None = None) -> list[Slot]:
    """Slots from the command line if given, else ``[scheduler]`` in the settings, else detected.

    The settings take ``gpus = "0,1"`` (GPU slots) or ``slots = N`` (CPU slots).
    """
    if gpus is None and slots is None:
        settings = workspace.settings().get("scheduler", {})
        gpus = str(settings["gpus"]) if settings.get("gpus") else None
        slots = None if gpus else (int(settings["slots"]) if settings.get("slots") else None)
    return detect_slots(gpus=gpus, slots=slots)


@dataclass(frozen=True)
class GpuStat:
    index: int
    name: str
    utilization: int  # percent
    memory_used: int  # bytes
    memory_total: int


def gpu_stats() -> list[GpuStat]:
    """Utilization and memory per GPU from NVML; empty where there is none."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return []
    try:
        stats = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            stats.append(GpuStat(
                i, name.decode() if isinstance(name, bytes) else name,
                int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu), int(memory.used), int(memory.total),
            ))
        return stats
    except Exception:
        return []
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


# -- one scheduler per workspace ----------------------------------------------


@dataclass(frozen=True)
class SchedulerInfo:
    pid: int
    host: str
    mode: str
    slots: list[str]
    state: str
    started: float


class SchedulerLock(FileLock):
    """An exclusive ``flock`` on ``<workspace>/.scheduler.lock``.

    The kernel drops it when the holder dies, however it dies, so a crashed
    scheduler never leaves a stale lock behind.
    """

    def __init__(self, workspace: Workspace) -> None:
        super().__init__(workspace.scheduler_lock_path)


def active_scheduler(workspace: Workspace, store: Store | None = None) -> SchedulerInfo | None:
    """The scheduler running on this workspace (any process, this one included), or None."""
    if not workspace.scheduler_lock_path.exists():
        return None
    probe = SchedulerLock(workspace)
    if probe.try_acquire():
        probe.release()
        return None
    own = store is None
    store = store or workspace.open_store()
    try:
        row = store.query_one(
            "SELECT pid, host, mode, slots, state, started FROM schedulers "
            "WHERE stopped IS NULL ORDER BY id DESC LIMIT 1"
        )
    finally:
        if own:
            store.close()
    if row is None:  # the holder is between taking the lock and registering
        return SchedulerInfo(0, socket.gethostname(), "unknown", [], "starting", now())
    return SchedulerInfo(row["pid"], row["host"], row["mode"], json.loads(row["slots"]), row["state"],
                         row["started"])


def _log_tail(path: os.PathLike[str], limit: int = 300) -> str:
    """The last non-empty line of a log, shortened: a hint for the job's error."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 4096))
            lines = [line.strip() for line in handle.read().decode(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line and not line.startswith("=== ")]  # not our own banners
    return lines[-1][:limit] if lines else ""


# -- the scheduler --------------------------------------------------------------


@dataclass(frozen=True)
class JobLaunched:
    job_id: int
    run_id: int | None
    slot: str
    attempt: int
    warm: bool = False  # handed to the slot's spare trainer (imports done) rather than started cold


@dataclass(frozen=True)
class JobExited:
    job_id: int
    run_id: int | None
    slot: str
    state: JobState
    returncode: int


@dataclass(frozen=True)
class Recovered:
    report: RecoveryReport


SchedulerEvent = JobLaunched | JobExited | Recovered


class Scheduler:
    """Runs queued jobs on ``slots`` until stopped (or, in batch mode, until the queue is empty)."""

    def __init__(
        self,
        workspace: Workspace,
        slots: Sequence[Slot],
        *,
        mode: str = "batch",
        trainer_command: Sequence[str] | None = None,
        grace: float = GRACE_S,
        heartbeat: float = HEARTBEAT_S,
        on_event: Callable[[SchedulerEvent], None] | None = None,
        backend: RayBackend | None = None,
        warm: bool | None = None,
    ) -> None:
        if not slots and backend is None:
            raise BluenoError("a scheduler needs at least one slot")
        self.backend = backend  # None: trainers run here; else on the cluster's nodes (blueno.cluster)
        self.workspace = workspace.ensure()
        self.slots = list(slots)
        self.mode = mode
        env_command = os.environ.get(TRAINER_ENV)
        command = trainer_command or (shlex.split(env_command) if env_command else None)
        # Trainers run in the workspace: paths given relative to here must still find their files.
        self.trainer_command = (
            [str(Path(part).resolve()) if not os.path.isabs(part) and os.path.exists(part) else part
             for part in command]
            if command else [sys.executable, "-P", "-m", "blueno.trainer"]  # -P: safe path
        )
        self.warm = warm_setting(workspace, self.slots) if warm is None else warm
        self.grace = grace
        self.heartbeat_interval = heartbeat
        self.on_event = on_event
        self.host = socket.gethostname()
        self._lock = SchedulerLock(workspace)
        self._running: dict[str, Launched] = {}  # slot name → process
        # slot name → a claimed job whose data is being prepared off the loop (datasets.prepare can take long)
        self._preparing: dict[str, tuple[Job, Future[tuple[dict, list[str], Path]]]] = {}
        self._prep_pool: ThreadPoolExecutor | None = None
        self._prep_store: Store | None = None
        self._orphans: set[int] = set()  # descendants of ended trainers, killed, waiting to be reaped
        self._spares: SparePool | None = None  # one spare trainer per slot while run() runs, when warm
        self._spares_due = False  # a spare was taken since the last top-up
        self._paused = threading.Event()
        self._stop = threading.Event()
        self._cancel_on_stop = False
        self._wake_lock = threading.Lock()
        self._wake_r: int | None = None  # the wake-up pipe: open while run() runs, closed when it ends
        self._wake_w: int | None = None
        self._git_commit: str | None = None
        self._thread: threading.Thread | None = None
        self._scheduler_row: int | None = None
        self.error: BaseException | None = None
        self.state = "stopped"

    # -- control (thread-safe) ------------------------------------------------

    def start(self) -> threading.Thread:
        """Run in a background thread (the GUI's way); raises at once if another scheduler runs."""
        self._acquire()
        self._thread = threading.Thread(target=self._thread_main, name="blueno-scheduler", daemon=True)
        self._thread.start()
        return self._thread

    def pause(self) -> None:
        """Start no new job; running ones go on."""
        self._paused.set()
        self._wake()

    def resume(self) -> None:
        self._paused.clear()
        self._wake()

    def stop(self, cancel_running: bool = False) -> None:
        """Stop: running jobs are cancelled, or (default) checkpointed and requeued to resume later."""
        self._cancel_on_stop = self._cancel_on_stop or cancel_running
        self._stop.set()
        self._wake()

    def hurry(self) -> None:
        """Skip what is left of the grace period: SIGKILL trainers already told to stop."""
        for launched in list(self._running.values()):
            if launched.kill_at is not None:
                launched.kill_at = 0.0
        self._wake()

    def kick(self) -> None:
        """New jobs were queued in this process: look now rather than at the next tick."""
        self._wake()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def busy_slots(self) -> dict[str, int]:
        """Slot name → job id, for status displays."""
        busy = {name: job.id for name, (job, _) in list(self._preparing.items())}
        return busy | {name: launched.job.id for name, launched in list(self._running.items())}

    @property
    def spares(self) -> dict[str, str]:
        """Slot name → its spare trainer's state ("ready", "starting", or why it has none); empty when cold."""
        pool = self._spares
        return pool.describe() if pool is not None else {}

    @property
    def spare_pids(self) -> dict[str, int]:
        """Slot name → the process id of its spare trainer (tests and diagnostics)."""
        pool = self._spares
        return pool.pids() if pool is not None else {}

    # -- the loop ---------------------------------------------------------------

    def run(self, until_empty: bool = False) -> None:
        """Supervise jobs in the calling thread until :meth:`stop` (or an empty queue)."""
        if not self._lock.held:
            self._acquire()
        store = self.workspace.open_store()
        with self._wake_lock:
            self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            self._loop(store, JobQueue(store), until_empty)
        finally:
            if self._prep_store is not None:
                self._prep_store.close()
                self._prep_store = None
            self._close_wake()
            self._unregister(store)
            store.close()
            self._lock.release()
            self.state = "stopped"

    def _thread_main(self) -> None:
        try:
            self.run(until_empty=False)
        except BaseException as exc:  # surfaced to the GUI through .error / .state
            self.error = exc

    def _acquire(self) -> None:
        if not self._lock.try_acquire():
            info = active_scheduler(self.workspace)
            who = f"{info.mode} scheduler, pid {info.pid} on {info.host}" if info and info.pid else "a scheduler"
            raise BluenoError(
                f"{who} already runs on the workspace {self.workspace.root}. Only one may run at a "
                "time: its jobs show in `blueno queue ls` and in the GUI; stop it first to start another."
            )

    def _loop(self, store: Store, queue: JobQueue, until_empty: bool) -> None:
        self._register(store)
        become_subreaper()
        report = queue.recover(process_alive, lambda pids: kill_trees(pids, self.grace),
                               settle=lambda job_id, attempt: settle_events(self.workspace, store, job_id, attempt))
        self._emit(Recovered(report))
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ)
        endpoint = WakeEndpoint(self.workspace.root)  # other processes' submits poke it
        endpoint_fd = endpoint.open()
        if endpoint_fd is not None:
            selector.register(endpoint_fd, selectors.EVENT_READ)
        # Nothing wakes the loop when a node's message arrives: a cluster's jobs are polled every TICK_S.
        tick = TICK_S if endpoint_fd is None or self.backend is not None else WOKEN_TICK_S
        if self.warm and self.backend is None:  # spares are local processes: none for a cluster's jobs (yet)
            self._spares = SparePool(self.trainer_command, self.workspace.root, self.workspace.logs_dir, selector,
                                     job_keys=JOB_ENV_KEYS)
        next_heartbeat = time.monotonic() + self.heartbeat_interval
        last_version = -1
        look = True  # look for queued jobs: at start, when a slot frees, when woken, when others wrote
        try:
            while not self._stop.is_set():
                self._set_state(store, "paused" if self._paused.is_set() else "running")
                if look and not self._paused.is_set():
                    self._fill_slots(queue, selector)
                    self._top_up_spares(queue, until_empty)
                    look = False
                if until_empty and not self._running and not self._preparing and not queue.has_runnable():
                    break
                for key, _ in selector.select(tick):
                    if key.fd == self._wake_r:
                        with contextlib.suppress(BlockingIOError):
                            os.read(self._wake_r, 4096)
                        look = True
                    elif key.fd == endpoint_fd:
                        endpoint.drain()
                        look = True
                    elif isinstance(key.data, Spare) and self._spares is not None:
                        self._spares.on_readable(key.data)  # ready, or died before its job
                        look = True  # a dead spare is replaced
                if self._reap(queue, selector):
                    look = True
                self._launch_prepared(queue, selector)
                if self._spares_due:  # a spare became a trainer: its slot gets the next one
                    self._spares_due = False
                    self._top_up_spares(queue, until_empty)
                version = store.data_version()  # a few microseconds: changes when another connection commits
                if version != last_version:  # new jobs, or a cancel request, maybe
                    last_version = version
                    look = True
                    self._honour_cancels(queue)
                for launched in self._running.values():
                    launched.escalate()
                self._ingest_running(store)
                if self._orphans:
                    self._orphans = reap(self._orphans)
                if time.monotonic() >= next_heartbeat:
                    next_heartbeat = time.monotonic() + self.heartbeat_interval
                    queue.heartbeat(launched.job.id for launched in self._running.values())
                    self._beat(store)
                    if self.backend is not None:
                        self.backend.record(store, self._running.values())
            self._shutdown(queue, selector)
        finally:
            if self._spares is not None:  # spares hold no job: end them at once, never leave one behind
                self._spares.close()
                self._spares = None
            selector.close()
            endpoint.close()
            if self._prep_pool is not None:
                self._prep_pool.shutdown(wait=False, cancel_futures=True)
                self._prep_pool = None

    def _current_slots(self) -> list[Slot]:
        """The local slots, or one per free place on the cluster (nodes come and go)."""
        if self.backend is None:
            return self.slots
        return [Slot(f"ray{i}", None) for i in range(self.backend.capacity())]

    def _fill_slots(self, queue: JobQueue, selector: selectors.BaseSelector) -> None:
        slots = self._current_slots()
        busy = len(self._running) + len(self._preparing)
        if busy >= len(slots) or not queue.has_runnable():
            return  # a cheap read; the write lock is taken only to claim
        free = [s for s in slots if s.name not in self._running and s.name not in self._preparing]
        for slot in free[:len(slots) - busy]:  # (a cluster that shrank may run jobs on names beyond its slots)
            job = queue.claim(PLACING if self.backend else slot.name, slot.gpu, self.host, os.getpid())
            if job is None:
                return
            self._prepare(job, slot)

    def _prepare(self, job: Job, slot: Slot) -> None:
        """Build the attempt's spec (the data made ready: verified, pulled, derived) on a worker thread."""
        if self._prep_pool is None:
            self._prep_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blueno-prepare")
        run_id = job.run_id if job.run_id is not None else job.id

        def build() -> tuple[dict, list[str], Path]:
            if self._prep_store is None:  # the worker's own connection, closed when run() ends
                self._prep_store = self.workspace.open_store()
            spec = jobspec.build(self.workspace, self._prep_store, job, run_id, slot,
                                 ingest.resume_checkpoint(self._prep_store, job.id))
            command, cwd = jobspec.command_line(spec, self.trainer_command, self.workspace)
            from blueno.events import write_spec

            write_spec(Path(spec["job_spec"]), spec)
            Path(spec["events"]).touch()
            return spec, command, cwd

        future = self._prep_pool.submit(build)
        self._preparing[slot.name] = (job, future)
        future.add_done_callback(lambda _: self._wake())

    def _launch_prepared(self, queue: JobQueue, selector: selectors.BaseSelector) -> None:
        for name, (job, future) in list(self._preparing.items()):
            if future.done() and not self._waits_for_spare(queue, name, job, future):
                del self._preparing[name]
                self._launch(queue, selector, job, next((s for s in self.slots if s.name == name), Slot(name, None)),
                             future)

    def _waits_for_spare(self, queue: JobQueue, slot: str, job: Job, prepared: Future) -> bool:
        """Hold a prepared job while its slot's spare is on its way from the zygote (bounded: SparePool.coming)."""
        if self._spares is None or job.config.get("command") or prepared.exception() is not None:
            return False
        return self._spares.coming(slot) and not queue.cancel_requested([job.id])

    def _launch(self, queue: JobQueue, selector: selectors.BaseSelector, job: Job, slot: Slot,
                prepared: Future[tuple[dict, list[str], Path]]) -> None:
        run_id = job.run_id if job.run_id is not None else job.id
        log_path = self.workspace.run_log(run_id)
        log = open(log_path, "ab")  # noqa: SIM115 - closed in Launched.cleanup
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"\n=== {stamp} job {job.id} attempt {job.attempt} on {slot.name} ===\n".encode())
        log.flush()
        if queue.cancel_requested([job.id]):  # cancelled while its data was being prepared
            log.close()
            self._ended(queue, job, slot.name, 143)
            return
        try:
            spec, command, cwd = prepared.result()
        except BluenoError as exc:  # bad data or command: retrying would fail the same way
            log.write(f"error: {exc}\n".encode())
            log.close()
            queue.record_error(job.id, job.attempt, str(exc))
            self._ended(queue, job, slot.name, EXIT_PERMANENT)
            return
        except Exception as exc:  # e.g. a bucket out of reach while pulling the data: worth a retry
            log.write(f"error: {exc!r}\n".encode())
            log.close()
            queue.on_exit(job.id, job.attempt, 1, detail=f"cannot prepare the job: {exc}")
            return
        if self.backend is not None:
            env = jobspec.environment(dict(os.environ), spec, _PACKAGE_PARENT)
            self._launch_remote(queue, job, slot, spec, command, cwd, log, env)
            return
        self._launch_local(queue, selector, job, slot, spec, command, cwd, log)

    def _launch_local(self, queue: JobQueue, selector: selectors.BaseSelector, job: Job, slot: Slot, spec: dict,
                      command: list[str], cwd: Path, log: IO[bytes]) -> None:
        """Start the attempt's trainer on this box, record its pid, then let it through its gate.

        The trainer waits on the gate until its pid is committed (``events.await_go``): a scheduler
        killed in between leaves no trainer that recovery cannot find, running the job a second time.
        """
        env = {**self._slot_environment(slot), **jobspec.job_environment(spec)}
        gate_r, gate_w = os.pipe()
        try:
            popen, warm = self._start_trainer(job, slot, command, env, cwd, log, gate_r)
        except OSError as exc:
            os.close(gate_w)
            log.close()
            queue.on_exit(job.id, job.attempt, 127, detail=f"cannot start {command[0]}: {exc.strerror}")
            return
        except BaseException:
            os.close(gate_w)
            raise
        finally:
            os.close(gate_r)  # the trainer holds its own copy
        try:
            try:
                pid_started = psutil.Process(popen.pid).create_time()
            except psutil.Error:
                pid_started = None
            try:
                pidfd = os.pidfd_open(popen.pid)
                selector.register(pidfd, selectors.EVENT_READ)
            except (AttributeError, OSError):
                pidfd = None  # old kernel: the loop's tick still notices the exit
            self._running[slot.name] = Launched(job, slot, popen, log, pidfd, source=FileSource(spec["events"]),
                                                next_ingest=time.monotonic() + INGEST_S)
            if self._git_commit is None:
                self._git_commit = self.workspace.git_commit() or ""
            run = {"host": self.host, "gpu": slot.gpu, "blueno_version": __version__,
                   "git_commit": self._git_commit or None,
                   "log_path": str(Path(spec["log_path"]).relative_to(self.workspace.root))}
            if queue.mark_started(job.id, job.attempt, popen.pid, pid_started, run=run):
                os.write(gate_w, GO)  # recorded: go (otherwise the trainer reads end-of-file and exits)
        finally:
            os.close(gate_w)
        self._emit(JobLaunched(job.id, job.run_id, slot.name, job.attempt, warm))

    def _start_trainer(self, job: Job, slot: Slot, command: list[str], env: dict[str, str], cwd: Path,
                       log: IO[bytes], gate_fd: int) -> tuple[subprocess.Popen[bytes] | Adopted, bool]:
        """The attempt's trainer, waiting on ``gate_fd``: the slot's ready spare, else a new process
        (OSError when it cannot start); and whether it is warm."""
        if not job.config.get("command"):  # a command of the grid's own never runs warm
            spare = self._hand_to_spare(slot, command, env, cwd, log, gate_fd)
            if spare is not None:
                return spare, True
        popen = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
            env={**env, GATE_ENV: str(gate_fd)}, start_new_session=True, pass_fds=(gate_fd,),
        )
        return popen, False

    def _slot_environment(self, slot: Slot) -> dict[str, str]:
        """The environment of every trainer on ``slot``: what a spare is started with, before any job."""
        env = jobspec.slot_environment(dict(os.environ), str(self.workspace.root), slot.name, slot.gpu,
                                       _PACKAGE_PARENT)
        if slot.gpu is None:  # share the CPU cores fairly between CPU slots
            env["BLUENO_CPU_THREADS"] = str(max(1, (os.cpu_count() or 1) // len(self.slots)))
        return env

    def _hand_to_spare(self, slot: Slot, command: list[str], env: dict[str, str], cwd: Path, log: IO[bytes],
                       gate_fd: int) -> subprocess.Popen[bytes] | Adopted | None:
        """Give the job to the slot's ready spare: its process, or None to start the job cold."""
        prefix = len(self.trainer_command)
        if self._spares is None or command[:prefix] != self.trainer_command:
            return None  # warm trainers off, or a command of the grid's own (never warm)
        popen = self._spares.hand_over(slot.name, command[prefix:], env, cwd, log, gate_fd)
        self._spares_due = self._spares_due or popen is not None
        return popen

    def _top_up_spares(self, queue: JobQueue, until_empty: bool) -> None:
        """Start a spare for each slot without one (in batch mode only while jobs are left to run)."""
        pool = self._spares
        if pool is None:
            return
        missing = [slot for slot in self.slots if slot.name not in pool.spares and slot.name not in pool.given_up]
        if missing and (not until_empty or queue.has_runnable()):
            for slot in missing:
                pool.ensure(slot.name, self._slot_environment(slot))

    def _launch_remote(self, queue: JobQueue, job: Job, slot: Slot, spec: dict, command: list[str], cwd: Path,
                       log: IO[bytes], env: dict[str, str]) -> None:
        """One Ray task for this attempt; the job is *placing* until a node has started its trainer."""
        assert self.backend is not None
        if self._git_commit is None:
            self._git_commit = self.workspace.git_commit() or ""
        run = {"blueno_version": __version__, "git_commit": self._git_commit or None,
               "log_path": str(Path(spec["log_path"]).relative_to(self.workspace.root))}
        try:
            launched = self.backend.launch(
                job, slot, spec, command, cwd, log, env=env, grace=self.grace, queue=queue, run=run,
                on_placed=lambda where: self._emit(JobLaunched(job.id, job.run_id, where, job.attempt)))
        except Exception as exc:  # the cluster went away, or the data could not be packed: worth a retry
            log.write(f"error: cannot place the job on the cluster: {exc}\n".encode())
            log.close()
            queue.on_exit(job.id, job.attempt, 1, detail=f"cannot place the job on the cluster: {exc}")
            return
        launched.source, launched.next_ingest = FileSource(spec["events"]), time.monotonic() + INGEST_S
        self._running[slot.name] = launched

    def _ingest(self, store: Store, launched: Launched, settle: bool = False) -> None:
        """Write what a trainer reported; a failure to record it stops the trainer (its events are kept)."""
        if launched.failure is not None:
            return
        job = launched.job
        run_id = job.run_id if job.run_id is not None else job.id
        try:
            read = ingest.settle if settle else ingest.ingest
            outcome = read(store, launched.source, job.id, job.attempt, run_id)
        except (sqlite3.Error, OSError) as exc:
            launched.failure = f"its events could not be recorded: {exc}"
            launched.terminate(self.grace, interrupted=False)
            return
        for problem in outcome.problems:
            launched.log.write(f"=== blueno: ignored a line of the events file: {problem}\n".encode())

    def _ingest_running(self, store: Store) -> None:
        t = time.monotonic()
        for launched in self._running.values():
            if t >= launched.next_ingest and launched.source.size() > 0:
                launched.next_ingest = t + INGEST_S
                self._ingest(store, launched)

    def _reap(self, queue: JobQueue, selector: selectors.BaseSelector) -> int:
        """Record every trainer that exited (what it reported, then how it ended); how many."""
        reaped = 0
        for name, launched in list(self._running.items()):
            returncode = launched.poll()
            if returncode is None:
                continue
            del self._running[name]
            if launched.pidfd is not None:
                selector.unregister(launched.pidfd)
            self._ingest(queue.store, launched, settle=True)
            self._orphans |= launched.cleanup()
            job = launched.job
            run_id = job.run_id if job.run_id is not None else job.id
            if returncode == EXIT_OK and launched.failure is None and job.config.get("command"):
                # A command that never reported a result: its exit status is its verdict.
                ingest.succeed_without_result(queue.store, job.id, job.attempt, run_id)
            detail = launched.failure or ("" if returncode == 0 else _log_tail(self.workspace.run_log(run_id)))
            self._ended(queue, job, name, returncode, interrupted=launched.interrupted, detail=detail)
            reaped += 1
        return reaped

    def _ended(self, queue: JobQueue, job: Job, slot: str, returncode: int, *, interrupted: bool = False,
               detail: str = "") -> None:
        state = queue.on_exit(job.id, job.attempt, returncode, interrupted=interrupted, detail=detail)
        if state.is_terminated:
            from blueno import notify  # posts from its own thread; a no-op when notifications are off

            notify.on_job_finished(self.workspace, queue.store, job.id)
        self._emit(JobExited(job.id, job.run_id, slot, state, returncode))

    def _honour_cancels(self, queue: JobQueue) -> None:
        by_job = {launched.job.id: launched for launched in self._running.values()}
        for job_id in queue.cancel_requested(list(by_job)):
            by_job[job_id].terminate(self.grace, interrupted=False)

    def _shutdown(self, queue: JobQueue, selector: selectors.BaseSelector) -> None:
        """Stop every trainer: SIGTERM (they checkpoint), grace, SIGKILL; record each ending."""
        if self._spares is not None:
            self._spares.close()  # first: they hold no job, and must not take CPU from the trainers' checkpoints
        preparing = [job for job, _ in self._preparing.values()]
        if self._cancel_on_stop and (self._running or preparing):
            queue.cancel([launched.job.id for launched in self._running.values()] + [job.id for job in preparing])
        for name, (job, future) in list(self._preparing.items()):  # never started: requeued, or cancelled
            future.cancel()
            del self._preparing[name]
            self._ended(queue, job, name, 143, interrupted=True)
        if not self._running:
            return
        for launched in self._running.values():
            launched.terminate(self.grace, interrupted=not self._cancel_on_stop)
        while self._running:
            selector.select(0.05)
            for launched in self._running.values():
                launched.escalate()
            self._reap(queue, selector)
        deadline = time.monotonic() + 2.0
        while self._orphans and time.monotonic() < deadline:
            self._orphans = reap(self._orphans)
            time.sleep(0.02)

    # -- bookkeeping ----------------------------------------------------------------

    def _register(self, store: Store) -> None:
        t = now()
        try:
            pid_started = psutil.Process().create_time()
        except psutil.Error:
            pid_started = None
        with store.write() as conn:
            conn.execute("UPDATE schedulers SET stopped = ?, state = 'stopped' WHERE stopped IS NULL", (t,))
            self._scheduler_row = conn.execute(
                "INSERT INTO schedulers (pid, pid_started, host, mode, slots, state, started, heartbeat) "
                "VALUES (?, ?, ?, ?, ?, 'running', ?, ?)",
                (os.getpid(), pid_started, self.host, self.mode,
                 dumps([s.name for s in self.slots] or [f"ray:{self.backend.address}" if self.backend else ""]), t, t),
            ).lastrowid
        self.state = "running"

    def _set_state(self, store: Store, state: str) -> None:
        if state != self.state:
            self.state = state
            with store.write() as conn:
                conn.execute("UPDATE schedulers SET state = ? WHERE id = ?", (state, self._scheduler_row))

    def _beat(self, store: Store) -> None:
        with store.write() as conn:
            conn.execute("UPDATE schedulers SET heartbeat = ? WHERE id = ?", (now(), self._scheduler_row))

    def _unregister(self, store: Store) -> None:
        if self._scheduler_row is None:
            return
        with contextlib.suppress(Exception), store.write() as conn:
            conn.execute(
                "UPDATE schedulers SET state = 'stopped', stopped = ? WHERE id = ?", (now(), self._scheduler_row)
            )
        self._scheduler_row = None

    def _wake(self) -> None:
        with self._wake_lock, contextlib.suppress(BlockingIOError, OSError):
            if self._wake_w is not None:
                os.write(self._wake_w, b"!")

    def _close_wake(self) -> None:
        """Close the wake-up pipe (under the lock, so no late wake writes to a reused descriptor)."""
        with self._wake_lock:
            for fd in (self._wake_r, self._wake_w):
                if fd is not None:
                    os.close(fd)
            self._wake_r = self._wake_w = None

    def _emit(self, event: SchedulerEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)


def settle_events(workspace: Workspace, store: Store, job_id: int, attempt: int) -> None:
    """Ingest what an attempt reported before its job is requeued (recovery after a scheduler died)."""
    row = store.query_one("SELECT id FROM runs WHERE job_id = ?", (job_id,))
    run_id = row["id"] if row else job_id
    ingest.settle(store, FileSource(jobspec.attempt_files(workspace, run_id, attempt)[1]), job_id, attempt, run_id)


def warm_setting(workspace: Workspace, slots: Sequence[Slot] = ()) -> bool:
    """``[scheduler] warm`` in the settings: keep a spare trainer per slot.

    Unset, it is on for GPU slots, and for CPU slots on Linux, where one zygote imports
    TensorFlow once and forks every spare (:mod:`blueno.spare`): the demo grid on 2 CPU
    slots in about 0.6 x the cold makespan (docs/benchmarks.md).  Elsewhere each CPU slot's
    spare would import beside the running trainings, on the same cores (epochs 1.3-1.7 x
    longer, no makespan gain): off there.
    """
    value = workspace.settings().get("scheduler", {}).get("warm")
    if value is None:
        return any(slot.gpu is not None for slot in slots) or sys.platform.startswith("linux")
    if not isinstance(value, bool):
        raise BluenoError(
            f"{workspace.settings_path}: [scheduler] warm = {value!r} is not true or false; write "
            "`warm = true` (a spare trainer per slot; the default on GPU slots) or `warm = false`"
        )
    return value


def recover_if_idle(workspace: Workspace, store: Store, grace: float = GRACE_S) -> RecoveryReport | None:
    """Settle jobs left running when no scheduler is alive (None when one is: it will)."""
    lock = SchedulerLock(workspace)
    if not lock.try_acquire():
        return None
    try:
        return JobQueue(store).recover(process_alive, lambda pids: kill_trees(pids, grace),
                                       settle=lambda job_id, attempt: settle_events(workspace, store, job_id, attempt))
    finally:
        lock.release()
