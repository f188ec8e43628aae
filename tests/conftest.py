"""Fixtures shared by the whole suite: fresh workspaces, a stand-in model, grids."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from blueno.queue import JobQueue  # noqa: E402
from blueno.store import Store  # noqa: E402
from blueno.workspace import Workspace  # noqa: E402
from blueno.zoo import base as zoo_base  # noqa: E402

TESTS = Path(__file__).resolve().parent
STANDIN = TESTS / "standin_trainer.py"
STANDIN_COMMAND = [sys.executable, str(STANDIN)]

# The stand-in trainer's knobs, declared like any model's hyperparameters so
# grids of stand-in jobs go through the real grid parser and queue.
zoo_base.register(zoo_base.ModelSpec(
    name="standin",
    description="test double: sleeps, checkpoints, records to a ledger",
    hyperparams=(
        zoo_base.Hyperparam("duration", float, 0.0, low=0.0, high=3600.0),
        zoo_base.Hyperparam("steps", int, 1, low=1, high=100000),
        zoo_base.Hyperparam("index", int, 0, low=0, high=10**9),
        zoo_base.Hyperparam("exit_code", int, 0, low=0, high=255),
        zoo_base.Hyperparam("ignore_sigterm", bool, False),
        zoo_base.Hyperparam("grandchildren", int, 0, low=0, high=10),
    ),
    build=lambda shape, n_classes, params: None,
))


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws").ensure()


@pytest.fixture
def store(workspace: Workspace):
    with workspace.open_store() as store:
        yield store


@pytest.fixture
def queue(store: Store) -> JobQueue:
    return JobQueue(store)


def standin_grid(count: int, name: str = "standin-grid", **params: object):
    """A real grid of ``count`` stand-in jobs (``index`` 0..count-1) with fixed ``params``."""
    from blueno.grid import parse_grid

    lines = [f"{key} = {_toml(value)}" for key, value in params.items()]
    text = textwrap.dedent(f"""
        name = "{name}"
        dataset = "none@0"
        [models.standin]
        index = {list(range(count))}
    """) + "\n".join(lines) + "\n"
    return parse_grid(text, source=f"<{name}>")


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ledger.csv"
    monkeypatch.setenv("BLUENO_LEDGER", str(path))
    return path
