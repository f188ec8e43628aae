"""``blueno grid show|validate FILE``: what a grid expands to, without queueing or running anything.

Neither command writes to the workspace: ``show`` only reads the database, when
there is one, to name the dataset version the hashes are computed against.
"""

from __future__ import annotations

import argparse
import sqlite3

from blueno import BluenoError
from blueno.cli.common import format_value, print_json, print_table
from blueno.grid import Grid, load_grid
from blueno.workspace import Workspace


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("grid", help="show or validate a grid file without running it")
    sub = parser.add_subparsers(dest="grid_command", metavar="ACTION", required=True)

    show = sub.add_parser("show", help="print every configuration the grid expands to, and the count")
    show.add_argument("file", metavar="FILE", help="grid file (TOML); see docs/grid.md")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=cmd_show)

    validate = sub.add_parser("validate", help="check a grid file: exit 0 when valid, 2 naming the problem")
    validate.add_argument("file", metavar="FILE", help="grid file (TOML); see docs/grid.md")
    validate.set_defaults(func=cmd_validate)


def dataset_ref(workspace: Workspace, dataset: str) -> str | None:
    """``name@version`` of the grid's dataset in this workspace, read-only; None when it is not there."""
    if not workspace.db_path.is_file():
        return None
    from blueno.actions import resolve_dataset
    from blueno.store import Store

    with Store(workspace.db_path, migrate=False) as store:
        try:
            return resolve_dataset(store, workspace, dataset)
        except (BluenoError, sqlite3.Error):
            return None


def cmd_validate(workspace: Workspace, args: argparse.Namespace) -> int:
    grid = load_grid(args.file, workspace=workspace)
    print(f"{args.file}: valid; {_summary(grid)}")
    for note in grid.notes:
        print(f"note: {note}")
    return 0


def cmd_show(workspace: Workspace, args: argparse.Namespace) -> int:
    grid = load_grid(args.file, workspace=workspace)
    ref = dataset_ref(workspace, grid.dataset)
    if args.json:
        print_json({
            "name": grid.name, "source": grid.source, "description": grid.description,
            "dataset": grid.dataset, "dataset_ref": ref, "search": grid.search.as_dict(),
            "count": grid.count, "varying": grid.varying_params(),
            "configs": [
                {"hash": config.config_hash(ref) if ref else None, "config": config.to_json(ref)}
                for config in grid.configs
            ],
        })
        return 0
    print(f"{grid.name} ({args.file}): {_summary(grid)}")
    for note in grid.notes:
        print(f"note: {note}")
    if grid.description:
        print(grid.description)
    if ref is None:
        print(f"dataset {grid.dataset!r} is not in this workspace yet: hashes appear once it is "
              "(blueno data import, or blueno data demo for digits)")
    varying = grid.varying_params()
    chains = len(grid.preprocessing) > 1
    headers = ["#", "model", *(["preprocessing"] if chains else []), *varying, *(["hash"] if ref else [])]
    rows = [
        [
            number, config.model,
            *([" > ".join(step["transform"] for step in config.preprocessing) or "none"] if chains else []),
            *(config.params.get(name) for name in varying),
            *([config.config_hash(ref)] if ref else []),
        ]
        for number, config in enumerate(grid.configs, 1)
    ]
    print()
    print_table(rows, headers)
    fixed = _fixed(grid, set(varying))
    if fixed:
        print(f"\nset in the grid, same in every run: {fixed}")
    print(f"\n{grid.count} configurations")
    return 0


def _summary(grid: Grid) -> str:
    search = "grid search" if grid.search.mode == "grid" else f"random search (seed {grid.search.seed})"
    return (f"{grid.count} configurations, {search} over {', '.join(grid.models)} "
            f"on {grid.dataset}")


def _fixed(grid: Grid, varying: set[str]) -> str:
    """The parameters the grid sets to one value, ``name=value`` (model-only ones say which model)."""
    first = {config.model: config for config in reversed(grid.configs)}
    shared = grid.configs[0].params
    parts = [f"{name}={format_value(shared[name])}" for name in grid.params if name not in varying]
    for model, specs in grid.model_params.items():
        if model in first:
            parts += [f"{name}={format_value(first[model].params[name])} ({model})"
                      for name in specs if name not in varying]
    return ", ".join(parts)
