"""``blueno batch GRID`` (= ``python main.py --batch GRID``): queue a grid and run it to the end.

For lab GPU boxes reached over SSH: validates, enqueues, runs one job per
slot until the queue is empty, shows live progress, ends with the best runs,
and exits non-zero if any job of the grid failed.  Ctrl-C (or SIGTERM) stops
cleanly: running trainers checkpoint and their jobs are requeued, to resume
on the next start.

Without a grid it is the workspace's scheduler process (mode ``service``):
it serves the queue until stopped.  The app's Start launches exactly this
(:mod:`blueno.service`) and attaches to it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, TextIO

from blueno import BluenoError, actions
from blueno.cli.common import format_value, print_table
from blueno.monitor import Progress, best_runs, progress
from blueno.queue import JobQueue, JobState, SubmitResult
from blueno.scheduler import JobExited, JobLaunched, Recovered, Scheduler, SchedulerEvent, configured_slots
from blueno.service import SERVICE_MODE, SIGNALS
from blueno.store import Store
from blueno.workspace import Workspace

if TYPE_CHECKING:
    from blueno.grid import Grid

EXIT_FAILED_JOBS = 1
EXIT_INTERRUPTED = 130


def add_slot_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--slots", type=int, metavar="N", help="run N jobs at once on the CPU (no GPU)")
    group.add_argument("--gpus", metavar="LIST",
                       help="GPUs to use, e.g. 0,2 (default: [scheduler] in settings.toml, else "
                       "$CUDA_VISIBLE_DEVICES, else every GPU NVML sees, else 1 CPU slot)")
    group.add_argument("--ray", metavar="ADDRESS",
                       help="run the jobs on a Ray cluster, one per free GPU of any node: the head's address "
                       "(HOST:6379), or auto for a cluster started on this box (default: [scheduler] backend "
                       "in settings.toml; see docs/cluster.md)")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "batch", help="queue a grid and run it to the end, headless",
        description="Validate GRID, queue its configurations (skipping those already done), run them one "
        "per GPU slot until the queue is empty, and print the best runs. Exit status: 0 all succeeded, "
        "1 some job failed, 2 bad input, 130 interrupted. Without GRID: serve the queue until stopped (the app's "
        "Start runs this; `blueno scheduler pause|resume|stop` steer it).",
    )
    parser.add_argument("grid", metavar="GRID", nargs="?",
                        help="grid file (TOML); see docs/grid.md. Without one, serve the queue until stopped "
                        "(what the app's Start runs; `blueno scheduler pause|resume|stop` steer it)")
    add_slot_arguments(parser)
    parser.add_argument("--no-sync", action="store_true", help="do not sync results to Elasticsearch")
    parser.add_argument("--no-warm", dest="warm", action="store_false", default=None,
                        help="start every trainer cold: no spare trainer per slot with TensorFlow imported "
                        "ahead of its job (default: [scheduler] warm in settings.toml, else on for GPU slots, "
                        "and for CPU slots on Linux)")
    parser.set_defaults(func=run_batch)


def describe_submit(grid_path: str, result: SubmitResult, pending: int = 0) -> str:
    """One line on what submitting did; ``pending``: the grid's jobs already queued or running."""
    parts = [f"{len(result.added)} new"]
    if result.requeued:
        parts.append(f"{len(result.requeued)} queued again")
    if result.skipped:
        parts.append(f"{result.skipped} already done or queued")
    if result.experiment_id:
        where = f"experiment {result.experiment_id}"
    elif pending:
        where = f"{pending} still to run from an earlier submission"
    else:
        where = "nothing new to run"
    return f"{grid_path}: {result.total} configurations ({', '.join(parts)}); {where}"


def run_batch(workspace: Workspace, args: argparse.Namespace) -> int:
    from blueno import cluster
    from blueno.scheduler import active_scheduler

    on_cluster = not (args.gpus or args.slots) and cluster.cluster_settings(workspace, args.ray) is not None
    slots = [] if on_cluster else configured_slots(workspace, gpus=args.gpus, slots=args.slots)
    workspace.ensure()
    other = active_scheduler(workspace)
    if other is not None:
        raise BluenoError(
            f"a {other.mode} scheduler (pid {other.pid} on {other.host}) already runs on {workspace.root}. "
            f"Queue the grid for it with `blueno queue add {args.grid}`, or stop it first."
        )
    with workspace.open_store() as store:
        grid = None
        experiment_ids: list[int] = []  # none: the whole queue
        if args.grid is not None:
            grid, result = actions.submit_grid(workspace, store, args.grid)
            experiment_ids = _experiments_of(store, grid, result)
            pending = sum(JobQueue(store).counts(e)[s] for e in experiment_ids
                          for s in (JobState.QUEUED, JobState.RUNNING))
            print(describe_submit(args.grid, result, pending), flush=True)
        from blueno import elastic

        sync = None if args.no_sync else elastic.start_background_sync(workspace, store)
        backend = cluster.connect(workspace, args.ray) if on_cluster else None
        if backend is not None:
            print(f"on the Ray cluster at {backend.address}: {backend.capacity()} slots", flush=True)
        display = Display(store, experiment_ids, slots=[s.name for s in slots] if slots else None, out=sys.stdout)
        mode = "batch" if grid is not None else SERVICE_MODE
        scheduler = Scheduler(workspace, slots, mode=mode, on_event=display.on_event, backend=backend,
                              warm=args.warm)
        try:
            interrupted = _run_with_signals(scheduler, display, until_empty=grid is not None)
        finally:
            if backend is not None:
                backend.close()
        if sync is not None:
            if sync.active:  # else another process (the window) syncs and sends these too
                sync.drain(wait=10.0)  # the last runs, before we exit; what can't go now stays in the outbox
            sync.stop()
            print(elastic.status(store).summary())
        display.finish()
        if grid is None:
            print("scheduler stopped: interrupted jobs were checkpointed and requeued.")
            return 0
        failed = sum(JobQueue(store).counts(e)[JobState.FAILED] for e in experiment_ids)
        _print_best(store, experiment_ids, grid.varying_params())
    if interrupted:
        print("stopped: interrupted jobs were checkpointed and requeued; run the same command to resume.")
        return EXIT_INTERRUPTED
    return EXIT_FAILED_JOBS if failed else 0


def _experiments_of(store: Store, grid: Grid, result: SubmitResult) -> list[int]:
    """The experiments this grid's configurations belong to (earlier submissions included)."""
    if result.experiment_id is not None:
        return [result.experiment_id]
    rows = store.query("SELECT id FROM experiments WHERE name = ? AND grid_text = ?",
                       (grid.name, grid.text))
    return [row["id"] for row in rows]


def _run_with_signals(scheduler: Scheduler, display: Display, until_empty: bool = True) -> bool:
    """Run the scheduler in a thread; the main thread draws and turns signals into a clean stop.

    SIGINT, SIGTERM and SIGHUP stop it (a second one kills running trainers
    now); SIGUSR1 pauses and SIGUSR2 resumes it (see :mod:`blueno.service`).
    """
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if stopping.is_set():
            display.note("stopping harder: killing running trainers now")
            scheduler.hurry()
            return
        stopping.set()
        display.note("stopping: running trainers checkpoint and their jobs are requeued "
                     "(press Ctrl-C again to kill them now)")
        scheduler.stop()

    def on_pause(signum: int, _frame: object) -> None:
        if signum == SIGNALS["pause"]:
            display.note("paused: no new job starts; running ones go on")
            scheduler.pause()
        else:
            display.note("resumed")
            scheduler.resume()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    previous.update({sig: signal.signal(sig, on_pause) for sig in (SIGNALS["pause"], SIGNALS["resume"])})
    errors: list[BaseException] = []

    def target() -> None:
        try:
            scheduler.run(until_empty=until_empty)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="blueno-scheduler")
    try:
        thread.start()
        while thread.is_alive():
            display.draw()
            thread.join(display.interval)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if errors:
        raise errors[0]
    return stopping.is_set()


class Display:
    """Live progress in the terminal: on a TTY a rich bar for the grid and a line per slot, redrawn in
    place; otherwise (piped, logged) plain lines, one per event, in the formats scripts read."""

    def __init__(self, store: Store, experiment_ids: list[int], slots: list[str] | None, out: TextIO) -> None:
        self.store = store
        self.experiment_ids = experiment_ids
        self.slots = slots
        self.out = out
        self.tty = out.isatty()
        self.interval = 0.5 if self.tty else 30.0
        self._done_size = (0, 0)
        self._last_summary = ""
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._live: Any = None  # rich.live.Live on a TTY, started at the first draw

    def _rich(self) -> Any:
        if self._live is None:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.out, force_terminal=True, highlight=False)
            self._live = Live(console=console, auto_refresh=False, transient=True)
            self._live.start()
        return self._live

    def _renderable(self, lines: list[str], done: int, size: int) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        head = Table.grid(padding=(0, 1))
        head.add_row(ProgressBar(total=max(size, 1), completed=done if size else 1, width=30),
                     Text(lines[0].split("] ", 1)[-1]))
        return Group(head, *(Text(line) for line in lines[1:]))

    def on_event(self, event: SchedulerEvent) -> None:
        """Called from the scheduler thread; on a TTY the next draw shows it anyway."""
        if isinstance(event, Recovered):
            report = event.report
            if report.requeued or report.cancelled or report.failed:
                self.note(f"recovered from an earlier stop: {len(report.requeued)} jobs requeued to resume, "
                          f"{len(report.cancelled)} cancelled, {len(report.failed)} failed")
        elif not self.tty and isinstance(event, JobLaunched):
            self.note(f"job {event.job_id} (run {event.run_id}) started on {event.slot}, attempt {event.attempt}")
        elif isinstance(event, JobExited) and event.state == JobState.FAILED:
            self.note(f"job {event.job_id} (run {event.run_id}) on {event.slot}: failed: {self._reason(event.job_id)}")
        elif not self.tty and isinstance(event, JobExited):
            self.note(f"job {event.job_id} (run {event.run_id}) on {event.slot}: {event.state}")

    def _reason(self, job_id: int) -> str:
        """A failed job's stored error on one line (the full text: `blueno queue show` / the log)."""
        row = self.store.query_one("SELECT error FROM jobs WHERE id = ?", (job_id,))
        text = " ".join(((row["error"] if row else None) or "no reason recorded").split())
        return text if len(text) <= 300 else text[:297] + "..."

    def note(self, text: str) -> None:
        with self._lock:
            if self.tty:
                self._rich().console.print(text, markup=False)
                return
            print(text, file=self.out, flush=True)
            self._last_summary = ""  # a job line came after it: the final summary must follow

    def _snapshot(self) -> Progress:
        total: Progress | None = None
        for experiment_id in self.experiment_ids or [None]:
            snap = progress(self.store, experiment_id)
            if total is None:
                total = snap
            else:
                total = Progress({s: total.counts[s] + snap.counts[s] for s in JobState}, total.running)
        assert total is not None
        return total

    def lines(self) -> list[str]:
        snap = self._snapshot()
        done, size = snap.finished, snap.total
        self._done_size = (done, size)
        width = 30
        filled = int(width * done / size) if size else width
        counts = ", ".join(f"{n} {state}" for state, n in snap.counts.items() if n)
        elapsed = time.monotonic() - self._started
        lines = [f"[{'#' * filled}{'.' * (width - filled)}] {done}/{size}  {counts}  ({elapsed:.0f}s)"]
        busy = {p.slot: p for p in snap.running}
        for slot in self.slots if self.slots is not None else sorted(busy):  # None: a cluster's changing slots
            p = busy.get(slot)
            if p is None:
                lines.append(f"  {slot}: idle")
                continue
            epochs = f"{p.epoch}/{p.epochs}" if p.epochs else str(p.epoch)
            metric = f"  {p.metric} {format_value(p.value)}" if p.metric else ""
            lines.append(f"  {slot}: job {p.job_id} {p.model} epoch {epochs}{metric}  (attempt {p.attempt})")
        return lines

    def draw(self) -> None:
        with self._lock:
            lines = self.lines()
            if self.tty:
                self._rich().update(self._renderable(lines, *self._done_size), refresh=True)
            elif lines[0] != self._last_summary:  # a log needs no repeated lines
                self.out.write(lines[0] + "\n")
                self._last_summary = lines[0]
            self.out.flush()

    def finish(self) -> None:
        with self._lock:
            if self._live is not None:
                self._live.stop()  # transient: the live lines go, the summary below stays
                self._live = None
            summary = self.lines()[0]
            if self.tty or summary != self._last_summary:
                print(summary, file=self.out, flush=True)


def _print_best(store: Store, experiment_ids: list[int], varying: list[str]) -> None:
    runs = []
    for experiment_id in experiment_ids:
        runs.extend(best_runs(store, experiment_id, limit=5))
    if not runs:
        return
    print("\nbest runs:")
    rows = [
        (run.run_id, run.model, run.monitor, run.score, run.best.get("val_accuracy"), run.duration,
         ", ".join(f"{k}={format_value(run.params[k])}" for k in varying if k in run.params))
        for run in runs[:5]
    ]
    print_table(rows, ("run", "model", "monitor", "best", "val_accuracy", "seconds", "params"))
