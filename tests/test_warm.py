"""Warm trainers: a spare trainer process per slot, past its imports, takes the slot's next job.

Real scheduler, real subprocesses (the stand-in's ``--spare`` mode, and the
real Keras trainer for the bit-identical case), real signals.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

import psutil
import pytest
from standin_model import STANDIN_COMMAND, standin_grid
from waiting import wait_until as wait_for

from blueno import BluenoError, datasets, metrics
from blueno.queue import JobQueue, JobState
from blueno.scheduler import JobLaunched, Scheduler, Slot
from blueno.spare import SPARE_FLAG, ZYGOTE_SLOT
from blueno.workspace import Workspace

ONE_SLOT = [Slot("cpu0", None)]
TWO_SLOTS = [Slot("cpu0", None), Slot("cpu1", None)]


class Running:
    """A warm scheduler in a thread, recording how each job was launched."""

    def __init__(self, workspace: Workspace, slots=ONE_SLOT, **kwargs) -> None:
        self.launched: list[JobLaunched] = []
        kwargs.setdefault("trainer_command", STANDIN_COMMAND)
        self.scheduler = Scheduler(workspace, slots, mode="gui", warm=True, grace=1.0,
                                   on_event=self._record, **kwargs)
        self.thread = threading.Thread(target=self.scheduler.run)

    def _record(self, event: object) -> None:
        if isinstance(event, JobLaunched):
            self.launched.append(event)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.scheduler.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()

    def ready_spare(self, slot: str = "cpu0", timeout: float = 60.0) -> int:
        """The pid of the slot's spare once it says it is ready (its log, if the slot gave up on spares)."""
        state = wait_for(lambda: (s := self.scheduler.spares.get(slot)) not in (None, "starting") and s,
                         timeout=timeout)
        log = self.scheduler.workspace.logs_dir / f"spare-{slot}.log"
        assert state == "ready", f"{state}\n{log.read_text()[-3000:] if log.exists() else ''}"
        return self.scheduler.spare_pids[slot]

    def launch_of(self, job_id: int) -> JobLaunched:
        return wait_for(lambda: next((e for e in self.launched if e.job_id == job_id), None))


def spares_of_this_process() -> list[psutil.Process]:
    """Every spare trainer still running below this test process."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if SPARE_FLAG in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.Error:
            pass
    return found


def test_that_a_ready_spare_becomes_the_trainer_of_the_next_job(workspace, queue: JobQueue, ledger) -> None:
    with Running(workspace) as running:
        spare = running.ready_spare()
        (job_id,) = queue.submit(standin_grid(1, duration=1.0)).added
        running.scheduler.kick()
        trainer = wait_for(lambda: queue.get(job_id).pid)
        assert trainer == spare  # the spare process itself runs the job
        wait_for(lambda: queue.get(job_id).state == JobState.SUCCEEDED)
        assert running.launch_of(job_id).warm
        replacement = running.ready_spare()
        assert replacement != spare  # one job per process: the next job gets a fresh spare
    log = (workspace.run_log(queue.get(job_id).run_id)).read_text()
    assert f"warm start: spare trainer {spare}" in log
    assert spares_of_this_process() == []


def test_that_a_spare_stays_for_the_next_job_when_its_slots_job_is_cancelled(workspace, queue, ledger) -> None:
    with Running(workspace) as running:
        (long_job,) = queue.submit(standin_grid(1, name="long", duration=600.0)).added
        running.scheduler.kick()
        wait_for(lambda: queue.get(long_job).state == JobState.RUNNING and queue.get(long_job).pid)
        spare = running.ready_spare()
        queue.cancel([long_job])
        wait_for(lambda: queue.get(long_job).state == JobState.CANCELLED)
        assert running.scheduler.spare_pids["cpu0"] == spare and psutil.Process(spare).is_running()
        (next_job,) = queue.submit(standin_grid(1, name="next", duration=1.0)).added
        running.scheduler.kick()
        assert wait_for(lambda: queue.get(next_job).pid) == spare
        wait_for(lambda: queue.get(next_job).state == JobState.SUCCEEDED)
        assert running.launch_of(next_job).warm


def test_that_a_spare_killed_before_its_job_is_replaced_from_the_zygote_and_loses_nothing(
    workspace, queue, ledger
) -> None:
    with Running(workspace) as running:
        first = running.ready_spare()
        zygote = running.scheduler.spare_pids[ZYGOTE_SLOT]
        running.scheduler.pause()  # no job, no replacement yet: the next job finds no spare
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: "cpu0" not in running.scheduler.spares)
        (job_id,) = queue.submit(standin_grid(1, duration=1.0)).added
        running.scheduler.resume()
        pid = wait_for(lambda: queue.get(job_id).pid)
        assert pid not in (first, zygote)
        wait_for(lambda: queue.get(job_id).state == JobState.SUCCEEDED)
        # The job waited for the spare the zygote forked at once (milliseconds), not for a cold start.
        assert running.launch_of(job_id).warm and queue.get(job_id).failures == 0
        assert psutil.Process(zygote).is_running()
        replacement = running.ready_spare()  # forked for the next job
        assert replacement not in (first, pid, zygote)
    assert not psutil.pid_exists(first)  # reaped, not left a zombie
    assert not psutil.pid_exists(zygote)


def test_that_a_job_crashing_in_a_warm_trainer_is_that_jobs_failure_only(workspace, queue, ledger) -> None:
    with Running(workspace, slots=TWO_SLOTS) as running:
        running.ready_spare("cpu0")
        running.ready_spare("cpu1")
        (crashing,) = queue.submit(standin_grid(1, name="crash", duration=0.1, exit_code=1)).added
        (healthy,) = queue.submit(standin_grid(1, name="healthy", duration=2.0)).added
        running.scheduler.kick()
        wait_for(lambda: queue.get(healthy).state == JobState.SUCCEEDED)
        crashed = wait_for(lambda: (j := queue.get(crashing)).state == JobState.FAILED and j)
        assert running.launch_of(crashing).warm and running.launch_of(healthy).warm
        assert crashed.failures == crashed.max_failures  # each warm attempt's crash counted against it
        healthy_job = queue.get(healthy)
        assert healthy_job.failures == 0 and healthy_job.attempt == 1
        # Each slot is back to one spare: the crash cost its own slot nothing but a fresh spare.
        wait_for(lambda: running.scheduler.spares == {"cpu0": "ready", "cpu1": "ready"})
        assert running.thread.is_alive() and running.scheduler.error is None


def test_that_stopping_the_scheduler_leaves_no_spare_behind(workspace, queue) -> None:
    with Running(workspace, slots=TWO_SLOTS) as running:
        pids = [running.ready_spare("cpu0"), running.ready_spare("cpu1")]
        zygote = running.scheduler.spare_pids.get(ZYGOTE_SLOT)  # it forked both spares
        assert zygote is not None
        pids.append(zygote)
        assert {p.pid for p in spares_of_this_process()} == set(pids)
    assert spares_of_this_process() == []
    assert all(not psutil.pid_exists(pid) for pid in pids)  # ended and reaped, not even zombies


def test_that_warm_false_in_the_settings_starts_every_trainer_cold(workspace, queue, ledger) -> None:
    workspace.save_settings({"scheduler": {"warm": False}})
    launched = []
    scheduler = Scheduler(workspace, ONE_SLOT, trainer_command=STANDIN_COMMAND, on_event=launched.append)
    assert not scheduler.warm
    queue.submit(standin_grid(2, duration=0.1))
    scheduler.run(until_empty=True)
    assert [e.warm for e in launched if isinstance(e, JobLaunched)] == [False, False]
    assert spares_of_this_process() == []
    workspace.save_settings({"scheduler": {"warm": "yes"}})
    with pytest.raises(BluenoError, match=r"settings.toml: \[scheduler\] warm = 'yes' is not true or false"):
        Scheduler(workspace, ONE_SLOT, trainer_command=STANDIN_COMMAND)


def test_that_unset_warm_means_spares_on_gpu_slots_and_on_linux_cpu_slots(workspace, monkeypatch) -> None:
    """On CPU slots spares pay off only with the zygote (Linux): one import, forks after it (docs/benchmarks.md)."""
    import blueno.scheduler

    cpu, gpu = [Slot("cpu0", None), Slot("cpu1", None)], [Slot("gpu0", "0"), Slot("gpu1", "1")]
    assert Scheduler(workspace, gpu, trainer_command=STANDIN_COMMAND).warm
    assert Scheduler(workspace, cpu, trainer_command=STANDIN_COMMAND).warm == sys.platform.startswith("linux")
    monkeypatch.setattr(blueno.scheduler.sys, "platform", "darwin")  # no zygote: each spare imports beside the jobs
    assert not Scheduler(workspace, cpu, trainer_command=STANDIN_COMMAND).warm
    assert Scheduler(workspace, gpu, trainer_command=STANDIN_COMMAND).warm
    workspace.save_settings({"scheduler": {"warm": True}})  # asked for: on, whatever the slots
    assert Scheduler(workspace, cpu, trainer_command=STANDIN_COMMAND).warm


def run_digits_job(workspace: Workspace, warm: bool, model: str) -> tuple[JobLaunched, dict]:
    """Train one tiny ``model`` on the digits with the real trainer, cold or warm; its launch and its figures."""
    from training_helpers import submit

    with workspace.open_store() as store:
        ref = datasets.make_demo(workspace, store).ref
        grid = f"""
            name = "bit-identical"
            dataset = "{ref}"
            [split]
            validation = 0.25
            seed = 1
            [params]
            epochs = 2
            batch_size = 64
            seed = 7
            {model}
        """
        if warm:
            with Running(workspace, trainer_command=None) as running:
                running.ready_spare(timeout=240)
                submit(workspace, store, grid)
                running.scheduler.kick()
                job = wait_for(lambda: (j := JobQueue(store).jobs()[0]).state.is_terminated and j, timeout=240)
                launch = running.launch_of(job.id)
        else:
            submit(workspace, store, grid)
            launches: list = []
            Scheduler(workspace, ONE_SLOT, warm=False, on_event=launches.append).run(until_empty=True)
            job = JobQueue(store).jobs()[0]
            launch = next(e for e in launches if isinstance(e, JobLaunched))
        assert job.state == JobState.SUCCEEDED, workspace.run_log(job.run_id).read_text()[-2000:]
        run = store.query_one("SELECT * FROM runs WHERE job_id = ?", (job.id,))
        keys = [r["key"] for r in store.query("SELECT DISTINCT key FROM metrics WHERE run_id = ?", (run["id"],))]
        curves = {key: [v.tolist() for v in metrics.history(store, run["id"], key)] for key in sorted(keys)}
        figures = {"best": json.loads(run["best"]), "final": json.loads(run["final"]),
                   "validation": json.loads(run["evaluation"])["validation"], "curves": curves}
        figures["validation"].pop("evaluated")
    return launch, figures


@pytest.mark.slow
@pytest.mark.parametrize("model", ["[models.mlp]\nhidden_units = 8", "[models.cnn2d]\nfilters = 4\ndense_units = 8"])
def test_that_a_warm_trainer_gives_bit_identical_results_to_a_cold_one(tmp_path, model: str) -> None:
    cold_launch, cold = run_digits_job(Workspace(tmp_path / "cold").ensure(), warm=False, model=model)
    warm_launch, warm = run_digits_job(Workspace(tmp_path / "warm").ensure(), warm=True, model=model)
    assert not cold_launch.warm and warm_launch.warm
    assert set(cold["curves"]) >= {"batch_loss", "loss", "val_loss", "val_accuracy"}
    assert warm == cold  # every point of every curve, the best and final epochs, the saved model's evaluation


def test_that_a_trainer_that_cannot_be_a_spare_makes_its_slot_start_jobs_cold(workspace, queue, ledger, tmp_path
                                                                              ) -> None:
    no_spare = tmp_path / "no-spare.sh"  # a trainer command of one's own that does not know --spare
    no_spare.write_text('#!/bin/sh\n[ "$1" = --spare ] && { echo "unknown option --spare" >&2; exit 2; }\n'
                        f'exec {" ".join(STANDIN_COMMAND)} "$@"\n')
    no_spare.chmod(0o755)
    with Running(workspace, trainer_command=[str(no_spare)]) as running:
        reason = wait_for(lambda: "in a row" in (r := running.scheduler.spares.get("cpu0", "")) and r)
        assert "3 spares in a row exited before they were ready (exit status 2" in reason
        (job_id,) = queue.submit(standin_grid(1, duration=0.1)).added
        running.scheduler.kick()
        wait_for(lambda: queue.get(job_id).state == JobState.SUCCEEDED)
        assert not running.launch_of(job_id).warm
        assert running.scheduler.spare_pids == {}  # no fourth try
    assert "unknown option --spare" in (workspace.logs_dir / "spare-cpu0.log").read_text()
