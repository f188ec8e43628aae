"""Cases 1 and 2: the scheduler or a trainer SIGKILLed at a random moment loses no job and runs none twice."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from faults import alive, completions, wait_for, workspace_processes
from standin_model import STANDIN_COMMAND, standin_grid, standin_grid_text

from blueno import actions
from blueno.grid import parse_grid
from blueno.queue import JobQueue, JobState
from blueno.scheduler import Scheduler, Slot
from blueno.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent.parent


def start_batch(workspace: Workspace, grid: Path, *extra: str) -> subprocess.Popen[str]:
    """``python main.py --batch GRID`` on two CPU slots, as a user on a GPU box would start it."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "--batch", str(grid), "--home", str(workspace.root),
         "--slots", "2", "--no-sync", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def scheduler_registered(store, pid: int) -> bool:
    return store.query_one("SELECT 1 FROM schedulers WHERE pid = ? AND stopped IS NULL", (pid,)) is not None


@pytest.mark.slow
def test_that_sigkilling_the_scheduler_20_times_during_200_jobs_loses_none_and_completes_none_twice(
    batch_workspace: Workspace, tmp_path: Path, ledger: Path
) -> None:
    """180 short jobs and 20 long ones (longer than a restart: they are interrupted and resume), in random order."""
    short, long, rounds, seed = 180, 20, 20, 20261127
    jobs = short + long
    rng = random.Random(seed)
    grid = tmp_path / "grid.toml"
    grid.write_text(standin_grid_text(short, dataset="digits", duration=0.05, steps=2))
    with batch_workspace.open_store() as store:
        queue = JobQueue(store)
        # Long enough to outlast a restart even when a warm trainer started them at once.
        long_grid = parse_grid(standin_grid_text(long, name="long", dataset="digits", duration=3.0, steps=8),
                               source="<long>")
        queue.submit(long_grid, resolve=actions.dataset_resolver(store, batch_workspace))
        grid_ids = queue.submit(parse_grid(grid.read_text(), source=str(grid)),
                                resolve=actions.dataset_resolver(store, batch_workspace)).added
        order = [job.id for job in queue.jobs()]
        rng.shuffle(order)
        for rank, job_id in enumerate(order):
            queue.prioritize([job_id], jobs - rank)
        started = time.monotonic()
        for round_ in range(rounds):
            batch = start_batch(batch_workspace, grid)
            # The random moment of the kill is the scenario (not a wait for a condition): these sleeps stay.
            if round_ % 5 == 4:  # during start-up and recovery
                time.sleep(rng.uniform(0.1, 1.5))
            else:  # while jobs are claimed, launched and ending
                wait_for(lambda b=batch: scheduler_registered(store, b.pid) or b.poll() is not None, timeout=60)
                time.sleep(rng.uniform(0.0, 2.0))
            batch.send_signal(signal.SIGKILL)
            batch.communicate(timeout=30)
        before_last = queue.counts()[JobState.SUCCEEDED]
        batch = start_batch(batch_workspace, grid)
        out, _ = batch.communicate(timeout=300)
        counts = queue.counts()
        attempts = sum(job.attempt for job in queue.jobs())
        failures = sum(job.failures for job in queue.jobs())
    done = completions(ledger)
    twice = sum(1 for n in done.values() if n > 1)
    lost = jobs - counts[JobState.SUCCEEDED]
    print(f"\nCASE 1: {rounds} SIGKILLs of --batch at random moments (seed {seed}), {jobs} jobs: {lost} lost, "
          f"{twice} completed twice, {counts[JobState.SUCCEEDED]}/{jobs} succeeded ({before_last} before the "
          f"last restart), {attempts - jobs} attempts interrupted and resumed, {failures} counted as failures "
          f"({time.monotonic() - started:.0f} s)")
    assert batch.returncode == 0, out
    assert f"{len(grid_ids)} already done or queued" in out  # re-running the command resumed the sweep
    assert lost == 0 and counts[JobState.SUCCEEDED] == jobs
    assert twice == 0 and len(done) == jobs
    assert failures == 0  # an interrupted attempt is not the job's fault
    assert attempts > jobs  # the kills really interrupted running work


@pytest.mark.slow
@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_that_a_trainer_started_by_a_scheduler_killed_before_it_recorded_the_pid_does_nothing(
    batch_workspace: Workspace, tmp_path: Path, ledger: Path, warm: bool
) -> None:
    """The window case 1 found (CI: a job completed twice): the scheduler started a trainer (or handed a
    spare its job) and was SIGKILLed before it recorded the trainer's pid, so recovery could not stop
    it and the job ran again beside it.  Holding the database's write lock keeps the scheduler inside
    that window for as long as the test needs."""
    grid = tmp_path / "grid.toml"
    # Two jobs: in batch mode spares start only while a job is left to run, and the first waits for one.
    grid.write_text(standin_grid_text(2, dataset="digits", duration=0.2, steps=2))
    root = batch_workspace.root
    lock = sqlite3.connect(batch_workspace.db_path, timeout=30, isolation_level=None)
    try:
        with batch_workspace.open_store() as store:
            queue = JobQueue(store)
            # One slot: with two, the lock taken after the first claim would hold the scheduler in the second.
            batch = start_batch(batch_workspace, grid, "--slots", "1", *([] if warm else ["--no-warm"]))
            # Claimed: take the write lock at once, so the trainer's pid cannot be recorded.  The scheduler's
            # next write is that record (its first heartbeat comes 2 s after it started; the launch followed
            # the claim by 0.02 s cold and 0.14 s warm with both cores of the VM kept busy by other processes).
            wait_for(lambda: lock.execute("SELECT count(*) FROM jobs WHERE state = 'running'").fetchone() == (1,),
                     timeout=60, interval=0.001)
            lock.execute("BEGIN IMMEDIATE")
            (first, run_id, pid) = lock.execute(
                "SELECT jobs.id, runs.id, pid FROM jobs JOIN runs ON runs.job_id = jobs.id WHERE state = 'running'"
            ).fetchone()
            assert pid is None
            log = batch_workspace.run_log(run_id)
            started = "=== warm start: spare trainer " if warm else " on cpu0 ==="
            text = wait_for(lambda: (t := log.read_text() if log.exists() else "") and started in t and t, timeout=60)
            if warm:
                trainer = int(text.split(started)[1].split(",")[0])
            else:
                trainer = wait_for(lambda: [p.pid for p in psutil.Process(batch.pid).children()], timeout=10)[0]
            batch.send_signal(signal.SIGKILL)  # the scheduler dies in mark_started, waiting for the lock
            batch.communicate(timeout=30)
            lock.execute("ROLLBACK")
            wait_for(lambda: not workspace_processes(root), timeout=10)  # the trainer did not outlive it...
            assert completions(ledger) == {}  # ...and did nothing
            assert "the scheduler stopped before it recorded this trainer" in log.read_text()

            again = start_batch(batch_workspace, grid)
            out, _ = again.communicate(timeout=120)
            jobs = queue.jobs()
    finally:
        lock.close()
    print(f"\nCASE 1 (the launch window, {'warm' if warm else 'cold'}): trainer {trainer} started, its scheduler "
          f"SIGKILLed before recording it: it exited at its gate; the job then ran once")
    assert again.returncode == 0, out
    assert [(j.state, j.failures) for j in jobs] == [(JobState.SUCCEEDED, 0)] * 2
    assert next(j.attempt for j in jobs if j.id == first) == 2
    assert completions(ledger) == {j.id: 1 for j in jobs}


@pytest.mark.slow
def test_that_trainers_outlive_a_sigkilled_scheduler_until_the_next_one_stops_them(
    batch_workspace: Workspace, tmp_path: Path, ledger: Path
) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text(standin_grid_text(2, dataset="digits", duration=60.0, steps=60))
    with batch_workspace.open_store() as store:
        queue = JobQueue(store)
        first = start_batch(batch_workspace, grid)
        running = wait_for(lambda: len(jobs := [j for j in queue.jobs(JobState.RUNNING) if j.pid]) == 2 and jobs)
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
        time.sleep(1.0)  # the scenario: a second with no scheduler, which they must survive (nothing to wait on)
        outlived = [job for job in running if alive(job.pid, job.pid_started)]
        assert len(outlived) == 2, "trainers of a SIGKILLed scheduler keep running (their own sessions)"
        assert all(job.state == JobState.RUNNING for job in queue.jobs())

        second = start_batch(batch_workspace, grid)
        restarted = time.monotonic()
        stopped_after = []
        for job in outlived:  # recovery stops them one after the other
            wait_for(lambda j=job: not alive(j.pid, j.pid_started), timeout=60, interval=0.01)
            stopped_after.append(time.monotonic() - restarted)
        wait_for(lambda: all(j.attempt == 2 and j.state == JobState.RUNNING and j.pid for j in queue.jobs()))
        second.send_signal(signal.SIGINT)  # a clean stop: checkpoint and requeue
        out, _ = second.communicate(timeout=60)
        jobs = queue.jobs()
    print(f"\nCASE 1 (orphans): {len(outlived)} trainers outlived a SIGKILLed scheduler for as long as no scheduler "
          f"ran; the next one stopped them " + ", ".join(f"{t:.1f} s" for t in stopped_after) + " after it was started")
    assert second.returncode == 130, out
    assert [(j.state, j.failures) for j in jobs] == [(JobState.QUEUED, 0)] * 2
    assert completions(ledger) == {}


@pytest.mark.slow
def test_that_a_sigkilled_trainer_is_requeued_within_two_heartbeats_and_resumes_from_its_checkpoint(
    workspace: Workspace, queue: JobQueue, ledger: Path
) -> None:
    heartbeat, kills, seed = 0.5, 10, 2
    rng = random.Random(seed)
    ids = queue.submit(standin_grid(kills, duration=2.0, steps=10)).added
    (capped,) = queue.submit(standin_grid(1, name="capped", duration=60.0, steps=60)).added
    scheduler = Scheduler(workspace, [Slot("cpu0", None), Slot("cpu1", None)], trainer_command=STANDIN_COMMAND,
                          heartbeat=heartbeat)
    scheduler.start()
    delays: list[float] = []

    def kill_once_checkpointed(job_id: int) -> float:
        job = wait_for(lambda: (j := queue.get(job_id)).state == JobState.RUNNING and j.pid and j, timeout=60)
        checkpoint = workspace.run_dir(job.run_id) / "standin.json"
        wait_for(lambda: checkpoint.exists(), timeout=10)
        time.sleep(rng.uniform(0.0, 0.8))  # the scenario: a random moment after the checkpoint
        os.kill(job.pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: (j := queue.get(job_id)).attempt > job.attempt or j.state != JobState.RUNNING,
                 interval=0.005)
        return time.monotonic() - killed

    try:
        for job_id in ids:
            delays.append(kill_once_checkpointed(job_id))
        for _ in range(3):  # max_failures: the third crash fails the job for good
            kill_once_checkpointed(capped)
        wait_for(lambda: all(queue.get(i).state == JobState.SUCCEEDED for i in ids), timeout=120)
    finally:
        scheduler.stop()
        scheduler.join(30)
    finals = [row["final"] for row in queue.store.query("SELECT job_id, final FROM runs") if row["job_id"] in ids]
    resumed = sum(1 for final in finals if '"resumed_from":0' not in final)
    failed = queue.get(capped)
    print(f"\nCASE 2: {kills} trainers SIGKILLed: requeued in at most {max(delays):.2f} s (limit "
          f"{2 * heartbeat:.2f} s = 2 heartbeats), {resumed}/{kills} resumed from their checkpoint; a job killed "
          f"3 times ended {failed.state} ({failed.error})")
    assert max(delays) < 2 * heartbeat
    assert resumed == kills
    assert sorted(completions(ledger)) == sorted(ids) and set(completions(ledger).values()) == {1}
    assert [j.failures for j in queue.jobs(ids=ids)] == [1] * kills
    assert failed.state == JobState.FAILED and failed.failures == 3 and "signal 9" in failed.error
