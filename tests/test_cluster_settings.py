"""Where jobs run: the [scheduler] settings and --ray, and a job's *placing* state (no Ray needed)."""

from __future__ import annotations

import os

import pytest
from standin_model import standin_grid

from blueno import BluenoError
from blueno.cli import main
from blueno.cluster import cluster_settings, nodes, save_nodes
from blueno.queue import PLACING, JobQueue


def test_that_jobs_run_locally_unless_the_settings_or_the_flag_say_ray(workspace) -> None:
    assert cluster_settings(workspace) is None
    assert cluster_settings(workspace, "auto").address == "auto"
    workspace.save_settings({"scheduler": {"backend": "ray", "address": "head:6379", "heartbeat_limit": 12}})
    chosen = cluster_settings(workspace)
    assert (chosen.address, chosen.heartbeat_limit, chosen.gpus_per_job) == ("head:6379", 12.0, 1.0)
    assert cluster_settings(workspace, "other:6379").address == "other:6379"  # the flag wins


@pytest.mark.parametrize("settings, message", [
    ({"backend": "slurm"}, r"backend = 'slurm'; use one of 'local', 'ray'"),
    ({"backend": "ray"}, r'backend = "ray" needs an address'),
    ({"backend": "ray", "address": "auto", "heartbeat_limit": -1}, r"heartbeat_limit = -1; give a number"),
])
def test_that_bad_cluster_settings_name_the_file_the_key_and_the_fix(workspace, settings, message) -> None:
    workspace.save_settings({"scheduler": settings})
    with pytest.raises(BluenoError, match=message) as error:
        cluster_settings(workspace)
    assert str(workspace.settings_path) in str(error.value)


def test_that_a_job_is_placing_until_a_node_starts_it_and_then_names_the_node(queue: JobQueue) -> None:
    queue.submit(standin_grid(1))
    job = queue.claim(PLACING, None, "head", os.getpid())
    assert queue.get(job.id).placing and queue.get(job.id).shown_state == "placing"
    assert not queue.mark_placed(job.id, job.attempt + 1, "3fa2b1c0/gpu1", "box2 (node 3fa2b1c0)", "1")  # stale
    assert queue.mark_placed(job.id, job.attempt, "3fa2b1c0/gpu1", "box2 (node 3fa2b1c0)", "1")
    placed = queue.get(job.id)
    assert not placed.placing and placed.shown_state == "running"
    assert (placed.slot, placed.host, placed.gpu) == ("3fa2b1c0/gpu1", "box2 (node 3fa2b1c0)", "1")
    run = queue.store.query_one("SELECT host, gpu FROM runs WHERE job_id = ?", (job.id,))
    assert (run["host"], run["gpu"]) == ("box2 (node 3fa2b1c0)", "1")


def test_that_queue_ls_shows_placing_then_the_node(workspace, queue: JobQueue, capsys) -> None:
    queue.submit(standin_grid(1))
    job = queue.claim(PLACING, None, "head", os.getpid())
    assert main(["--home", str(workspace.root), "queue", "ls"]) == 0
    row = capsys.readouterr().out.splitlines()[-1]
    assert " placing " in row and "3fa2b1c0" not in row
    queue.mark_placed(job.id, job.attempt, "3fa2b1c0/gpu1", "box2 (node 3fa2b1c0)", "1")
    assert main(["--home", str(workspace.root), "queue", "ls"]) == 0
    row = capsys.readouterr().out.splitlines()[-1]
    assert " running " in row and "3fa2b1c0/gpu1" in row


def test_that_the_cluster_snapshot_round_trips_through_the_database(store) -> None:
    assert nodes(store) == {"time": None, "nodes": []}
    save_nodes(store, [], {})
    assert nodes(store)["nodes"] == [] and nodes(store)["time"] is not None
