"""The smaller holes of the hardening review: names, safe-path children, crafted manifests, random search
that says what it drew, resize limits, and Cloud Storage that is not there."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from gcs_emulator import gcs_bucket_fixture, gcs_emulator_fixture  # noqa: F401  (fixtures)
from test_datasets import write_npy_folder

from blueno import BluenoError, datasets
from blueno.datasets import remote as gcs
from blueno.datasets.kinds import load_npy_folder
from blueno.datasets.manifest import manifest_hash, short_version
from blueno.grid import GridError, parse_grid
from blueno.scheduler import Scheduler, Slot
from blueno.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]
GCS_BOUND_S = 30.0  # 5 s connect timeout, 20 s retry deadline, and the interpreter's start


@pytest.mark.parametrize("name", ["digits\n", "digits\r\n", "digits ", "../digits", "digits\x00", ""])
def test_a_dataset_name_must_match_whole(name):
    with pytest.raises(BluenoError, match="not a valid dataset name"):
        datasets.check_name(name)


@pytest.mark.parametrize("ref", ["digits\n", "digits@abc\n", "digits@abc\nx"])
def test_a_grid_dataset_reference_must_match_whole(ref):
    text = f'name = "g"\ndataset = {json.dumps(ref)}\n[models.mlp]\n'
    with pytest.raises(GridError, match="is not a dataset reference"):
        parse_grid(text, source="<g>")


def test_python_children_do_not_import_modules_from_the_workspace(workspace: Workspace, monkeypatch):
    """A json.py in the workspace (the children's working directory) would shadow the standard library."""
    from gui.cli_process import cli_arguments

    (workspace.root / "json.py").write_text("raise SystemExit('shadowed by the workspace json.py')\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    gui_command = subprocess.run([sys.executable, *cli_arguments(workspace, ["data", "ls"])], cwd=workspace.root,
                                 capture_output=True, text=True, env=env, timeout=120)
    assert gui_command.returncode == 0, gui_command.stderr
    monkeypatch.delenv("BLUENO_TRAINER", raising=False)
    trainer = Scheduler(workspace, [Slot("cpu0", None)]).trainer_command
    assert trainer[:2] == [sys.executable, "-P"] and trainer[-2:] == ["-m", "blueno.trainer"]
    probe = subprocess.run([*trainer[:-2], "-c", "import json; print(json.__file__)"], cwd=workspace.root,
                           capture_output=True, text=True, env=env, timeout=60)
    assert probe.returncode == 0 and not probe.stdout.startswith(str(workspace.root)), probe
    from blueno.service import scheduler_command

    scheduler = scheduler_command(workspace)  # the process the GUI's Start launches
    assert scheduler[:4] == [sys.executable, "-P", "-m", "blueno"]
    status = subprocess.run([*scheduler[:4], "--home", str(workspace.root), "scheduler", "status"],
                            cwd=workspace.root, capture_output=True, text=True, env=env, timeout=120)
    assert status.returncode == 0 and "shadowed" not in status.stdout + status.stderr, status


def test_a_pulled_manifest_naming_files_outside_its_folder_is_refused(workspace, store, gcs_bucket):
    from google.cloud import storage

    forged = {"format": 1, "kind": "npy_folder", "files": [{"path": "labels.csv", "size": 5, "crc32c": "x"}],
              "n_samples": 1, "sample_shape": [2], "dtype": "float32", "classes": {"a": 1}, "class_names": ["a"],
              "options": {"labels": "../../../../etc/passwd", "id_col": "id", "label_col": "label"},
              "parent": None, "transform": None}
    version = short_version(manifest_hash(forged))
    location = gcs.parse_url(gcs_bucket)
    bucket = storage.Client(project="blueno-emulator").bucket(location.bucket)
    bucket.blob(location.key("evil", version, "manifest.json")).upload_from_string(json.dumps(forged))
    with pytest.raises(BluenoError, match="cannot be trusted: option labels = '../../../../etc/passwd'"):
        gcs.pull(workspace, store, f"{gcs_bucket}/evil")
    assert datasets.versions(store, workspace) == []
    assert not [p for p in workspace.data_dir.rglob("*") if p.name.startswith(".tmp-")]


@pytest.mark.parametrize(("files", "message"), [
    ("labels.csv", "cannot be trusted: files must list"),
    ([{"path": "labels.csv", "size": 10 ** 15, "crc32c": "x"}], "free"),  # more than the disk holds
])
def test_a_pulled_manifest_of_the_wrong_shape_or_size_is_refused_before_downloading(
    workspace, store, gcs_bucket, files, message
):
    from google.cloud import storage

    forged = {"format": 1, "kind": "csv", "files": files, "n_samples": 1, "sample_shape": [2], "dtype": "float32",
              "classes": {"a": 1}, "class_names": ["a"], "options": {"file": "labels.csv"}, "parent": None,
              "transform": None}
    version = short_version(manifest_hash(forged))
    location = gcs.parse_url(gcs_bucket)
    bucket = storage.Client(project="blueno-emulator").bucket(location.bucket)
    bucket.blob(location.key("big", version, "manifest.json")).upload_from_string(json.dumps(forged))
    with pytest.raises(BluenoError, match=message):
        gcs.pull(workspace, store, f"{gcs_bucket}/big")
    assert datasets.versions(store, workspace) == []
    assert not [p for p in workspace.data_dir.rglob("*") if p.name.startswith(".tmp-")]


def test_label_ids_that_are_paths_are_refused_by_the_loader(tmp_path):
    folder = write_npy_folder(tmp_path / "v", n=3)
    np.save(tmp_path / "outside.npy", np.zeros((4, 4), np.float32))
    (folder / "labels.csv").write_text("id,label\ns000,cat\n../outside,dog\ns002,cat\n")
    manifest = {"options": {"labels": "labels.csv", "id_col": "id", "label_col": "label"},
                "sample_shape": [4, 4], "dtype": "float32", "class_names": ["cat", "dog"]}
    with pytest.raises(BluenoError, match=r"id '../outside' is a path"):
        load_npy_folder(folder, manifest)
    with pytest.raises(BluenoError, match="labels file"):
        load_npy_folder(folder, {**manifest, "options": {**manifest["options"], "labels": "../x.csv"}})


def test_random_search_says_how_many_distinct_configurations_its_draws_give():
    text = ('name = "r"\ndataset = "digits"\n[search]\nmode = "random"\nsamples = 5000\nseed = 3\n'
            '[params]\nlearning_rate = {uniform = [0.1, 0.1005]}\n[models.mlp]\n')
    started = time.process_time()
    grid = parse_grid(text, source="<r>")
    cpu = time.process_time() - started
    assert grid.count == 6  # 0.1, 0.1001 ... 0.1005 at 4 significant digits
    (note,) = grid.notes
    assert "5,000 samples give 6 distinct configurations" in note
    print(f"5000 samples over 6 values: {cpu:.2f} s CPU")


def test_resize_refuses_sizes_that_would_exhaust_memory():
    import etl
    from etl.registry import TransformError

    batch = np.zeros((256, 8, 8, 1), np.float32)
    spec = etl.get("resize")
    with pytest.raises(TransformError, match="larger than 16384 pixels per side"):
        spec(batch, spec.check({"height": 8, "width": 100_000}))
    with pytest.raises(TransformError, match="GiB per batch"):
        spec(batch, spec.check({"height": 4000, "width": 4000}))
    assert spec(batch, spec.check({"height": 4, "width": 4})).shape == (256, 4, 4, 1)


def test_an_unreachable_cloud_storage_ends_within_the_bound_with_what_was_tried_and_the_fix(workspace):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-P", "-m", "blueno", "--home", str(workspace.root), "data", "pull", "gs://b/p/x@abc"],
        capture_output=True, text=True, timeout=GCS_BOUND_S + 30,
        env={**os.environ, "PYTHONPATH": str(REPO), "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}"},
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    assert elapsed < GCS_BOUND_S, f"{elapsed:.1f} s"
    assert f"Cloud Storage at http://127.0.0.1:{port} did not answer" in proc.stderr  # said while retrying
    assert "cannot reach Cloud Storage" in proc.stderr and "try again" in proc.stderr
    assert "Traceback" not in proc.stderr
    print(f"closed port: gave up after {elapsed:.1f} s")
