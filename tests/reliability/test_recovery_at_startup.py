"""Case 5: rows left ``running`` by a scheduler that died, whose pids are dead or belong to someone else now."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest
from standin_model import STANDIN_COMMAND, standin_grid

from blueno.queue import JobQueue, JobState
from blueno.scheduler import Recovered, Scheduler, SchedulerEvent, Slot
from blueno.store import Store
from blueno.workspace import Workspace


def dead_pids(count: int) -> list[int]:
    """Pids of processes that really ran and exited (reaped): what a crash leaves in the table."""
    pids = []
    for _ in range(count):
        proc = subprocess.Popen(["true"])
        proc.wait()
        pids.append(proc.pid)
    return pids


@pytest.mark.slow
def test_that_1000_rows_left_running_are_recovered_in_under_2_s_without_adopting_or_killing_a_reused_pid(
    workspace: Workspace, queue: JobQueue, store: Store
) -> None:
    rows = 1000
    ids = queue.submit(standin_grid(rows)).added
    # Unrelated live processes that now hold pids the table names (pid reuse): same pid, another start time.
    bystanders = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]) for _ in range(10)]
    dead = dead_pids(20)
    try:
        with store.write() as conn:
            for i, job_id in enumerate(ids):
                if i % 2:
                    pid, started = bystanders[i % len(bystanders)].pid, psutil.Process(
                        bystanders[i % len(bystanders)].pid).create_time() - 3600.0
                else:
                    pid, started = dead[i % len(dead)], time.time() - 3600.0
                conn.execute(
                    "UPDATE jobs SET state = 'running', attempt = 1, slot = 'gpu0', scheduler_pid = 999999, "
                    "pid = ?, pid_started = ?, heartbeat = ?, claimed = ? WHERE id = ?",
                    (pid, started, started, started, job_id),
                )
        events: list[tuple[float, SchedulerEvent]] = []
        scheduler = Scheduler(workspace, [Slot("cpu0", None)], trainer_command=STANDIN_COMMAND)

        def on_event(event: SchedulerEvent) -> None:
            events.append((time.monotonic(), event))
            if isinstance(event, Recovered):
                scheduler.stop()  # start nothing: this case is about start-up

        scheduler.on_event = on_event
        started = time.monotonic()
        scheduler.run()
        recovered_at, report = next((t, e.report) for t, e in events if isinstance(e, Recovered))
        elapsed = recovered_at - started
        bystanders_alive = sum(1 for proc in bystanders if proc.poll() is None)
    finally:
        for proc in bystanders:
            proc.kill()
            proc.wait()
    jobs = queue.jobs()
    print(f"\nCASE 5: {rows} rows left running ({rows // 2} with dead pids, {rows // 2} with live pids of "
          f"{len(bystanders)} unrelated processes): recovered in {elapsed:.2f} s at scheduler start-up, "
          f"{len(report.requeued)} requeued, {len(report.killed)} adopted or killed, "
          f"{len(bystanders) - bystanders_alive} unrelated processes harmed")
    assert elapsed < 2.0
    assert report.killed == [] and bystanders_alive == len(bystanders)
    assert sorted(report.requeued) == sorted(ids)
    assert {(job.state, job.failures, job.pid) for job in jobs} == {(JobState.QUEUED, 0, None)}
