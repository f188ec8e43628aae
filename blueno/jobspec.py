"""What the scheduler hands a trainer: its job spec, its files, its command line.

The scheduler prepares everything that needs the database before the trainer
starts (the dataset version present, verified and derived; where the last
attempt's checkpoint is) and writes it to ``logs/run-N.attempt-K.job.json``;
the trainer reads that file and nothing else of the workspace's state.  The
spec's fields are listed in ``docs/trainer-protocol.md``.

A grid may declare its own ``command`` instead of zoo models: its ``{name}``
placeholders are filled from the configuration's params (see
:func:`fill_command`) and it runs in the grid's folder (or ``workdir``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import string
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from blueno import BluenoError
from blueno.store import Store
from blueno.workspace import Workspace

# Names a command may use besides the configuration's params.
JOB_PLACEHOLDERS = ("job_id", "attempt", "run_id", "run_dir", "seed")


def attempt_files(workspace: Workspace, run_id: int, attempt: int) -> tuple[Path, Path]:
    """(job spec, events file) of one attempt, next to the run's log."""
    stem = workspace.logs_dir / f"run-{run_id}.attempt-{attempt}"
    return stem.with_name(stem.name + ".job.json"), stem.with_name(stem.name + ".events.jsonl")


def version_to_spec(workspace: Workspace, version: Any) -> dict[str, Any]:
    """A dataset version (``blueno.datasets.DatasetVersion``) as JSON: what loaders need.

    The manifest (one entry per file: large for image folders) is written once per
    manifest hash under ``logs/.manifests/`` and named, so a spec stays small and quick to write.
    """
    manifest_file = workspace.logs_dir / ".manifests" / f"{version.manifest_hash}.json"
    if not manifest_file.is_file():
        manifest_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = manifest_file.with_name(f".{manifest_file.name}.{os.getpid()}")
        tmp.write_text(json.dumps(version.manifest, separators=(",", ":")))
        os.replace(tmp, manifest_file)
    data = {f.name: getattr(version, f.name) for f in dataclasses.fields(version) if f.name != "manifest"}
    data["path"] = str(version.path)
    data["sample_shape"] = list(version.sample_shape)
    data["manifest_file"] = str(manifest_file)
    return data


def version_from_spec(data: dict[str, Any]) -> Any:
    """The ``DatasetVersion`` a spec carries, without the database."""
    from blueno.datasets import DatasetVersion

    fields = {k: v for k, v in data.items() if k != "manifest_file"}
    manifest = json.loads(Path(data["manifest_file"]).read_text())
    return DatasetVersion(**{**fields, "manifest": manifest, "path": Path(data["path"]),
                             "sample_shape": tuple(data["sample_shape"])})


def build(workspace: Workspace, store: Store, job: Any, run_id: int, slot: Any, resume_from: str | None
          ) -> dict[str, Any]:
    """The spec of a claimed attempt.

    Data that cannot be prepared (unknown, damaged) is named in ``dataset_error``
    for the trainer to report; any other failure (a bucket out of reach) raises.
    """
    config = job.config
    dataset, dataset_error = None, None
    if config.get("dataset"):
        from blueno import datasets

        try:
            version = datasets.prepare(workspace, store, config["dataset"], config.get("preprocessing") or [])
        except BluenoError as exc:  # the trainer reports it if it needs the data (a command may not)
            dataset_error = str(exc)
        else:
            dataset = version_to_spec(workspace, version)
    spec_path, events_path = attempt_files(workspace, run_id, job.attempt)
    params = config.get("params") or {}
    return {
        "job_id": job.id, "attempt": job.attempt, "run_id": run_id,
        "config": config, "seed": params.get("seed"),
        "workspace": str(workspace.root), "run_dir": str(workspace.run_dir(run_id)),
        "log_path": str(workspace.run_log(run_id)), "events": str(events_path), "job_spec": str(spec_path),
        "dataset": dataset, "dataset_error": dataset_error, "resume_from": resume_from,
        "slot": slot.name, "gpu": slot.gpu,
    }


def placeholders(command: Iterable[str]) -> list[str]:
    """The ``{name}`` fields of a command, in order (``{{`` and ``}}`` are literal braces)."""
    names = []
    for part in command:
        for _, name, spec, conversion in string.Formatter().parse(part):
            if name is None:
                continue
            if not name.isidentifier() or spec or conversion:
                raise ValueError(f"{{{name}}} in {part!r}: write a bare {{name}} of a parameter")
            names.append(name)
    return names


def fill_command(command: Sequence[str], values: dict[str, Any]) -> list[str]:
    """Each ``{name}`` replaced by the value's text (``True``/``False`` as ``true``/``false``)."""
    def text(value: Any) -> str:
        return str(value).lower() if isinstance(value, bool) else str(value)

    return [part.format_map({k: text(v) for k, v in values.items()}) for part in command]


def command_line(spec: dict[str, Any], trainer: Sequence[str], workspace: Workspace) -> tuple[list[str], Path]:
    """(argv, cwd) of an attempt: the grid's own command, or the zoo trainer with ``JOB ATTEMPT``."""
    config = spec["config"]
    if not config.get("command"):
        return [*trainer, str(spec["job_id"]), str(spec["attempt"])], workspace.root
    values = {**(config.get("params") or {}), **{k: spec.get(k) for k in JOB_PLACEHOLDERS}}
    try:
        argv = fill_command(config["command"], values)
    except KeyError as exc:
        raise BluenoError(f"the command {config['command']} names {{{exc.args[0]}}}, which is not a "
                          f"parameter of this configuration: add it under [params]") from None
    if argv and argv[0] in ("python", "python3"):  # the scheduler's own interpreter: Blueno is importable there
        argv[0] = sys.executable
    cwd = Path(config.get("workdir") or workspace.root)
    if not cwd.is_dir():
        raise BluenoError(f"the command's workdir {cwd} is not a folder: fix workdir in the grid")
    return argv, cwd


def slot_environment(base: dict[str, str], home: str, slot: str, gpu: str | None, package_parent: str
                     ) -> dict[str, str]:
    """What every trainer on a slot gets, before any job: this Blueno importable, GPUs ordered by bus.

    A warm spare is started with exactly this (:mod:`blueno.spare`) and gets
    :func:`job_environment` with its job.
    """
    env = dict(base)
    # This very Blueno first (installed or not); whatever PYTHONPATH the scheduler inherited after it.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    env.update({
        "BLUENO_HOME": home, "BLUENO_SLOT": slot,
        "CUDA_VISIBLE_DEVICES": gpu if gpu is not None else "",
        # CUDA numbers GPUs fastest-first by default; NVML (the GPU panel) and --gpus by PCI bus.
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def job_environment(spec: dict[str, Any]) -> dict[str, str]:
    """The variables one attempt adds to its slot's environment: where its spec and its events file are."""
    from blueno.events import EVENTS_ENV, JOB_ENV

    return {JOB_ENV: spec["job_spec"], EVENTS_ENV: spec["events"]}


def environment(base: dict[str, str], spec: dict[str, Any], package_parent: str) -> dict[str, str]:
    """The trainer's environment: its slot's (:func:`slot_environment`) and its job's (:func:`job_environment`)."""
    env = slot_environment(base, spec["workspace"], spec["slot"], spec["gpu"], package_parent)
    return {**env, **job_environment(spec)}
