"""Case 10: the disk fills up while a job writes its model or its metrics.

The model case prefers a real full filesystem: a 1 MiB tmpfs mounted over the workspace's
``models/`` (needs root, as in the CI container) filled to the last byte; without the right to
mount, the real trainer runs with ``ENOSPC`` injected at its Keras save call (``faulty_trainer.py``).
The metrics case fills the disk for the writer of the metrics, which is the scheduler (trainers only
report events, see docs/trainer-protocol.md): the scheduler's SQLite connection may not grow the
database file by a single page, so ingesting the trainer's metric points fails with SQLite's own
``SQLITE_FULL``, while updates in place (the job's failure) still fit.  Both use the real trainer,
the real scheduler and a real grid.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

from blueno import actions, datasets
from blueno.grid import parse_grid
from blueno.queue import JobQueue, JobState
from blueno.scheduler import Scheduler, Slot
from blueno.store import Store
from blueno.workspace import Workspace

FAULTY_TRAINER = [sys.executable, str(Path(__file__).with_name("faulty_trainer.py"))]


def grid_text(hidden_units: int, batch_size: int = 64) -> str:
    return f"""
name = "disk-full-{hidden_units}"
dataset = "digits"
max_failures = 1
[params]
epochs = 2
batch_size = {batch_size}
[models.mlp]
hidden_units = {hidden_units}
"""


def submit(workspace: Workspace, store: Store, text: str) -> int:
    resolve = actions.dataset_resolver(store, workspace)
    (job_id,) = JobQueue(store).submit(parse_grid(text, source="<disk-full>"), resolve=resolve).added
    return job_id


@contextlib.contextmanager
def database_growth_limited(extra_pages: int) -> Iterator[None]:
    """SQLite connections opened inside may grow the database by at most ``extra_pages`` pages.

    ``PRAGMA max_page_count`` makes SQLite fail a write that needs more with ``SQLITE_FULL``,
    "database or disk is full", exactly as it does on a full disk.  Connections opened before
    (the test's own) are not limited.
    """
    original = Store.connection

    def connection(self: Store):
        fresh = getattr(self._local, "conn", None) is None
        conn = original(self)
        if fresh:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {pages + extra_pages}")
        return conn

    Store.connection = connection  # type: ignore[method-assign]
    try:
        yield
    finally:
        Store.connection = original  # type: ignore[method-assign]


def run_queue(workspace: Workspace, trainer: list[str] | None = None, env: dict[str, str] | None = None) -> None:
    """One scheduler on one CPU slot until the queue is empty."""
    with mock.patch.dict(os.environ, env or {}):
        Scheduler(workspace, [Slot("cpu0", None)], trainer_command=trainer).run(until_empty=True)


@contextlib.contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[bool]:
    """Mount a ``size`` tmpfs over ``path``; yields False (and mounts nothing) where that is not permitted."""
    if os.geteuid() != 0:
        yield False
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path) -> Path:
    """Write zeros until the filesystem says ENOSPC; return the filler file."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while os.write(fd, b"\0" * chunk):
                    pass
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def consistent(store: Store) -> list[str]:
    """What is wrong with the database: corruption, dangling references, half-finished jobs."""
    problems = [row[0] for row in store.query("PRAGMA integrity_check") if row[0] != "ok"]
    problems += [f"foreign key {tuple(row)}" for row in store.query("PRAGMA foreign_key_check")]
    problems += [f"job {row['id']} left {row['state']}" for row in store.query(
        "SELECT id, state FROM jobs WHERE state IN ('running', 'queued')")]
    problems += [f"run {row['id']} claims a model" for row in store.query(
        "SELECT runs.id FROM runs JOIN jobs ON jobs.id = runs.job_id "
        "WHERE jobs.state = 'failed' AND runs.model_path IS NOT NULL")]
    return problems


@pytest.fixture
def digits_workspace(workspace: Workspace, store: Store) -> Workspace:
    datasets.make_demo(workspace, store)
    return workspace


@pytest.mark.slow
def test_that_a_full_disk_while_saving_the_model_fails_the_job_clearly_and_the_next_job_runs(
    digits_workspace: Workspace, store: Store
) -> None:
    workspace = digits_workspace
    with small_filesystem(workspace.models_dir, "1m") as real:
        failing = submit(workspace, store, grid_text(16))
        if real:
            filler = fill(workspace.models_dir)
            run_queue(workspace)
            filler.unlink()  # the user frees space
        else:
            run_queue(workspace, FAULTY_TRAINER, {"BLUENO_FAULT_MODEL_ENOSPC": "1"})
        queue = JobQueue(store)
        job = queue.get(failing)
        problems = consistent(store)
        following = submit(workspace, store, grid_text(8))
        run_queue(workspace)
        after = queue.get(following)
        model = workspace.run_dir(after.run_id) / "model.keras"
        model_saved = model.is_file()
    how = "a full 1 MiB tmpfs under models/" if real else "ENOSPC injected at the Keras save call"
    print(f"\nCASE 10 (model): {how}: the job {job.state}: {job.error!r}; database problems: {len(problems)}; "
          f"the next job {after.state}")
    assert job.state == JobState.FAILED and "No space left on device" in job.error
    assert problems == []
    assert after.state == JobState.SUCCEEDED and model_saved


@pytest.mark.slow
def test_that_a_full_disk_while_writing_metrics_fails_the_job_clearly_and_the_next_job_runs(
    digits_workspace: Workspace, store: Store
) -> None:
    workspace = digits_workspace
    failing = submit(workspace, store, grid_text(16, batch_size=8))  # 180 batch_loss points per epoch
    with database_growth_limited(0):  # the scheduler writes the trainer's metrics
        run_queue(workspace)
    queue = JobQueue(store)
    job = queue.get(failing)
    points = store.query_one("SELECT count(*) FROM metrics WHERE run_id = ?", (job.run_id,))[0]
    problems = consistent(store)
    following = submit(workspace, store, grid_text(8))
    run_queue(workspace)
    after = queue.get(following)
    after_points = store.query_one("SELECT count(*) FROM metrics WHERE run_id = ?", (after.run_id,))[0]
    print(f"\nCASE 10 (metrics): SQLITE_FULL when the scheduler writes the trainer's metrics: the job {job.state}: "
          f"{job.error!r}; {points} points of it stored; database problems: {len(problems)}; the next job "
          f"{after.state} with {after_points} points")
    assert job.state == JobState.FAILED and "database or disk is full" in job.error
    assert problems == []
    assert after.state == JobState.SUCCEEDED and after_points > 0
