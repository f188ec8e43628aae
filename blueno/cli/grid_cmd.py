"""``blueno grid show|validate FILE``: what a grid expands to, without queueing or running anything.

Neither command writes to the workspace: ``show`` only reads the database, when
there is one, to name the dataset version the hashes are computed against.
"""

from __future__ import annotations

import argparse
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

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
    _check_against_workspace(workspace, grid)
    print(f"{args.file}: valid; {_summary(grid)}")
    for note in grid.notes:
        print(f"note: {note}")
    return 0


def _check_against_workspace(workspace: Workspace, grid: Grid) -> None:
    """Refuse models the workspace's datasets cannot feed (read-only; datasets not here are checked later)."""
    if not workspace.db_path.is_file():
        return
    from blueno import datasets
    from blueno.grid import check_data
    from blueno.store import Store

    with Store(workspace.db_path, migrate=False) as store:
        def describe(ref: str) -> tuple[tuple[int, ...], int] | None:
            try:
                version = datasets.resolve(store, workspace, ref)
            except (BluenoError, sqlite3.Error):
                return None
            return tuple(version.sample_shape), len(version.class_names)

        check_data(grid, describe)


def chain_text(chain: Sequence[Mapping[str, Any]]) -> str:
    """A preprocessing chain on one line: ``clip(low=0, high=1) > normalize``."""
    def step(s: Mapping[str, Any]) -> str:
        params = ", ".join(f"{k}={format_value(v)}" for k, v in s.get("params", {}).items())
        return f"{s['transform']}({params})" if params else str(s["transform"])

    return " > ".join(step(s) for s in chain) or "none"


def axes(grid: Grid) -> dict[str, list[Any]]:
    """Every axis of the grid with its values, in the order the grid expands them."""
    found: dict[str, list[Any]] = {"dataset": list(grid.datasets or (grid.dataset,))}
    splits = grid.splits or (grid.split,)
    found["split.validation"] = list(dict.fromkeys(s.validation for s in splits))
    found["split.test"] = list(dict.fromkeys(s.test for s in splits))
    found["model"] = list(grid.models)
    found["preprocessing"] = [chain_text(c) for c in grid.preprocessing]
    for name in grid.varying_params():
        found[name] = list(dict.fromkeys(format_value(c.params.get(name)) for c in grid.configs
                                         if name in c.params))
    return found


def cmd_show(workspace: Workspace, args: argparse.Namespace) -> int:
    grid = load_grid(args.file, workspace=workspace)
    refs = {name: dataset_ref(workspace, name) for name in grid.datasets or (grid.dataset,)}
    ref = refs[grid.dataset]
    if args.json:
        print_json({
            "name": grid.name, "source": grid.source, "description": grid.description,
            "dataset": grid.dataset, "dataset_ref": ref, "datasets": refs, "search": grid.search.as_dict(),
            "count": grid.count, "varying": grid.varying_params(), "axes": axes(grid),
            "configs": [
                {"hash": config.config_hash(refs[config.dataset]) if refs[config.dataset] else None,
                 "config": config.to_json(refs[config.dataset])}
                for config in grid.configs
            ],
        })
        return 0
    print(f"{grid.name} ({args.file}): {_summary(grid)}")
    for note in grid.notes:
        print(f"note: {note}")
    if grid.description:
        print(grid.description)
    missing = [name for name, found in refs.items() if found is None]
    if missing:
        print(f"dataset {', '.join(map(repr, missing))} {'is' if len(missing) == 1 else 'are'} not in this "
              "workspace yet: hashes appear once it is (blueno data import, or blueno data demo for digits)")
    print("\naxes:")
    for name, values in axes(grid).items():
        print(f"  {name}: {' | '.join(map(str, values))}")
    varying = grid.varying_params()
    columns = [(name, getter) for name, getter in (
        ("dataset", lambda c: c.dataset), ("validation", lambda c: c.split.validation),
        ("test", lambda c: c.split.test), ("preprocessing", lambda c: chain_text(c.preprocessing)),
    ) if len({str(getter(c)) for c in grid.configs}) > 1]
    has_hash = all(refs.values())
    headers = ["#", "model", *(name for name, _ in columns), *varying, *(["hash"] if has_hash else [])]
    rows = [
        [
            number, config.model, *(getter(config) for _, getter in columns),
            *(config.params.get(name) for name in varying),
            *([config.config_hash(str(refs[config.dataset]))] if has_hash else []),
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
            f"on {', '.join(grid.datasets or (grid.dataset,))}")


def _fixed(grid: Grid, varying: set[str]) -> str:
    """The parameters the grid sets to one value, ``name=value`` (model-only ones say which model)."""
    first = {config.model: config for config in reversed(grid.configs)}
    shared = grid.configs[0].params
    # A knob written at its default is left out of the configurations: show the value as written.
    parts = [f"{name}={format_value(shared.get(name, spec.value))}"
             for name, spec in grid.params.items() if name not in varying]
    for model, specs in grid.model_params.items():
        if model in first:
            parts += [f"{name}={format_value(first[model].params.get(name, spec.value))} ({model})"
                      for name, spec in specs.items() if name not in varying]
    return ", ".join(parts)
