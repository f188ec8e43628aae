"""Scheduler makespan: jobs of mixed lengths on 2 slots, against the ideal and the original policy.

Blueno: the real scheduler runs 16 stand-in jobs (real subprocesses sleeping 0.5-3 s, seeded) on two
CPU slots.  The ideal is the lower bound no scheduler can beat: max(total work / slots, longest job).
The original Blueno ran one job at a time and slept 60 s between jobs; its makespan on the same
durations is computed (sum of durations + 60 s per gap), not waited for.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from common import Row

JOBS, SLOTS, SEED, PAUSE_S = 16, 2, 3, 60.0


def run(tmp: Path) -> list[Row]:
    from standin_model import STANDIN_COMMAND, standin_grid

    from blueno.queue import JobQueue, JobState
    from blueno.scheduler import Scheduler, Slot
    from blueno.workspace import Workspace

    rng = random.Random(SEED)
    durations = [round(rng.uniform(0.5, 3.0), 2) for _ in range(JOBS)]
    workspace = Workspace(tmp / "makespan-ws").ensure()
    with workspace.open_store() as store:
        queue = JobQueue(store)
        for i, duration in enumerate(durations):
            queue.submit(standin_grid(1, name=f"makespan-{i}", duration=duration, steps=i + 1))  # distinct configs
        started = time.monotonic()
        Scheduler(workspace, [Slot(f"cpu{i}", None) for i in range(SLOTS)],
                  trainer_command=STANDIN_COMMAND).run(until_empty=True)
        makespan = time.monotonic() - started
        counts = queue.counts()
        assert counts[JobState.SUCCEEDED] == JOBS, counts
    ideal = max(sum(durations) / SLOTS, max(durations))
    original = sum(durations) + PAUSE_S * (JOBS - 1)
    return [
        Row(f"makespan, {JOBS} jobs of 0.5-3 s on {SLOTS} slots", "s", makespan, ideal,
            "ideal (work / slots)", False),
        Row(f"makespan, {JOBS} jobs of 0.5-3 s on {SLOTS} slots", "s", makespan, original,
            "original Blueno (1 at a time + 60 s)", False),
    ]
