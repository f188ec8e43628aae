"""The Ray backend on a real two-node cluster inside this machine (loopback only).

These drive :class:`blueno.cluster.backend.RayBackend` directly, as the
scheduler does: launch, poll until the end, terminate.  The whole grid through
the scheduler is ``tests/test_cluster_acceptance.py``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("ray", reason="the Ray backend is the optional extra [ray] (make test installs it)")

from cluster_helpers import local_cluster, non_loopback_sockets, tagged_processes  # noqa: E402
from gcs_emulator import gcs_bucket_fixture, gcs_emulator_fixture  # noqa: E402,F401  (fixtures)
from training_helpers import threes_and_eights  # noqa: E402

from blueno import datasets  # noqa: E402
from blueno.cluster.backend import TRANSFER_RECORD, RayBackend, workspace_key  # noqa: E402
from blueno.cluster.transfer import crc32c  # noqa: E402
from blueno.workspace import Workspace  # noqa: E402

STANDIN = str(Path(__file__).resolve().parent / "protocol_standin.py")


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(nodes=2, gpus=2) as running:
        yield running


def _spec(workspace: Workspace, job_id: int, attempt: int, params: dict) -> dict:
    stem = workspace.logs_dir / f"run-{job_id}.attempt-{attempt}"
    return {
        "job_id": job_id, "attempt": attempt, "run_id": job_id, "config": {"model": "standin", "params": params},
        "seed": None, "workspace": str(workspace.root), "run_dir": str(workspace.run_dir(job_id)),
        "log_path": str(workspace.run_log(job_id)), "events": str(stem) + ".events.jsonl",
        "job_spec": str(stem) + ".job.json", "dataset": None, "resume_from": None, "slot": "ray0", "gpu": None,
    }


def _launch(backend: RayBackend, workspace: Workspace, job_id: int, attempt: int, params: dict):
    job = SimpleNamespace(id=job_id, attempt=attempt)
    spec = _spec(workspace, job_id, attempt, params)
    log = open(workspace.run_log(job_id), "ab")  # noqa: SIM115 - closed by cleanup()
    return backend.launch(job, SimpleNamespace(name="ray0", gpu=None), spec, [sys.executable, STANDIN], None, log,
                          env={}, grace=2.0), spec


def _wait(launched, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        returncode = launched.poll()
        if returncode is not None:
            launched.cleanup()
            return returncode
        time.sleep(0.02)
    raise AssertionError("the remote attempt did not end in time")


def _events(spec: dict) -> list[dict]:
    return [json.loads(line) for line in Path(spec["events"]).read_text().splitlines()]


def test_that_no_ray_process_listens_or_connects_beyond_loopback(cluster, tmp_path):
    backend = RayBackend(Workspace(tmp_path).ensure(), cluster.address).connect()
    assert backend.capacity() == 4  # 2 nodes x 2 fake GPUs; the head takes no work
    launched, _ = _launch(backend, Workspace(tmp_path), 1, 1, {"steps": 1})
    assert _wait(launched) == 0
    assert non_loopback_sockets() == []


def test_that_a_remote_attempt_streams_its_events_files_and_log_to_the_head(cluster, tmp_path):
    workspace = Workspace(tmp_path).ensure()
    for folder, name in ((workspace.zoo_dir, "my_model.py"), (workspace.transforms_dir, "my_transform.py")):
        folder.mkdir()
        (folder / name).write_text(f"# {name}: the user's own, it travels with every job\n")
    backend = RayBackend(workspace, cluster.address).connect()
    launched, spec = _launch(backend, workspace, 7, 1, {"steps": 3, "duration": 0.3})
    assert _wait(launched) == 0
    events = _events(spec)
    assert [e["type"] for e in events] == ["start", "metrics", "epoch", "metrics", "epoch", "metrics", "epoch",
                                           "result"]
    # Paths a trainer reports name the head's copy, which is there and intact.
    checkpoint = events[2]["checkpoint"]
    assert checkpoint.startswith(str(workspace.root))
    model = workspace.root / events[-1]["model_path"]
    record = json.loads((workspace.run_dir(7) / TRANSFER_RECORD).read_text())
    assert record["model.bin"]["crc32c"] == crc32c(model.read_bytes())
    assert launched.started["node"] and launched.started["gpu"] in ("0", "1")
    assert "trainer started on" in workspace.run_log(7).read_text()
    assert tagged_processes("7.") == []
    node = next(n for n in cluster.nodes if n.node_id == launched.started["node_id"])
    copy = node.blueno_dir / "workspaces" / workspace_key(workspace)
    assert (copy / "zoo" / "my_model.py").read_bytes() == (workspace.zoo_dir / "my_model.py").read_bytes()
    assert (copy / "transforms" / "my_transform.py").exists()
    assert not (copy / "models" / "run-7").exists()  # the node keeps no run folder once the head has it


def test_that_a_cancelled_remote_trainer_stops_within_a_second(cluster, tmp_path):
    workspace = Workspace(tmp_path).ensure()
    backend = RayBackend(workspace, cluster.address).connect()
    launched, _ = _launch(backend, workspace, 9, 1, {"steps": 100, "duration": 100})
    deadline = time.monotonic() + 60
    while launched.started is None and time.monotonic() < deadline:
        assert launched.poll() is None
        time.sleep(0.02)
    assert tagged_processes("9.")
    asked = time.monotonic()
    launched.terminate(2.0, interrupted=False)
    returncode = _wait(launched, 10)
    while tagged_processes("9.") and time.monotonic() - asked < 5:
        time.sleep(0.02)
    stopped = time.monotonic() - asked
    assert returncode == 143 and not launched.interrupted
    assert tagged_processes("9.") == [] and stopped < 1.0, f"stopped after {stopped:.2f} s"


def test_that_a_node_with_other_versions_is_refused_with_its_name_and_gets_no_work(cluster, tmp_path) -> None:
    from blueno.cluster.node import version_mismatch

    problem = version_mismatch({"python": "3.11.7", "ray": "2.60.0", "blueno": "0.2.0"},
                               {"python": "3.11.2", "ray": "2.60.0", "blueno": "0.1.0"}, "box2 (node 3fa2b1c0)")
    assert problem.startswith("the node box2 (node 3fa2b1c0) runs blueno 0.1.0 (the head has 0.2.0)")
    assert "python" not in problem  # the same major.minor
    workspace = Workspace(tmp_path).ensure()
    backend = RayBackend(workspace, cluster.address).connect()
    refused = cluster.nodes[0].node_id
    backend.refused[refused] = problem  # as the version check would record it
    assert backend.capacity() == 2
    launched = [_launch(backend, workspace, 20 + i, 1, {"steps": 1})[0] for i in range(3)]
    for one in launched:
        assert _wait(one) == 0
        assert not one.started["node_id"].startswith(refused[:8])


def test_that_a_silent_node_is_treated_as_lost_after_the_heartbeat_limit(cluster, tmp_path) -> None:
    workspace = Workspace(tmp_path).ensure()
    backend = RayBackend(workspace, cluster.address, heartbeat_limit=3.0).connect()
    quiet = cluster.add_node(gpus=1)
    backend.refresh(force=True)
    backend.refused.update({n.node_id: "kept free for this test" for n in cluster.nodes if n is not quiet})
    launched, _ = _launch(backend, workspace, 30, 1, {"steps": 100, "duration": 100})
    deadline = time.monotonic() + 60
    while launched.started is None and time.monotonic() < deadline:
        assert launched.poll() is None
        time.sleep(0.02)
    assert launched.started["node_id"] == quiet.node_id
    cluster.freeze(quiet)
    try:
        frozen = time.monotonic()
        assert _wait(launched, 30) == -1 and launched.interrupted  # lost: requeued, not counted
        noticed = time.monotonic() - frozen
        assert noticed < 6.0, f"noticed after {noticed:.1f} s"  # silence counts from its last message
        assert quiet.node_id in backend.lost and backend.capacity() == 0  # the others are refused here
        assert "silent for more than 3 s" in workspace.run_log(30).read_text()
    finally:
        cluster.freeze(quiet, frozen=False)
        cluster.remove_node(quiet)
    deadline = time.monotonic() + 10
    while tagged_processes("30.") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tagged_processes("30.") == []


def _dataset_spec(version) -> dict:
    return {"name": version.name, "version": version.version, "manifest_hash": version.manifest_hash,
            "manifest": version.manifest, "path": str(version.path), "remote_url": version.remote_url}


def _cached(node, version) -> dict[str, str]:
    folder = node.blueno_dir / "datasets" / version.manifest_hash
    assert (folder / ".verified").exists()
    return {f["path"]: crc32c((folder / f["path"]).read_bytes()) for f in version.files}


def test_that_a_dataset_reaches_a_node_once_from_the_head_verified_into_its_cache(cluster, tmp_path) -> None:
    workspace = Workspace(tmp_path).ensure()
    with workspace.open_store() as store:
        version = datasets.resolve(store, workspace, threes_and_eights(workspace, store))
    backend = RayBackend(workspace, cluster.address).connect()
    for job_id in (40, 41, 42, 43, 44):
        launched, spec = _launch_with(backend, workspace, job_id, {"steps": 1}, dataset=_dataset_spec(version))
        assert _wait(launched) == 0
    assert len(backend._datasets) == 1  # put in the object store once
    used = {n for n in cluster.nodes if (n.blueno_dir / "datasets").exists()}
    assert used
    for node in used:
        assert _cached(node, version) == {f["path"]: f["crc32c"] for f in version.files}


def test_that_a_pushed_dataset_reaches_a_node_from_the_bucket(cluster, tmp_path, gcs_bucket, gcs_emulator) -> None:
    workspace = Workspace(tmp_path).ensure()
    workspace.save_settings({"gcs": {"bucket": gcs_bucket}})
    with workspace.open_store() as store:
        ref = threes_and_eights(workspace, store)
        datasets.push(workspace, store, ref, gcs_bucket)
        version = datasets.resolve(store, workspace, ref)
    assert version.remote_url
    backend = RayBackend(workspace, cluster.address).connect()
    reader = cluster.add_node(gpus=1, env={"STORAGE_EMULATOR_HOST": gcs_emulator})  # the node's own credentials
    try:
        backend.refresh(force=True)
        backend.refused.update({n.node_id: "kept free for this test" for n in cluster.nodes if n is not reader})
        launched, _ = _launch_with(backend, workspace, 50, {"steps": 1}, dataset=_dataset_spec(version))
        assert _wait(launched) == 0
        assert launched.started["node_id"] == reader.node_id
        assert backend._datasets == {}  # nothing went through the head
        assert _cached(reader, version) == {f["path"]: f["crc32c"] for f in version.files}
    finally:
        cluster.remove_node(reader)


def _launch_with(backend: RayBackend, workspace: Workspace, job_id: int, params: dict, dataset: dict):
    job = SimpleNamespace(id=job_id, attempt=1)
    spec = {**_spec(workspace, job_id, 1, params), "dataset": dataset}
    log = open(workspace.run_log(job_id), "ab")  # noqa: SIM115 - closed by cleanup()
    return backend.launch(job, SimpleNamespace(name="ray0", gpu=None), spec, [sys.executable, STANDIN], None, log,
                          env={}, grace=2.0), spec


def test_that_a_cluster_without_gpus_runs_one_job_per_cpu_slot(cluster, tmp_path) -> None:
    workspace = Workspace(tmp_path).ensure()
    backend = RayBackend(workspace, cluster.address, gpus_per_job=0, cpus_per_job=1).connect()
    assert not backend.gpu_mode and backend.capacity() == 2  # the nodes have one CPU each; the head none
    launched, _ = _launch(backend, workspace, 60, 1, {"steps": 1})
    assert _wait(launched) == 0 and launched.started["gpu"] is None


def test_that_an_address_where_nothing_answers_is_a_clear_error_at_once(tmp_path) -> None:
    import ray
    from gcs_emulator import free_port

    from blueno import BluenoError

    ray.shutdown()  # this process may be connected to the module's cluster: a scheduler connects once
    started = time.monotonic()
    with pytest.raises(BluenoError, match=r"nothing answers at 127\.0\.0\.1:\d+ .*ray start --head"):
        RayBackend(Workspace(tmp_path).ensure(), f"127.0.0.1:{free_port()}").connect()
    assert time.monotonic() - started < 10
