"""Scheduler overhead: N short no-op jobs over S slots, against the ideal.

Each job is the trainer stand-in (a real subprocess that sleeps ``--duration``
seconds and records start and end in a ledger).  Printed:

* makespan / ideal, where ideal = sum of job times / S (job time = the stand-in's
  own start→end, so Python start-up counts as overhead here);
* the same ratio with the measured Python start-up taken out;
* the mean and worst gap on a slot between one job ending and the scheduler
  starting the next process (claim time), which excludes Python start-up;
* the original Blueno's policy (one job at a time, then a 60 s sleep) on the
  same job times, for comparison.

    .venv/bin/python benchmarks/scheduler_overhead.py [--jobs 40] [--slots 2] [--duration 1.0] [--warm]

``--warm`` gives each slot a spare stand-in (:mod:`blueno.spare`) that has done its
start-up before its job is claimed, as ``[scheduler] warm = true`` does for real
trainers; the makespan / ideal row then counts what is left of the start-up.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from standin_model import STANDIN_COMMAND, standin_grid  # noqa: E402

from blueno.queue import JobQueue  # noqa: E402
from blueno.scheduler import Scheduler, Slot  # noqa: E402
from blueno.workspace import Workspace  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--duration", type=float, default=1.0, help="seconds each job sleeps")
    parser.add_argument("--warm", action="store_true", help="spare stand-ins per slot ([scheduler] warm = true)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        workspace = Workspace(Path(tmp) / "ws").ensure()
        ledger = Path(tmp) / "ledger.csv"
        os.environ["BLUENO_LEDGER"] = str(ledger)
        with workspace.open_store() as store:
            queue = JobQueue(store)
            queue.submit(standin_grid(args.jobs, duration=args.duration))
            slots = [Slot(f"cpu{i}", None) for i in range(args.slots)]
            began = time.time()
            Scheduler(workspace, slots, trainer_command=STANDIN_COMMAND, warm=args.warm).run(until_empty=True)
            finished = time.time()
            claimed = {job.id: (job.slot, job.claimed) for job in queue.jobs()}
        entries = []
        for line in ledger.read_text().splitlines():
            job, _attempt, start, end = line.split(",")
            slot, claim = claimed[int(job)]
            entries.append((slot, claim, float(start), float(end)))

    job_times = [end - start for _, _, start, end in entries]
    startups = [start - claim for _, claim, start, _ in entries]
    ideal = sum(job_times) / args.slots
    makespan = finished - began
    gaps = []
    for slot in {e[0] for e in entries}:
        on_slot = sorted((claim, end) for s, claim, _, end in entries if s == slot)
        gaps += [nxt[0] - prev[1] for prev, nxt in zip(on_slot, on_slot[1:], strict=False)]
    startup = statistics.mean(startups)
    ratio_no_startup = (makespan - startup * len(entries) / args.slots) / ideal
    original = sum(job_times) + 60.0 * len(entries)

    print(f"scheduler overhead — {len(entries)} jobs x {args.duration:g} s on {args.slots} slots, "
          f"{'warm' if args.warm else 'cold'} stand-ins "
          f"({platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()})\n")
    print("| figure | value | target |")
    print("| --- | --- | --- |")
    print(f"| makespan | {makespan:.2f} s | |")
    print(f"| ideal (sum of job times / slots) | {ideal:.2f} s | |")
    print(f"| makespan / ideal | {makespan / ideal:.3f} | {'≤ 1.05 (warm)' if args.warm else ''} |")
    print(f"| makespan / ideal, Python start-up excluded | {ratio_no_startup:.3f} | ≤ 1.05 |")
    print(f"| mean gap, job end → next process start on a slot | {statistics.mean(gaps) * 1000:.1f} ms | ≤ 200 ms |")
    print(f"| worst gap | {max(gaps) * 1000:.1f} ms | |")
    print(f"| mean Python start-up of the stand-in | {startup * 1000:.1f} ms | (excluded) |")
    print(f"| original Blueno policy (1 at a time + 60 s sleep) / ideal | {original / ideal:.1f} | |")


if __name__ == "__main__":
    main()
