"""The scheduler with real trainer subprocesses (the stand-in), real signals, real process groups."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from standin_model import STANDIN_COMMAND, standin_grid
from waiting import wait_until

import blueno
from blueno import BluenoError
from blueno.queue import JobQueue, JobState
from blueno.scheduler import JobLaunched, Scheduler, Slot, active_scheduler, detect_slots
from blueno.workspace import Workspace

TWO_SLOTS = [Slot("cpu0", None), Slot("cpu1", None)]


def make_scheduler(workspace: Workspace, slots=TWO_SLOTS, **kwargs) -> Scheduler:
    return Scheduler(workspace, slots, trainer_command=STANDIN_COMMAND, **kwargs)


def read_ledger(path) -> list[tuple[int, int, float, float]]:
    if not path.exists():
        return []
    rows = [line.split(",") for line in path.read_text().splitlines() if line]
    return [(int(j), int(a), float(s), float(e)) for j, a, s, e in rows]


wait_for = wait_until  # the shared polling helper (tests/waiting.py)


def test_that_a_grid_runs_to_the_end_one_job_per_slot(workspace, queue: JobQueue, ledger) -> None:
    queue.submit(standin_grid(6, duration=0.3))
    make_scheduler(workspace).run(until_empty=True)
    assert queue.counts()[JobState.SUCCEEDED] == 6
    runs = read_ledger(ledger)
    assert sorted(job for job, *_ in runs) == [job.id for job in queue.jobs()]
    # never more than two at once
    events = sorted([(s, 1) for *_, s, _ in runs] + [(e, -1) for *_, e in runs])
    level = peak = 0
    for _, delta in events:
        level += delta
        peak = max(peak, level)
    assert peak <= 2


def test_that_slots_come_from_gpus_slots_or_the_environment(monkeypatch) -> None:
    assert detect_slots(gpus="0,2") == [Slot("gpu0", "0"), Slot("gpu2", "2")]
    assert detect_slots(slots=3) == [Slot("cpu0", None), Slot("cpu1", None), Slot("cpu2", None)]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    assert detect_slots() == [Slot("gpu1", "1"), Slot("gpu3", "3")]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert detect_slots() == [Slot("cpu0", None)]
    with pytest.raises(BluenoError, match="either --gpus"):
        detect_slots(gpus="0", slots=2)


@pytest.mark.parametrize("warm", [False, True])
def test_that_each_trainer_sees_only_its_slots_gpu(workspace, queue: JobQueue, tmp_path, monkeypatch, warm) -> None:
    """Cold trainers get their slot's environment at start; warm ones (forked by the zygote, which was
    started with the first slot's) set it before their job."""
    seen = tmp_path / "seen"
    monkeypatch.setenv("BLUENO_STANDIN_SEEN", str(seen))
    queue.submit(standin_grid(8, duration=0.3))
    launched: list[JobLaunched] = []
    Scheduler(workspace, [Slot("gpu0", "0"), Slot("gpu3", "3")], trainer_command=STANDIN_COMMAND,
              warm=warm, on_event=lambda e: launched.append(e) if isinstance(e, JobLaunched) else None,
              ).run(until_empty=True)
    assert sorted(set(seen.read_text().split())) == ["gpu0=0", "gpu3=3"]
    warm_slots = {e.slot for e in launched if e.warm}
    assert warm_slots == ({"gpu0", "gpu3"} if warm else set())  # both slots' spares took jobs
    assert queue.counts()[JobState.SUCCEEDED] == 8


def test_that_only_one_scheduler_runs_per_workspace(workspace) -> None:
    first = make_scheduler(workspace, mode="gui")
    first.start()
    try:
        wait_for(lambda: active_scheduler(workspace) and active_scheduler(workspace).pid == os.getpid())
        with pytest.raises(BluenoError, match="gui scheduler, pid .* already runs"):
            make_scheduler(workspace).run(until_empty=True)
    finally:
        first.stop()
        first.join(10)
    assert active_scheduler(workspace) is None


def test_that_a_killed_trainer_is_requeued_and_resumes_from_its_checkpoint(workspace, queue, ledger) -> None:
    (job_id,) = queue.submit(standin_grid(1, duration=4.0, steps=8)).added
    scheduler = make_scheduler(workspace, heartbeat=0.5)
    scheduler.start()
    try:
        # killed after its first checkpoint was reported (the scheduler recorded epoch 1), before the end
        job = wait_for(lambda: (j := queue.get(job_id)).pid and 1 <= j.epoch < 8 and j, interval=0.01)
        os.kill(job.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: queue.get(job_id).attempt == 2)
        print(f"requeued and relaunched {time.monotonic() - killed_at:.2f} s after SIGKILL")
        assert time.monotonic() - killed_at < 2 * 0.5 + 0.5
        wait_for(lambda: queue.get(job_id).state == JobState.SUCCEEDED, timeout=30)
    finally:
        scheduler.stop()
        scheduler.join(20)
    job = queue.get(job_id)
    assert job.failures == 1 and job.attempt == 2
    assert [(j, a) for j, a, *_ in read_ledger(ledger)] == [(job_id, 2)]
    final = queue.store.query_one("SELECT final FROM runs WHERE job_id = ?", (job_id,))["final"]
    assert '"resumed_from":0' not in final  # it continued from a checkpoint


def test_that_cancel_leaves_no_process_behind_even_one_ignoring_sigterm(workspace, queue) -> None:
    grace = 0.5
    rounds = 5
    (job_id,) = queue.submit(standin_grid(1, duration=600.0, grandchildren=2, ignore_sigterm=True)).added
    scheduler = make_scheduler(workspace, slots=[Slot("cpu0", None)], grace=grace)
    scheduler.start()
    leftovers = 0
    try:
        for _ in range(rounds):
            job = wait_for(lambda: (j := queue.get(job_id)).state == JobState.RUNNING and j.pid and j)
            trainer = psutil.Process(job.pid)
            family = wait_for(lambda t=trainer: len(kids := t.children(recursive=True)) >= 2 and kids)
            family.append(trainer)
            queue.cancel([job_id])
            cancelled_at = time.monotonic()
            wait_for(lambda: queue.get(job_id).state == JobState.CANCELLED)
            gone, alive = psutil.wait_procs(family, timeout=max(0.0, grace + 1 - (time.monotonic() - cancelled_at)))
            leftovers += len(alive)
            queue.retry([job_id])
            scheduler.kick()
    finally:
        queue.cancel([job_id])
        scheduler.stop()
        scheduler.join(20)
    print(f"cancel x{rounds}: {leftovers} processes left after grace + 1 s")
    assert leftovers == 0


def test_that_stopping_the_scheduler_requeues_running_jobs_to_resume(workspace, queue) -> None:
    ids = queue.submit(standin_grid(2, duration=30.0, steps=30)).added
    scheduler = make_scheduler(workspace)
    thread = threading.Thread(target=scheduler.run)
    thread.start()
    wait_for(lambda: queue.counts()[JobState.RUNNING] == 2 and all(j.pid for j in queue.jobs()))
    scheduler.stop()
    thread.join(30)
    jobs = queue.jobs(ids=ids)
    assert [job.state for job in jobs] == [JobState.QUEUED, JobState.QUEUED]
    assert [job.failures for job in jobs] == [0, 0]


def test_that_settings_choose_the_slots_unless_the_command_line_does(workspace, monkeypatch) -> None:
    from blueno.scheduler import configured_slots

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    workspace.save_settings({"scheduler": {"slots": 3}})
    assert [s.name for s in configured_slots(workspace)] == ["cpu0", "cpu1", "cpu2"]
    assert [s.name for s in configured_slots(workspace, slots=1)] == ["cpu0"]
    workspace.save_settings({"scheduler": {"gpus": "1,2"}})
    assert [s.name for s in configured_slots(workspace)] == ["gpu1", "gpu2"]


def test_that_starting_and_stopping_a_scheduler_leaks_no_file_descriptor(workspace) -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    def cycle() -> None:
        scheduler = make_scheduler(workspace)
        scheduler.start()
        wait_for(lambda: scheduler.state == "running", interval=0.01)
        scheduler.stop()
        scheduler.join(10)
        assert scheduler.state == "stopped"

    cycle()  # the first start opens what stays open for good (imports, caches)
    before = open_fds()
    for _ in range(5):  # as the GUI's Start and Stop buttons do
        cycle()
    assert open_fds() == before


def test_that_trainers_get_their_job_spec_events_file_gpu_order_and_the_inherited_pythonpath(
    workspace, queue: JobQueue, monkeypatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), "/inherited"])))
    (job_id,) = queue.submit(standin_grid(1)).added
    dump = workspace.root / "env.json"
    probe = ("import json, os; from blueno import client; "
             f"json.dump(dict(os.environ), open({str(dump)!r}, 'w')); client.result()")
    Scheduler(workspace, [Slot("cpu0", None)], trainer_command=[sys.executable, "-c", probe]).run(until_empty=True)

    env = json.loads(dump.read_text())
    job = queue.get(job_id)
    assert job.state == JobState.SUCCEEDED
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID" and env["CUDA_VISIBLE_DEVICES"] == ""
    assert env["BLUENO_JOB"].endswith(f"run-{job.run_id}.attempt-1.job.json")
    assert env["BLUENO_EVENTS"].endswith(f"run-{job.run_id}.attempt-1.events.jsonl")
    parts = env["PYTHONPATH"].split(os.pathsep)
    assert parts[0] == str(Path(blueno.__file__).resolve().parent.parent) and parts[-1] == "/inherited"


def test_that_the_client_imports_nothing_but_the_standard_library() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys; from blueno import client; client.log_metrics({'a': 1}, step=1); "
         "print(sorted(m for m in ('numpy', 'sqlite3', 'tensorflow', 'psutil') if m in sys.modules))"],
        capture_output=True, text=True, env={**os.environ, "BLUENO_EVENTS": ""}, check=True,
    )
    assert loaded.stdout.strip() == "[]"
