"""Cases 3 and 4: many processes on one database; a writer that holds the lock too long."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from standin_model import standin_grid

from blueno.metrics import MetricsRecorder
from blueno.queue import JobQueue, JobState, finish_success
from blueno.store import BUSY_TIMEOUT_S, Store
from blueno.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent.parent


def _claim_like_a_scheduler(db_path: str, ready: multiprocessing.Queue, go, results: multiprocessing.Queue) -> None:
    """Claim, record the pid, heartbeat and complete jobs until none is left; count what went wrong."""
    store = Store(db_path, migrate=False)
    queue = JobQueue(store)
    store.connection()
    ready.put(os.getpid())
    go.wait(120)  # all four start claiming together
    claimed: list[int] = []
    locked = other = 0
    while True:
        try:
            job = queue.claim(f"p{os.getpid()}", None, "host", os.getpid())
            if job is None:
                break
            claimed.append(job.id)
            queue.mark_started(job.id, job.attempt, os.getpid(), time.time())
            queue.heartbeat([job.id])
            with store.write() as conn:
                if not finish_success(conn, job.id, job.attempt):
                    raise RuntimeError(f"job {job.id} attempt {job.attempt} was not ours to finish")
        except Exception as exc:  # counted, not hidden: the test asserts there are none
            if "locked" in str(exc).lower():
                locked += 1
            else:
                other += 1
    results.put((claimed, locked, other))


@pytest.mark.slow
def test_that_four_claimer_processes_on_1000_jobs_never_claim_twice_nor_see_database_is_locked(
    queue: JobQueue, workspace: Workspace
) -> None:
    jobs, claimers = 1000, 4
    queue.submit(standin_grid(jobs))
    context = multiprocessing.get_context("spawn")
    ready: multiprocessing.Queue = context.Queue()
    results: multiprocessing.Queue = context.Queue()
    go = context.Event()
    procs = [context.Process(target=_claim_like_a_scheduler, args=(str(workspace.db_path), ready, go, results))
             for _ in range(claimers)]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=120)
    started = time.monotonic()
    go.set()
    outcomes = [results.get(timeout=300) for _ in procs]
    elapsed = time.monotonic() - started
    for proc in procs:
        proc.join(30)
    claimed = [job_id for ids, _, _ in outcomes for job_id in ids]
    duplicates = len(claimed) - len(set(claimed))
    locked = sum(n for _, n, _ in outcomes)
    other = sum(n for _, _, n in outcomes)
    per_process = sorted(len(ids) for ids, _, _ in outcomes)
    print(f"\nCASE 3: {claimers} claimer processes, {jobs} jobs: {len(claimed)} claims, {duplicates} duplicate "
          f"claims, {locked} 'database is locked' errors, {other} other errors; claims per process "
          f"{per_process}, {elapsed:.1f} s")
    assert duplicates == 0 and locked == 0 and other == 0
    assert sorted(claimed) == [job.id for job in queue.jobs()]
    assert {(job.state, job.attempt) for job in queue.jobs()} == {(JobState.SUCCEEDED, 1)}
    # They really competed (SQLite's lock is not fair: one claimer may be starved for a while, which is fine).
    assert sum(1 for n in per_process if n) >= 2


def hold_write_lock(db_path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process takes the write lock (``BEGIN IMMEDIATE``) and keeps it for ``seconds``."""
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sqlite3, time
        conn = sqlite3.connect({str(db_path)!r}, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        print("locked", flush=True)
        time.sleep({seconds})
        conn.execute("COMMIT")
    """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


@pytest.mark.slow
def test_that_operations_wait_out_a_writer_holding_the_lock_for_twice_the_busy_timeout(
    workspace: Workspace, tmp_path: Path
) -> None:
    busy_timeout = 0.5
    hold = 2 * busy_timeout
    Store(workspace.db_path).close()
    store = Store(workspace.db_path, busy_timeout=busy_timeout, migrate=False)
    queue = JobQueue(store)
    state: dict[str, int] = {}

    def submit() -> None:
        state["a"], state["b"], state["c"] = queue.submit(standin_grid(3)).added

    def claim() -> None:
        job = queue.claim("cpu0", None, "host", os.getpid())
        assert job is not None and job.id == state["a"]

    def record_metrics() -> None:
        with MetricsRecorder(store, queue.get(state["a"]).run_id) as recorder:
            for step in range(1000):
                recorder.log("loss", step, 1.0 / (step + 1))

    def complete() -> None:
        with store.write() as conn:
            assert finish_success(conn, state["a"], 1)

    def cancel() -> None:
        assert queue.cancel([state["b"]])["cancelled"] == [state["b"]]

    def retry() -> None:
        assert queue.retry([state["b"]])["queued"] == [state["b"]]

    operations: list[tuple[str, Callable[[], None]]] = [
        ("submit", submit), ("claim", claim), ("record metrics", record_metrics), ("complete", complete),
        ("cancel", cancel), ("retry", retry),
    ]
    waits: dict[str, float] = {}
    for name, operation in operations:
        holder = hold_write_lock(workspace.db_path, hold)
        started = time.monotonic()
        operation()  # any exception here is an error that would have reached the user
        waits[name] = time.monotonic() - started
        holder.wait(10)

    # The command line, with its default busy timeout, against a lock held twice as long.
    holder = hold_write_lock(workspace.db_path, 2 * BUSY_TIMEOUT_S)
    started = time.monotonic()
    cli = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "queue", "cancel", str(state["c"]), "--home", str(workspace.root)],
        capture_output=True, text=True, timeout=120,
    )
    waits["`queue cancel` (CLI)"] = time.monotonic() - started
    holder.wait(10)
    counts = queue.counts()
    store.close()
    print(f"\nCASE 4: write lock held for 2x the busy timeout ({hold:.1f} s; {2 * BUSY_TIMEOUT_S:.0f} s for the "
          f"CLI): 0 errors; each operation completed after " + ", ".join(f"{k} {v:.2f} s" for k, v in waits.items()))
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "locked" not in (cli.stdout + cli.stderr).lower()
    assert all(wait >= hold * 0.9 for wait in waits.values())  # each really waited for the holder
    assert counts[JobState.SUCCEEDED] == 1 and counts[JobState.QUEUED] == 1 and counts[JobState.CANCELLED] == 1
