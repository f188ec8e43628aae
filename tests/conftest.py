"""Fixtures shared by the whole suite: fresh workspaces, stores, queues, a ledger."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import standin_model  # noqa: E402,F401  (registers the stand-in model with the zoo)

from blueno.queue import JobQueue  # noqa: E402
from blueno.store import Store  # noqa: E402
from blueno.workspace import Workspace  # noqa: E402


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


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ledger.csv"
    monkeypatch.setenv("BLUENO_LEDGER", str(path))
    return path

