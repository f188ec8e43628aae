"""The wake-up FIFO: a job queued by another process starts at once; a bad endpoint never hurts a submit."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from standin_model import STANDIN_COMMAND, standin_grid
from waiting import wait_until

from blueno import scheduler as scheduler_module
from blueno.queue import JobQueue, JobState
from blueno.scheduler import Scheduler, Slot
from blueno.wakeup import WakeEndpoint, poke, wake_path
from blueno.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
SUBMIT = """
import sys
sys.path[:0] = [{root!r}, {tests!r}]
from standin_model import standin_grid
from blueno.queue import JobQueue
from blueno.workspace import Workspace
from pathlib import Path
with Workspace(Path({home!r})).open_store() as store:
    print(JobQueue(store).submit(standin_grid(1, name="from-another-process")).added[0])
"""


def wait_for(predicate, timeout: float = 20.0):
    return wait_until(predicate, timeout=timeout, interval=0.01)  # the shared polling helper (tests/waiting.py)


def test_that_a_job_queued_by_another_process_is_started_by_the_poke(workspace: Workspace, queue, ledger,
                                                                     monkeypatch) -> None:
    # With the data_version fallback an hour away, only the wake-up can start the job within the wait.
    monkeypatch.setattr(scheduler_module, "WOKEN_TICK_S", 3600.0)
    scheduler = Scheduler(workspace, [Slot("cpu0", None)], trainer_command=STANDIN_COMMAND)
    scheduler.start()
    try:
        wait_for(lambda: wake_path(workspace.root).exists() and scheduler.state == "running")
        time.sleep(0.3)  # the loop is now asleep in select() on its one-hour tick
        script = SUBMIT.format(root=str(ROOT), tests=str(ROOT / "tests"), home=str(workspace.root))
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, done.stderr
        job_id = int(done.stdout)
        wait_for(lambda: queue.get(job_id).state == JobState.SUCCEEDED)
    finally:
        scheduler.stop()
        scheduler.join(30)
    assert scheduler.error is None
    assert not wake_path(workspace.root).exists()  # removed when the scheduler stops: later pokes fail fast


def test_that_a_missing_or_stale_endpoint_never_blocks_or_fails_a_submit(workspace: Workspace,
                                                                        queue: JobQueue) -> None:
    path = wake_path(workspace.root)
    assert not path.exists()
    assert poke(workspace.root) is False  # no scheduler ever ran here
    assert queue.submit(standin_grid(1, name="none")).added

    os.mkfifo(path)  # a scheduler that died: the FIFO is left, nobody reads it
    started = time.monotonic()
    assert poke(workspace.root) is False
    assert queue.submit(standin_grid(1, name="stale", steps=2)).added
    assert time.monotonic() - started < 5.0  # returned, did not wait for a reader

    path.unlink()
    path.write_text("not a fifo")  # someone else's file by that name is left as it was
    assert poke(workspace.root) is False
    assert queue.submit(standin_grid(1, name="file", steps=3)).added
    assert path.read_text() == "not a fifo"
    assert queue.counts()[JobState.QUEUED] == 3


def test_that_a_full_fifo_means_a_wake_up_is_pending_and_does_not_block(workspace: Workspace) -> None:
    endpoint = WakeEndpoint(workspace.root)
    assert endpoint.open() is not None
    try:
        written = 0
        while poke(workspace.root):  # nobody drains it: the pipe fills, then pokes return False at once
            written += 1
            assert written < 10_000_000
        assert written > 0
        endpoint.drain()
        assert poke(workspace.root) is True
    finally:
        endpoint.close()
    assert poke(workspace.root) is False


def test_that_the_scheduler_falls_back_to_polling_where_there_is_no_fifo(workspace: Workspace, queue,
                                                                        ledger) -> None:
    wake_path(workspace.root).mkdir()  # the name is taken by something a FIFO cannot replace
    scheduler = Scheduler(workspace, [Slot("cpu0", None)], trainer_command=STANDIN_COMMAND)
    scheduler.start()
    try:
        wait_for(lambda: scheduler.state == "running")
        with workspace.open_store() as other:  # another connection: seen through PRAGMA data_version
            (job_id,) = JobQueue(other).submit(standin_grid(1, name="polled")).added
        wait_for(lambda: queue.get(job_id).state == JobState.SUCCEEDED)
    finally:
        scheduler.stop()
        scheduler.join(30)
    assert scheduler.error is None
    assert wake_path(workspace.root).is_dir()


@pytest.fixture(autouse=True)
def _fast_standins(monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
