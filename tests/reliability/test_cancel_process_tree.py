"""Case 6: cancelling a job stops its whole process tree, even parts that ignore SIGTERM or left the session."""

from __future__ import annotations

import random
import time

import psutil
import pytest
from faults import wait_for, workspace_processes
from standin_model import STANDIN_COMMAND, standin_grid

from blueno.queue import JobQueue, JobState
from blueno.scheduler import Scheduler, Slot
from blueno.workspace import Workspace


@pytest.mark.slow
def test_that_cancelling_50_times_a_trainer_with_grandchildren_that_ignore_sigterm_leaves_no_process(
    workspace: Workspace, queue: JobQueue
) -> None:
    """The trainer ignores SIGTERM (so do its two grandchildren: the disposition is inherited), one
    grandchild runs in its own session; the cancel comes at a random moment, sometimes before they exist."""
    grace, rounds, seed = 0.3, 50, 6
    began = time.time()
    rng = random.Random(seed)
    (job_id,) = queue.submit(standin_grid(1, duration=600.0, grandchildren=2, ignore_sigterm=True)).added
    scheduler = Scheduler(workspace, [Slot("cpu0", None)], trainer_command=STANDIN_COMMAND, grace=grace)
    scheduler.start()

    def spares() -> list[int]:  # waiting spare trainers hold no job: not the cancelled job's processes
        return list(scheduler.spare_pids.values())

    leftovers: list[int] = []
    seen_family: list[int] = []
    stop_times: list[float] = []
    try:
        for _ in range(rounds):
            wait_for(lambda: (j := queue.get(job_id)).state == JobState.RUNNING and j.pid, timeout=60)
            time.sleep(rng.uniform(0.0, 0.6))  # grandchildren appear ~0.1-0.3 s after the trainer starts
            seen_family.append(len(workspace_processes(workspace.root, spares)))
            queue.cancel([job_id])
            cancelled_at = time.monotonic()
            deadline = cancelled_at + grace + 1.0
            wait_for(lambda: queue.get(job_id).state == JobState.CANCELLED, timeout=30)
            while workspace_processes(workspace.root, spares) and time.monotonic() < deadline:
                time.sleep(0.02)
            stop_times.append(time.monotonic() - cancelled_at)
            left = workspace_processes(workspace.root, spares)
            leftovers.append(len(left))
            for proc in left:  # don't let one round's leak spoil the next
                proc.kill()
            queue.retry([job_id])
            scheduler.kick()
    finally:
        queue.cancel([job_id])
        scheduler.stop()
        scheduler.join(30)
    # The scheduler (this process) is a child subreaper: orphaned grandchildren it killed are reaped, not zombies.
    # (Only this test's: orphans of earlier tests' SIGKILLed `--batch` processes can be this process's zombies.)
    zombies = [p for p in psutil.Process().children()
               if p.status() == psutil.STATUS_ZOMBIE and p.create_time() >= began - 0.05]
    print(f"\nCASE 6: {rounds} cancels of a trainer with 2 grandchildren (one in its own session), all ignoring "
          f"SIGTERM, grace {grace} s (seed {seed}): {sum(leftovers)} processes left after grace + 1 s "
          f"(rounds with leftovers: {sum(1 for n in leftovers if n)}); family size at cancel "
          f"{min(seen_family)}-{max(seen_family)}; all gone after at most {max(stop_times):.2f} s; "
          f"{len(zombies)} zombies left unreaped")
    assert sum(leftovers) == 0 and zombies == []
    assert max(seen_family) == 3  # the tree really had its grandchildren in most rounds
