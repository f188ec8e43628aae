"""Warm trainers against cold ones: the demo grid (8 real Keras trainings on the digits), both ways, one run.

Each way runs the real scheduler on the same CPU slots on a fresh workspace with the
demo dataset, exactly as ``blueno batch resources/examples/demo.toml --slots 2 [--no-warm]``
does (the first round of a warm batch is cold: its spares start beside it).  Printed:

* makespan, cold and warm, and their ratio (target: warm <= 0.6 x cold on 2 CPU slots);
* per-job overhead, from the moment the slot's previous job exited (or the scheduler
  started) to (a) the trainer's ``start`` event: the trainer running the job's own code,
  its data loaded, and (b) the first training batch measured (the first ``metrics``
  event: the trainer sends the first batch's loss at once).  (b) includes building the
  model and tracing its training step, which depend on the job, so no spare can do them
  ahead.  Times are the events' own (``logs/run-N.attempt-K.events.jsonl``).  Medians for
  the cold run and for the warm run's jobs that a ready spare took (target: <= 0.5 s);
* the sum of pure fit time (first batch measured -> last epoch event, all jobs), so
  what is not fitting shows;
* interference: the epoch time of a training alone, and with two spares importing
  TensorFlow beside it (at idle priority), same configuration, alternated;
* what a ready spare holds in memory (RSS and USS, MiB).

    .venv/bin/python benchmarks/makespan_keras.py [--slots 2 | --gpus 0,1] [--grid resources/examples/demo.toml]
"""

from __future__ import annotations

import argparse
import os
import platform
import selectors
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import psutil  # noqa: E402

from blueno import datasets, jobspec  # noqa: E402
from blueno.actions import submit_grid  # noqa: E402
from blueno.events import FileSource  # noqa: E402
from blueno.queue import JobQueue, JobState  # noqa: E402
from blueno.scheduler import (  # noqa: E402
    JOB_ENV_KEYS,
    JobExited,
    JobLaunched,
    Scheduler,
    SchedulerEvent,
    Slot,
    detect_slots,
)
from blueno.spare import Spare, SparePool  # noqa: E402
from blueno.store import Store  # noqa: E402
from blueno.workspace import Workspace  # noqa: E402


@dataclass
class Timeline:
    """When each slot fell free and each job was launched, as the scheduler said it (wall clock)."""

    started: float = field(default_factory=time.time)
    free_since: dict[str, float] = field(default_factory=dict)
    launches: dict[int, tuple[str, float, bool]] = field(default_factory=dict)  # job → slot, slot free, warm

    def on_event(self, event: SchedulerEvent) -> None:
        if isinstance(event, JobLaunched):
            self.launches[event.job_id] = (event.slot, self.free_since.get(event.slot, self.started), event.warm)
        elif isinstance(event, JobExited):
            self.free_since[event.slot] = time.time()


@dataclass
class Outcome:
    makespan: float
    overheads: list[tuple[float, float, bool]]  # per job: slot free → run started, → first batch; started warm?
    fit: list[float]  # per job: first batch measured → last epoch measured


def reported(workspace: Workspace, run_id: int, attempt: int) -> tuple[float, float, float]:
    """When the attempt's trainer reported its start, its first batch and its last epoch (its events' times)."""
    events, _, _ = FileSource(jobspec.attempt_files(workspace, run_id, attempt)[1]).read(0)
    start = next(e.time for e in events if e.type == "start")
    first = next(e.time for e in events if e.type == "metrics")
    last = [e.time for e in events if e.type == "epoch"][-1]
    return start, first, last


def merge(outcomes: list[Outcome]) -> Outcome:
    """Several runs as one: the median makespan, every job's overheads, the mean of the runs' fit sums."""
    return Outcome(statistics.median(o.makespan for o in outcomes), [x for o in outcomes for x in o.overheads],
                   [statistics.mean(sum(o.fit) for o in outcomes)])


def fresh_workspace(root: Path) -> Workspace:
    workspace = Workspace(root).ensure()
    with workspace.open_store() as store:
        datasets.make_demo(workspace, store)
    return workspace


def run_grid(root: Path, grid: str, slots: list[Slot], warm: bool) -> Outcome:
    workspace = fresh_workspace(root)
    with workspace.open_store() as store:
        submit_grid(workspace, store, grid)
        timeline = Timeline()
        began = time.monotonic()
        Scheduler(workspace, slots, mode="batch", warm=warm, on_event=timeline.on_event).run(until_empty=True)
        makespan = time.monotonic() - began
        jobs = JobQueue(store).jobs()
        assert all(job.state == JobState.SUCCEEDED for job in jobs), [(job.id, job.state, job.error) for job in jobs]
        overheads, fit = [], []
        for job in jobs:
            _, free, was_warm = timeline.launches[job.id]
            started, first, last = reported(workspace, job.run_id, job.attempt)
            overheads.append((started - free, first - free, was_warm))
            fit.append(last - first)
    return Outcome(makespan, overheads, fit)


def epoch_times(store: Store, run_id: int) -> list[float]:
    """Durations of epochs 2.. (epoch 1 includes tracing), from the epochs' measured times."""
    times = [row["time"] for row in store.query(
        "SELECT time FROM metrics WHERE run_id = ? AND key = 'loss' ORDER BY step", (run_id,))]
    return [b - a for a, b in zip(times, times[1:], strict=False)]


INTERFERENCE_GRID = """
name = "interference"
dataset = "digits"
[split]
validation = 0.2
seed = 0
[params]
epochs = 8
batch_size = 32
learning_rate = 0.003
[models.cnn2d]
filters = 16
dense_units = 32
"""


def train_beside_spares(root: Path, spares: int) -> tuple[list[float], list[dict[str, float]]]:
    """One training on one CPU slot (cold), with ``spares`` spares started when its first batch is measured.

    Returns its epoch times and each spare's memory once ready (empty without spares).
    """
    workspace = fresh_workspace(root)
    grid = root / "interference.toml"
    grid.write_text(INTERFERENCE_GRID)
    memory: list[dict[str, float]] = []
    with workspace.open_store() as store:
        submit_grid(workspace, store, str(grid))
        scheduler = Scheduler(workspace, [Slot("cpu0", None)], mode="batch", warm=False)
        thread = threading.Thread(target=scheduler.run, kwargs={"until_empty": True})
        thread.start()
        if spares:
            run_id = JobQueue(store).jobs()[0].run_id
            while store.query_one("SELECT 1 FROM metrics WHERE run_id = ? AND key = 'batch_loss'", (run_id,)) is None:
                time.sleep(0.02)
            memory = _spares_beside(workspace, scheduler, spares, thread)
        thread.join()
        job = JobQueue(store).jobs()[0]
        assert job.state == JobState.SUCCEEDED, job.error
        return epoch_times(store, job.run_id), memory


def _spares_beside(workspace: Workspace, scheduler: Scheduler, count: int, training: threading.Thread
                   ) -> list[dict[str, float]]:
    """Start ``count`` spares (as the slot's would be) and keep them until they are ready and the training ends."""
    selector = selectors.DefaultSelector()
    pool = SparePool(scheduler.trainer_command, workspace.root, workspace.logs_dir, selector, JOB_ENV_KEYS)
    pool.zygote_off = True  # each spare imports for itself here: the cost of one import beside a training
    env = scheduler._slot_environment(Slot("cpu0", None))  # the very environment the slot's spare gets
    for i in range(count):
        pool.ensure(f"bench{i}", env)
    memory = []
    try:
        while training.is_alive() or any(not spare.ready for spare in pool.spares.values()):
            for key, _ in selector.select(0.1):
                if isinstance(key.data, Spare):
                    pool.on_readable(key.data)
            if not pool.spares:
                break
        for spare in pool.spares.values():
            if spare.ready:
                info = psutil.Process(spare.popen.pid).memory_full_info()
                memory.append({"rss": info.rss / 2**20, "uss": info.uss / 2**20})
    finally:
        pool.close()
        selector.close()
    return memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slots", type=int, default=2, help="CPU slots (default 2)")
    parser.add_argument("--gpus", help="GPU slots instead, e.g. 0,1 (benchmarks/gpu_grid.sh passes every GPU)")
    parser.add_argument("--grid", default=str(ROOT / "resources" / "examples" / "demo.toml"))
    parser.add_argument("--skip-interference", action="store_true")
    parser.add_argument("--repeat", type=int, default=1,
                        help="cold/warm pairs, alternating which goes first (a loaded machine drifts); medians printed")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    slots = detect_slots(gpus=args.gpus) if args.gpus else [Slot(f"cpu{i}", None) for i in range(args.slots)]
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        pairs = []
        for i in range(args.repeat):
            order = (False, True) if i % 2 == 0 else (True, False)
            done = {warm: run_grid(Path(tmp) / f"{'warm' if warm else 'cold'}{i}", args.grid, slots, warm=warm)
                    for warm in order}
            pairs.append((done[False], done[True]))
            if args.repeat > 1:
                print(f"pair {i + 1}: makespan cold {done[False].makespan:.1f} s, warm {done[True].makespan:.1f} s "
                      f"({done[True].makespan / done[False].makespan:.2f}); load {os.getloadavg()[0]:.1f}", flush=True)
        cold, warm = merge([c for c, _ in pairs]), merge([w for _, w in pairs])
        interference = []
        if not args.skip_interference:
            for i in range(2):  # alternated, so a change of load hits both
                alone, _ = train_beside_spares(Path(tmp) / f"alone{i}", 0)
                beside, memory = train_beside_spares(Path(tmp) / f"beside{i}", 2)
                interference.append((alone, beside, memory))

    def median(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    cold_started = median([s for s, _, _ in cold.overheads])
    cold_batch = median([b for _, b, _ in cold.overheads])
    ready_started = [s for s, _, was_warm in warm.overheads if was_warm]
    ready_batch = [b for _, b, was_warm in warm.overheads if was_warm]
    warm_cold = [b for _, b, was_warm in warm.overheads if not was_warm]
    kind = f"{len(slots)} GPU slots" if args.gpus else f"{len(slots)} CPU slots"
    print(f"\nwarm vs cold trainers — {Path(args.grid).name}, {len(cold.overheads) // args.repeat} jobs on {kind}, "
          f"{args.repeat} run(s) each way (makespan: median; overheads: median over every job) "
          f"({platform.node()}, {os.cpu_count()} cores, load {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after; Python {platform.python_version()})\n")
    print("| figure | cold | warm | warm / cold | target |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| makespan | {cold.makespan:.1f} s | {warm.makespan:.1f} s | {warm.makespan / cold.makespan:.2f} | ≤ 0.6 |")
    print(f"| per-job overhead, slot free → trainer's start event (data loaded), median | {cold_started:.2f} s "
          f"| {median(ready_started):.2f} s ({len(ready_started)} jobs a ready spare took) "
          f"| {median(ready_started) / cold_started:.2f} | ≤ 0.5 s warm |")
    print(f"| per-job overhead, slot free → first batch measured, median | {cold_batch:.2f} s "
          f"| {median(ready_batch):.2f} s (the same jobs) | {median(ready_batch) / cold_batch:.2f} | |")
    if warm_cold:
        print(f"| the same, jobs of the warm run that started cold (no ready spare) | | {median(warm_cold):.2f} s "
              f"({len(warm_cold)} jobs) | | |")
    print(f"| sum of pure fit time (first batch → last epoch event) | {sum(cold.fit):.1f} s | {sum(warm.fit):.1f} s "
          f"| {sum(warm.fit) / sum(cold.fit):.2f} | |")
    print(f"| makespan − fit sum / slots (the time not fitting) | {cold.makespan - sum(cold.fit) / len(slots):.1f} s "
          f"| {warm.makespan - sum(warm.fit) / len(slots):.1f} s | | |")
    for alone, beside, _ in interference:
        print(f"| epoch time alone / with 2 spares importing beside it (median of epochs 2–8) "
              f"| {median(alone) * 1000:.0f} ms | {median(beside) * 1000:.0f} ms "
              f"| {median(beside) / median(alone):.2f} | ≈ 1 |")
    spares = [spare for _, _, memory in interference for spare in memory]
    if spares:  # one line: every ready spare measured, alike within a few MiB
        print(f"| memory of a ready spare (importing for itself; median of {len(spares)}) | "
              f"| RSS {median([m['rss'] for m in spares]):.0f} MiB, USS {median([m['uss'] for m in spares]):.0f} MiB "
              "| | |")


if __name__ == "__main__":
    main()
