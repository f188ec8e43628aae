"""Real, tiny trainings for the evaluation tests: grids queued through JobQueue, trainers as subprocesses."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from blueno import datasets
from blueno.datasets.importing import import_path
from blueno.grid import parse_grid
from blueno.queue import JobQueue
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
    result = JobQueue(store).submit(grid, resolve=lambda ref: datasets.resolve(store, workspace, ref).ref)
    assert result.experiment_id is not None and result.added
    return result.experiment_id


def trainer_env(workspace: Workspace) -> dict[str, str]:
    return {**os.environ, "BLUENO_HOME": str(workspace.root), "PYTHONPATH": str(REPO),
            "CUDA_VISIBLE_DEVICES": "", "BLUENO_CPU_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}


def train_queued(workspace: Workspace, store: Store, timeout: float = 240) -> dict[int, str]:
    """Claim every queued job and run ``python -m blueno.trainer`` for each, all at once, as the scheduler would.

    Returns each job's final state; a trainer that fails makes the queue record it.
    """
    queue = JobQueue(store)
    started = []
    while (job := queue.claim("cpu", None, socket.gethostname(), os.getpid())) is not None:
        process = subprocess.Popen(
            [sys.executable, "-m", "blueno.trainer", str(job.id), str(job.attempt)], cwd=workspace.root,
            env=trainer_env(workspace), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        started.append((job, process))
    states = {}
    for job, process in started:
        out, _ = process.communicate(timeout=timeout)
        state = queue.on_exit(job.id, job.attempt, process.returncode)
        assert process.returncode == 0, out
        states[job.id] = str(state)
    return states
