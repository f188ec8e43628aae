"""One grid over a real multi-node Ray cluster inside this machine: every promise of issue 12 at once.

Two nodes with two fake GPUs each (a third joins mid-grid), every Ray process
on 127.0.0.1.  The grid: 12 fast stand-in jobs, three long ones that the test
hurts on purpose, and one real Keras job; all read the same dataset, which
reaches each node from the head through Ray's object store into the node's
cache.  Mid-grid the test SIGKILLs one trainer (a crash: counted, requeued,
resumed), cancels one job (stopped within a second), adds a node (it gets
work) and removes the node of another (interrupted: not counted, resumed from
its checkpoint on another node); at the end it forges a late event of an
abandoned attempt (ignored).  Pass: every job in its expected end state, none
completed twice, full metric series, every model file verified on the head,
no process of a job left on any node, no Ray socket beyond loopback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the Ray backend is the optional extra [ray] (make test installs it)")

from cluster_helpers import LocalCluster, non_loopback_sockets, tagged_processes  # noqa: E402
from standin_model import db_content, standin_grid_text  # noqa: E402
from training_helpers import submit, threes_and_eights  # noqa: E402

from blueno import ingest  # noqa: E402
from blueno.cluster import nodes as cluster_nodes  # noqa: E402
from blueno.cluster.backend import TRANSFER_RECORD, RayBackend  # noqa: E402
from blueno.cluster.transfer import crc32c  # noqa: E402
from blueno.events import FileSource  # noqa: E402
from blueno.jobspec import attempt_files  # noqa: E402
from blueno.queue import JobQueue, JobState  # noqa: E402
from blueno.scheduler import Scheduler, recover_if_idle  # noqa: E402

TRAINER = [sys.executable, str(Path(__file__).resolve().with_name("cluster_trainer.py"))]
REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(300)


def runs_of(store):
    return {row["job_id"]: row["id"] for row in store.query("SELECT id, job_id FROM runs")}


def wait_for(predicate, timeout: float = 90.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what() if callable(what) else what}: not reached in {timeout:.0f} s")


@pytest.fixture(scope="module")
def cluster():
    running = LocalCluster()
    try:
        running.add_node(gpus=2)
        running.add_node(gpus=2)
        yield running
    finally:
        running.shutdown()


def test_that_a_grid_runs_across_the_cluster_through_crashes_cancels_and_lost_nodes(
        cluster, workspace, store, ledger) -> None:
    queue = JobQueue(store)
    data = threes_and_eights(workspace, store)
    hurt = submit(workspace, store, standin_grid_text(3, name="hurt", dataset=data, steps=8, duration=8.0)
                  .replace('name = "hurt"', 'name = "hurt"\npriority = 10'))  # placed first: kill, cancel, lose
    fast = submit(workspace, store, standin_grid_text(12, name="fast", dataset=data, steps=3, duration=1.5))
    keras = submit(workspace, store, f'name = "keras"\ndataset = "{data}"\n[models.mlp]\nepochs = 2\n'
                   "batch_size = 16\nhidden_units = 8\n")
    kill, cancel, lose = (job.id for job in queue.jobs(experiment_id=hurt))

    backend = RayBackend(workspace, cluster.address, heartbeat_limit=10.0).connect()
    scheduler = Scheduler(workspace, [], trainer_command=TRAINER, backend=backend, grace=2.0)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            scheduler.run(until_empty=True)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=run, name="scheduler")
    figures: dict[str, float] = {}
    began = time.monotonic()
    thread.start()
    try:
        # A crash: SIGKILL the first trainer of `kill` after its first epoch reached the head.
        wait_for(lambda: queue.get(kill).epoch >= 1, what="the first epoch of the job to kill")
        victims = tagged_processes(f"{kill}.1")
        assert victims, "the trainer carries its tag"
        for proc in victims:
            proc.kill()
        killed = time.monotonic()
        wait_for(lambda: queue.get(kill).attempt >= 2 and not queue.get(kill).placing, what="the crashed job resumed")
        figures["crash → trainer running again"] = time.monotonic() - killed

        # A cancel: the remote trainer is gone within a second.
        wait_for(lambda: tagged_processes(f"{cancel}."), what="the job to cancel running")
        asked = time.monotonic()
        queue.cancel([cancel])
        wait_for(lambda: not tagged_processes(f"{cancel}."), timeout=5, what="the cancelled trainer stopped")
        stopped_after = figures["cancel → remote trainer gone"] = time.monotonic() - asked
        wait_for(lambda: queue.get(cancel).state == JobState.CANCELLED, what="the cancel recorded")

        # A node joins mid-grid; then the node of `lose` goes away after its first epoch.
        joined = cluster.add_node(gpus=2)
        wait_for(lambda: queue.get(lose).epoch >= 1 and not queue.get(lose).placing, what="the job to lose running")
        victim_prefix = queue.get(lose).slot.split("/")[0]
        victim = next(n for n in cluster.nodes if n.node_id.startswith(victim_prefix))
        lost_attempt = queue.get(lose).attempt
        cluster.remove_node(victim)
        removed = time.monotonic()
        wait_for(lambda: not tagged_processes(f"{lose}.{lost_attempt}"), timeout=10,
                 what="the trainer of the removed node gone")
        figures["node removed → its trainer gone"] = time.monotonic() - removed
        wait_for(lambda: queue.get(lose).attempt > lost_attempt and not queue.get(lose).placing, timeout=60,
                 what=lambda: f"the job of the lost node placed again ({queue.get(lose)}, "
                 f"{[(j.id, j.shown_state, j.slot) for j in queue.jobs() if j.state == JobState.RUNNING]}, "
                 f"{backend.refresh(force=True)})")
        figures["node removed → its job running on another node"] = time.monotonic() - removed
        assert not queue.get(lose).slot.startswith(victim_prefix)
        assert non_loopback_sockets() == []
        snapshot = wait_for(lambda: cluster_nodes(store)["nodes"], what="the nodes snapshot")
        assert any(n["gpus"] == 2 for n in snapshot)
        thread.join(240)
        assert not thread.is_alive(), "the grid did not finish"
        figures["the whole grid (17 jobs)"] = time.monotonic() - began
    finally:
        scheduler.stop()
        thread.join(30)
        backend.close()
    assert not errors, errors

    jobs = {job.id: job for job in queue.jobs()}
    assert {job_id: str(job.state) for job_id, job in jobs.items() if job.state != JobState.SUCCEEDED} == {
        cancel: "cancelled"}
    assert stopped_after < 1.0, f"the cancelled trainer stopped after {stopped_after:.2f} s"
    assert jobs[kill].failures == 1 and jobs[lose].failures == 0, (  # a crash counts; a lost node does not
        jobs[kill], workspace.run_log(runs_of(store)[kill]).read_text()[-3000:])
    completions = [line.split(",") for line in ledger.read_text().splitlines()]
    by_job = {}
    for job_id, _attempt, resumed_from, _start, _end in completions:
        assert int(job_id) not in by_job, f"job {job_id} completed twice"
        by_job[int(job_id)] = int(resumed_from)
    assert by_job[kill] >= 1 and by_job[lose] >= 1  # both resumed from a checkpoint the head held
    assert set(by_job) == {j.id for j in jobs.values() if j.model == "standin" and j.state == JobState.SUCCEEDED}

    runs = {row["job_id"]: row for row in store.query("SELECT * FROM runs")}
    hosts = {runs[j]["host"] for j in jobs}
    assert any(joined.node_id[:8] in (host or "") for host in hosts), "the node that joined got work"
    for job in jobs.values():
        if job.state != JobState.SUCCEEDED:
            continue
        run = runs[job.id]
        steps = 2 if job.model == "mlp" else (8 if job.experiment_id == hurt else 3)
        series = [row["step"] for row in store.query(
            "SELECT step FROM metrics WHERE run_id = ? AND key = ? ORDER BY step",
            (run["id"], "val_loss" if job.model == "mlp" else "loss"))]
        assert series == list(range(1, steps + 1)), (job.id, series)
        model = workspace.root / run["model_path"]
        record = json.loads((model.parent / TRANSFER_RECORD).read_text())
        assert record[model.name]["crc32c"] == crc32c(model.read_bytes()), f"model of job {job.id}"
        assert "node " in run["host"]
    assert jobs[next(iter(j for j in jobs.values() if j.model == "mlp")).id].state == JobState.SUCCEEDED

    # A late event from an abandoned attempt (the killed one) changes nothing.
    before = db_content(workspace.db_path)
    run_id = runs[kill]["id"]
    late = attempt_files(workspace, run_id, 1)[1]
    with open(late, "a") as handle:
        handle.write(json.dumps({"v": 1, "seq": 999, "type": "result", "time": time.time(),
                                 "final": {"loss": -1.0}, "epochs_done": 99}) + "\n")
    ingest.ingest(store, FileSource(late), kill, 1, run_id)
    after = db_content(workspace.db_path)
    assert [row for row in after if "event_ingest" not in row] == [row for row in before if "event_ingest" not in row]
    assert tagged_processes() == []
    assert keras and fast
    print("".join(f"\n{what}: {seconds:.2f} s" for what, seconds in figures.items()))


def test_that_a_head_that_dies_leaves_nothing_running_on_the_nodes(cluster, workspace, store, tmp_path) -> None:
    """SIGKILL of `main.py --batch --ray`: Ray ends the dead driver's tasks, and their trainers with them."""
    queue = JobQueue(store)
    data = threes_and_eights(workspace, store)
    grid = tmp_path / "long.toml"
    grid.write_text(standin_grid_text(3, name="long", dataset=data, steps=30, duration=300.0))
    workspace.zoo_dir.mkdir(exist_ok=True)  # the batch process must know the stand-in model
    (workspace.zoo_dir / "standin_model.py").write_text((REPO / "tests" / "standin_model.py").read_text())
    env = {**os.environ, "BLUENO_TRAINER": " ".join(TRAINER), "PYTHONPATH": str(REPO)}
    output = tmp_path / "head.out"
    with open(output, "wb") as out:
        head = subprocess.Popen([sys.executable, str(REPO / "main.py"), "--batch", str(grid), "--ray",
                                 cluster.address, "--home", str(workspace.root), "--no-sync"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: len(tagged_processes()) == 3 or head.poll() is not None, timeout=120,
                 what="three trainers on the nodes")
        assert head.poll() is None, output.read_text()
        wait_for(lambda: {job.shown_state for job in queue.jobs()} == {"running"}, what="the nodes recorded")
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(10)
        died = time.monotonic()
        wait_for(lambda: not tagged_processes(), timeout=60, what="the trainers of the dead head gone")
        gone_after = time.monotonic() - died
    finally:
        if head.poll() is None:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(10)
    report = recover_if_idle(workspace, store)
    assert sorted(report.requeued) == sorted(job.id for job in queue.jobs())
    assert all(job.state == JobState.QUEUED and job.failures == 0 for job in queue.jobs())
    assert gone_after < 30, f"trainers outlived their head by {gone_after:.1f} s"
    print(f"trainers gone {gone_after:.2f} s after the head died")
