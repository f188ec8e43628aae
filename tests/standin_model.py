"""The stand-in trainer's model declaration, grids of stand-in jobs, and small test helpers.

Its knobs are declared like any model's hyperparameters, so grids of
stand-in jobs go through the real grid parser and queue.  Copy this file into
a workspace's ``zoo/`` folder to make a ``blueno`` subprocess know the model.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from blueno.zoo import base as zoo_base

STANDIN = Path(__file__).resolve().with_name("standin_trainer.py")
STANDIN_COMMAND = [sys.executable, str(STANDIN)]

if "standin" not in zoo_base.all_models():
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
            zoo_base.Hyperparam("message", str, ""),  # printed (as a crashing trainer's last line) before exit_code
        ),
        build=lambda shape, n_classes, params: None,
    ))


def standin_grid_text(count: int, name: str = "standin-grid", dataset: str = "none@0", **params: object) -> str:
    """TOML of a grid of ``count`` stand-in jobs (``index`` 0..count-1) with fixed ``params``."""
    lines = [f"{key} = {_toml(value)}" for key, value in params.items()]
    return textwrap.dedent(f"""
        name = "{name}"
        dataset = "{dataset}"
        [models.standin]
        index = {list(range(count))}
    """) + "\n".join(lines) + "\n"


def standin_grid(count: int, name: str = "standin-grid", **params: object):
    from blueno.grid import parse_grid

    return parse_grid(standin_grid_text(count, name, **params), source=f"<{name}>")


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def db_content(path: Path) -> list[str]:
    """Every row of every table, as SQL: "the database is unchanged" means this is equal."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()
