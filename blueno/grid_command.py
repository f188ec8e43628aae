"""Grids that run the user's own command as the trainer (``command = ["python", "train.py", ...]``).

Such a grid has no ``[models]``: its ``[params]`` are free-form (a value, or a
list of values to sweep), every combination is one job, and the command's
``{name}`` placeholders are filled from the job's params (or ``job_id``,
``attempt``, ``run_id``, ``run_dir``, ``seed``).  The command runs in the grid
file's folder, or in ``workdir`` (relative to that folder).  See
``docs/own-script.md`` and ``docs/trainer-protocol.md``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blueno.jobspec import JOB_PLACEHOLDERS, placeholders

if TYPE_CHECKING:
    from blueno.grid import Grid, _Parser

MODEL = "command"  # the model name jobs of a command grid carry
_SCALARS = (str, int, float, bool)


def command_grid(parser: _Parser, doc: Mapping[str, Any]) -> Grid:
    """Validate and expand a grid whose trainer is ``command``."""
    from blueno.grid import DEFAULT_MAX_FAILURES, MAX_CONFIGS, Grid, JobConfig, ParamSpec

    if "models" in doc:
        parser.fail("models", "a grid with its own command trains no zoo model",
                    "remove [models], or remove command to train zoo models")
    command = doc["command"]
    if (not isinstance(command, list) or not command
            or not all(isinstance(part, str) and part for part in command)):
        parser.fail("command", f"{command!r} is not a command line",
                    'write a list of words: command = ["python", "train.py", "--lr", "{learning_rate}"]')
    base = parser.path.parent if parser.path else Path.cwd()
    workdir = doc.get("workdir", ".")
    if not isinstance(workdir, str):
        parser.fail("workdir", f"{workdir!r} is not a folder", 'write it in quotes: workdir = "src"')
    folder = (base / workdir).resolve()
    if not folder.is_dir():
        parser.fail("workdir", f"{folder} is not a folder", "name the folder the command runs in")
    name = parser.text_value(doc, "name", parser.path.stem if parser.path else "grid", 'name = "my-sweep"')
    description = parser.text_value(doc, "description", "", 'description = "what this sweep tests"')
    datasets = parser.datasets(doc) if "dataset" in doc else ("",)  # a script may read no Blueno dataset
    max_failures = parser.integer(doc, "max_failures", DEFAULT_MAX_FAILURES, 1, 100)
    priority = parser.integer(doc, "priority", 0, -1_000_000, 1_000_000)
    splits = parser.splits(parser.table(doc, "split", ("validation", "test", "seed")))
    search = parser.search(parser.table(doc, "search", ("mode", "samples", "seed")))
    if search.mode != "grid":
        parser.fail("search.mode", "random search needs the typed parameters of a zoo model",
                    'use mode = "grid" (every combination of the listed values)')
    chains = parser.chains(doc.get("preprocessing"))
    specs: dict[str, ParamSpec] = {}
    for key, raw in parser.table(doc, "params").items():
        values = raw if isinstance(raw, list) else [raw]
        if not values or not all(isinstance(v, _SCALARS) for v in values):
            parser.fail(f"params.{key}", f"{raw!r} is not a value or a list of values",
                        f'write {key} = 0.01 or {key} = [0.01, 0.001] (text, numbers or true/false)')
        specs[key] = ParamSpec(key, "list" if isinstance(raw, list) else "value", raw)
    try:
        used = placeholders(command)
    except ValueError as exc:
        parser.fail("command", str(exc), "placeholders are {name} of a [params] entry; {{ and }} are braces")
    for field in used:
        if field not in specs and field not in JOB_PLACEHOLDERS:
            parser.fail("command", f"{{{field}}} names no parameter",
                        f"add {field} under [params], or use one of {', '.join(JOB_PLACEHOLDERS)}")
    names = list(specs)
    axes = [spec.value if spec.form == "list" else [spec.value] for spec in specs.values()]
    total = len(chains) * len(datasets) * len(splits)
    for axis in axes:
        total *= len(axis)
    if total > MAX_CONFIGS:
        parser.fail("params", f"the grid expands to {total:,} configurations, more than {MAX_CONFIGS:,}",
                    "narrow the lists")
    configs = [
        JobConfig(MODEL, dict(zip(names, combo, strict=True)), dataset, chain, split,
                  command=tuple(command), workdir=str(folder))
        for dataset in datasets for split in splits for chain in chains for combo in itertools.product(*axes)
    ]
    return Grid(
        name=name, path=parser.path, source=parser.source, text=parser.text, description=description,
        dataset=datasets[0], max_failures=max_failures, priority=priority, split=splits[0], search=search,
        models=(MODEL,), params=specs, model_params={MODEL: {}}, preprocessing=chains, configs=configs,
        command=tuple(command), workdir=workdir,
        datasets=datasets if "dataset" in doc else (), splits=splits,
    )
