"""Fixtures of the fault-injection suite: workspaces that run the stand-in trainer, and the ledger."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from standin_model import STANDIN

from blueno import datasets
from blueno.workspace import Workspace

TESTS = Path(__file__).resolve().parent.parent


@pytest.fixture
def batch_workspace(workspace: Workspace, store, ledger: Path, monkeypatch) -> Workspace:
    """A workspace whose zoo knows the stand-in model, with the demo dataset, running the stand-in trainer.

    Set up as a user's would be, so that ``python main.py --batch`` subprocesses run stand-in grids.
    """
    workspace.zoo_dir.mkdir(exist_ok=True)
    shutil.copy(TESTS / "standin_model.py", workspace.zoo_dir / "standin_model.py")
    datasets.make_demo(workspace, store)
    monkeypatch.setenv("BLUENO_TRAINER", f"{sys.executable} {STANDIN}")
    return workspace
