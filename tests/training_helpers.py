"""Real, tiny trainings for the evaluation tests: grids queued through JobQueue, run by the real scheduler."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from blueno import actions
from blueno.datasets.importing import import_path
from blueno.grid import parse_grid
from blueno.queue import JobQueue
from blueno.scheduler import Scheduler, Slot
from blueno.store import Store
from blueno.workspace import Workspace

REPO = Path(__file__).resolve().parent.parent


def threes_and_eights(workspace: Workspace, store: Store) -> str:
    """A binary task (3 or 8 in the 8x8 digits) that is learnable but not trivially perfect."""
    data = load_digits()
    keep = np.isin(data.target, (3, 8))
    path = workspace.root / "three-or-eight.npz"
    np.savez(path, x=(data.images[keep] / 16).astype("float32"), y=(data.target[keep] == 8).astype("int64"))
    return import_path(workspace, store, path, name="three-or-eight").version.ref


def submit(workspace: Workspace, store: Store, text: str) -> int:
    """Queue a grid exactly as ``blueno batch`` does; returns the experiment id."""
    grid = parse_grid(text, workspace=workspace)
    result = JobQueue(store).submit(grid, resolve=actions.dataset_resolver(store, workspace))
    assert result.experiment_id is not None and result.added
    return result.experiment_id


def train_queued(workspace: Workspace, store: Store, timeout: float = 240) -> dict[int, str]:
    """Run every queued job through the real scheduler (two CPU slots, real trainer subprocesses).

    Returns each job's final state; a job that did not succeed fails the test with its error.
    """
    queue = JobQueue(store)
    queued = [job.id for job in queue.jobs("queued")]
    saved = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    try:
        Scheduler(workspace, [Slot("cpu0", None), Slot("cpu1", None)]).run(until_empty=True)
    finally:
        if saved is None:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
        else:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = saved
    states = {}
    for job in queue.jobs(ids=queued):
        assert job.state == "succeeded", f"job {job.id} {job.state}: {job.error}"
        states[job.id] = str(job.state)
    return states
