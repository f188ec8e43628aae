"""The job queue: enqueue with resume, atomic claims, guarded completion, recovery."""

from __future__ import annotations

import multiprocessing
import os

from standin_model import standin_grid

from blueno.queue import JobQueue, JobState, finish_success
from blueno.store import Store


def test_that_submitting_a_grid_queues_one_job_and_one_run_per_configuration(queue: JobQueue) -> None:
    result = queue.submit(standin_grid(5))
    assert len(result.added) == 5 and result.skipped == 0
    jobs = queue.jobs()
    assert [job.state for job in jobs] == [JobState.QUEUED] * 5
    assert len({job.run_id for job in jobs}) == 5
    assert len({job.config_hash for job in jobs}) == 5


def test_that_resubmitting_skips_what_is_queued_or_done_and_requeues_what_failed(queue: JobQueue, store: Store) -> None:
    first = queue.submit(standin_grid(4))
    done, failed, *_ = first.added
    job = queue.claim("cpu0", None, "host", os.getpid())
    assert job is not None and job.id == done
    with store.write() as conn:
        assert finish_success(conn, done, job.attempt)
    queue.claim("cpu0", None, "host", os.getpid())
    queue.on_exit(failed, 1, 2)  # a permanent failure

    again = queue.submit(standin_grid(4))
    assert again.added == [] and again.requeued == [failed] and again.skipped == 3
    assert queue.get(failed).state == JobState.QUEUED
    assert queue.get(done).state == JobState.SUCCEEDED
    assert len(queue.jobs()) == 4


def test_that_claims_take_higher_priority_first_then_submission_order(queue: JobQueue) -> None:
    ids = queue.submit(standin_grid(3)).added
    queue.prioritize([ids[2]], 5)
    order = [queue.claim(f"cpu{i}", None, "h", 1).id for i in range(3)]
    assert order == [ids[2], ids[0], ids[1]]
    assert queue.claim("cpu9", None, "h", 1) is None


def test_that_a_late_write_from_an_abandoned_attempt_is_ignored(queue: JobQueue, store: Store) -> None:
    (job_id,) = queue.submit(standin_grid(1)).added
    first = queue.claim("cpu0", None, "h", 1)
    queue.on_exit(job_id, first.attempt, 0, interrupted=True)  # requeued
    second = queue.claim("cpu0", None, "h", 1)
    assert second.attempt == first.attempt + 1
    with store.write() as conn:
        assert not finish_success(conn, job_id, first.attempt)
    assert queue.get(job_id).state == JobState.RUNNING


def test_that_crashes_are_retried_up_to_the_cap_and_interruptions_do_not_count(queue: JobQueue) -> None:
    (job_id,) = queue.submit(standin_grid(1)).added  # max_failures defaults to 3
    for _ in range(5):
        job = queue.claim("cpu0", None, "h", 1)
        assert queue.on_exit(job_id, job.attempt, -9, interrupted=True) == JobState.QUEUED
    states = []
    for _ in range(3):
        job = queue.claim("cpu0", None, "h", 1)
        states.append(queue.on_exit(job_id, job.attempt, 1, detail="Traceback: boom"))
    assert states == [JobState.QUEUED, JobState.QUEUED, JobState.FAILED]
    final = queue.get(job_id)
    assert final.failures == 3 and final.attempt == 8
    assert "exited with status 1: Traceback: boom" in final.error


def test_that_cancel_ends_waiting_jobs_at_once_and_flags_running_ones(queue: JobQueue) -> None:
    running, waiting, held = queue.submit(standin_grid(3)).added
    queue.claim("cpu0", None, "h", 1)
    queue.hold([held])
    result = queue.cancel([running, waiting, held])
    assert result["cancelled"] == [waiting, held] and result["stopping"] == [running]
    assert queue.cancel_requested([running]) == [running]
    job = queue.get(running)
    assert queue.on_exit(running, job.attempt, 143) == JobState.CANCELLED
    assert queue.retry([running, waiting])["queued"] == [running, waiting]


def test_that_hold_and_release_keep_a_job_from_being_claimed(queue: JobQueue) -> None:
    (job_id,) = queue.submit(standin_grid(1)).added
    queue.hold([job_id])
    assert queue.claim("cpu0", None, "h", 1) is None
    queue.release([job_id])
    assert queue.claim("cpu0", None, "h", 1).id == job_id


def test_that_recovery_requeues_dead_jobs_and_never_adopts_a_reused_pid(queue: JobQueue, store: Store) -> None:
    """1,000 rows left running: half with dead pids, half with live pids of unrelated processes."""
    queue.submit(standin_grid(1000))
    unrelated = os.getpid()  # alive, but not the trainer that was recorded (other start time)
    with store.write() as conn:
        conn.execute("UPDATE jobs SET state = 'running', attempt = 1, pid = CASE WHEN id % 2 = 0 THEN ? ELSE ? END, "
                     "pid_started = 12345.0", (unrelated, 2**22 + 17))
    from blueno.scheduler import process_alive

    stopped: list[int] = []
    import time
    started = time.monotonic()
    report = queue.recover(process_alive, stopped.extend)
    elapsed = time.monotonic() - started
    print(f"recovered 1000 jobs in {elapsed:.3f} s")
    assert stopped == []  # no unrelated process was touched
    assert len(report.requeued) == 1000
    assert queue.counts()[JobState.QUEUED] == 1000  # the time is printed, not asserted (docs/benchmarks.md)


def _claim_all(db_path: str, results: multiprocessing.Queue) -> None:
    store = Store(db_path, migrate=False)
    queue = JobQueue(store)
    claimed, errors = [], 0
    while True:
        try:
            job = queue.claim(f"p{os.getpid()}", None, "h", os.getpid())
        except Exception:
            errors += 1
            continue
        if job is None:
            break
        claimed.append(job.id)
    results.put((claimed, errors))


def test_that_four_claimer_processes_never_claim_a_job_twice(queue: JobQueue, workspace) -> None:
    queue.submit(standin_grid(1000))
    results: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_claim_all, args=(str(workspace.db_path), results)) for _ in range(4)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
    claimed = [job_id for ids, _ in outcomes for job_id in ids]
    errors = sum(e for _, e in outcomes)
    print(f"4 claimers: {len(claimed)} claims, {len(claimed) - len(set(claimed))} duplicates, {errors} errors")
    assert errors == 0
    assert len(claimed) == len(set(claimed)) == 1000


