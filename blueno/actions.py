"""The user's actions on the queue: one function each, called by ``blueno queue …`` and the GUI.

A command and a button that do the same thing call the same function here,
so they cannot drift apart (cancel settling jobs whose scheduler is gone,
priority changed in one transaction, the grid's dataset resolved the same way).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from os import PathLike
from typing import TYPE_CHECKING

from blueno.queue import JobQueue, JobState, SubmitResult
from blueno.store import Store
from blueno.workspace import Workspace

if TYPE_CHECKING:
    from blueno.grid import Grid

Outcome = dict[str, list[int]]

# Jobs that may still change (a view re-reads them); the states each action applies to.
OPEN_STATES = frozenset({JobState.QUEUED, JobState.HELD, JobState.RUNNING})
APPLIES_TO: dict[str, frozenset[JobState]] = {
    "cancel": OPEN_STATES,
    "retry": frozenset({JobState.FAILED, JobState.CANCELLED}),
    "hold": frozenset({JobState.QUEUED}),
    "release": frozenset({JobState.HELD}),
    "priority": frozenset(JobState),
}


def resolve_dataset(store: Store, workspace: Workspace, ref: str) -> str:
    """``name`` or ``name@prefix`` → the full ``name@version`` a job records (newest version by default)."""
    from blueno import datasets

    return datasets.resolve(store, workspace, ref).ref


def dataset_resolver(store: Store, workspace: Workspace) -> Callable[[str], str]:
    """:func:`resolve_dataset` bound to a store and workspace, the form :meth:`JobQueue.submit` takes."""
    return lambda ref: resolve_dataset(store, workspace, ref)


def submit_grid(workspace: Workspace, store: Store, grid: Grid | str | PathLike[str]) -> tuple[Grid, SubmitResult]:
    """Validate (when given a file) and queue a grid: ``batch``, ``queue add`` and the grid builder."""
    from blueno.grid_data import check_data_fits

    source = None
    if isinstance(grid, str | PathLike):
        from blueno.grid import load_grid

        source = str(grid)
        grid = load_grid(grid, workspace=workspace)  # knows the workspace's own models and transforms
    check_data_fits(store, workspace, grid, source=source)  # cnn3d on 8x8 images: refused now, not later
    return grid, JobQueue(store).submit(grid, resolve=dataset_resolver(store, workspace))


def cancel_jobs(workspace: Workspace, store: Store, job_ids: Sequence[int]) -> Outcome:
    """Cancel jobs; running ones whose scheduler is gone are settled here and now (no one else would)."""
    from blueno.scheduler import recover_if_idle

    result = JobQueue(store).cancel(job_ids)
    if result.get("stopping"):
        report = recover_if_idle(workspace, store)
        if report is not None:  # no scheduler alive: these are settled, not waiting for one
            settled = set(report.cancelled)
            result["cancelled"] += [i for i in result["stopping"] if i in settled]
            result["stopping"] = [i for i in result["stopping"] if i not in settled]
    return result


def retry_jobs(workspace: Workspace, store: Store, job_ids: Sequence[int]) -> Outcome:
    """Queue failed or cancelled jobs again with a fresh failure budget."""
    return JobQueue(store).retry(job_ids)


def hold_jobs(workspace: Workspace, store: Store, job_ids: Sequence[int]) -> Outcome:
    """Keep queued jobs from starting."""
    return JobQueue(store).hold(job_ids)


def release_jobs(workspace: Workspace, store: Store, job_ids: Sequence[int]) -> Outcome:
    """Let held jobs start again."""
    return JobQueue(store).release(job_ids)


def set_priority(store: Store, job_ids: Sequence[int], priority: int) -> None:
    """Give jobs this priority (higher runs first)."""
    JobQueue(store).prioritize(job_ids, priority)


def shift_priority(store: Store, job_ids: Sequence[int], step: int) -> None:
    """Raise (step > 0) or lower each job's priority by ``step``, all in one transaction."""
    JobQueue(store).shift_priority(job_ids, step)


# The transitions ``blueno queue ACTION ID…`` and the queue view's buttons share, by name.
TRANSITIONS: dict[str, Callable[[Workspace, Store, Sequence[int]], Outcome]] = {
    "cancel": cancel_jobs,
    "retry": retry_jobs,
    "hold": hold_jobs,
    "release": release_jobs,
}
