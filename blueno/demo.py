"""The demo: the digits dataset and the demo grid, queued in one call (the app's "Run the demo").

``make demo`` and ``make run`` use the same dataset and grid file
(``resources/examples/demo.toml``): 8 small trainings that take a few minutes
on two CPU cores, enough for a newcomer to watch curves grow.
"""

from __future__ import annotations

from pathlib import Path

from blueno import actions, datasets, resource
from blueno.grid import load_grid
from blueno.grid_data import check_data_fits
from blueno.queue import JobQueue, SubmitResult
from blueno.store import Store
from blueno.workspace import Workspace

DEMO_GRID = Path(str(resource("examples", "demo.toml")))  # package data: there in a wheel too


def queue_demo(workspace: Workspace, store: Store, grid_path: Path = DEMO_GRID) -> SubmitResult:
    """Create the digits dataset when missing and queue the demo grid (again: only what is not done yet)."""
    datasets.make_demo(workspace, store)
    grid = load_grid(grid_path, workspace=workspace)
    check_data_fits(store, workspace, grid, source=str(grid_path))
    return JobQueue(store).submit(grid, resolve=actions.dataset_resolver(store, workspace))


def workspace_state(store: Store) -> dict[str, int]:
    """How far a newcomer is: datasets, jobs and runs in this workspace (the welcome banner's steps)."""
    row = store.query(
        "SELECT (SELECT count(*) FROM datasets) AS datasets, (SELECT count(*) FROM jobs) AS jobs, "
        "(SELECT count(*) FROM runs) AS runs"
    )[0]
    return {"datasets": int(row["datasets"]), "jobs": int(row["jobs"]), "runs": int(row["runs"])}
