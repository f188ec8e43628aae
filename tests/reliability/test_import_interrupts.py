"""Imports interrupted while they wait: SIGTERM and Ctrl-C clean up, a race never deletes the other's version.

Real processes throughout: another process holds the database's write lock (``BEGIN IMMEDIATE``), so
each ``blueno data import`` child copies and publishes its folder, then waits to write its row; it says
what it waits for (and who holds the lock), and the test interrupts it there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_contention import hold_write_lock
from test_datasets import write_npy_folder

from blueno import datasets
from blueno.datasets.importing import sweep_scratch
from blueno.store import Store
from blueno.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]


class Child:
    """``blueno data import`` in a child process, its output collected as it comes."""

    def __init__(self, workspace: Workspace, source: Path) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "blueno", "--home", str(workspace.root), "data", "import", str(source),
             "--name", "race"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if text in line:
                    return line
            if self.proc.poll() is not None and not any(text in line for line in self.lines):
                break
            time.sleep(0.05)
        pytest.fail(f"{text!r} never came; output: {''.join(self.lines)}")

    def interrupt(self, signum: int) -> tuple[int, float]:
        started = time.monotonic()
        self.proc.send_signal(signum)
        code = self.proc.wait(10)
        return code, time.monotonic() - started


def data_tree(workspace: Workspace) -> list[str]:
    return sorted(str(p.relative_to(workspace.data_dir)) for p in workspace.data_dir.rglob("*")
                  if ".verified" not in p.parts)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_import_waiting_on_a_locked_database_says_who_holds_it_and_stops_at_once(workspace, tmp_path, signum):
    Store(workspace.db_path).close()
    source = write_npy_folder(tmp_path / "src")
    holder = hold_write_lock(workspace.db_path, 60)
    try:
        child = Child(workspace, source)
        notice = child.wait_for("waiting for the workspace database")
        assert f"process {holder.pid}" in notice  # who holds the lock, read from /proc/locks
        assert any(p.name == "race" for p in workspace.data_dir.iterdir())  # it had published its folder
        code, seconds = child.interrupt(signum)
    finally:
        holder.kill()
        holder.wait()
    assert code == 130, "".join(child.lines)
    assert seconds < 2.0, f"took {seconds:.1f} s to stop"
    assert "Traceback" not in "".join(child.lines)
    assert data_tree(workspace) == []  # its folder taken back, its scratch removed


def test_the_interrupted_one_of_two_racing_imports_never_deletes_the_version_the_other_records(workspace, tmp_path):
    """Both orders: the reuser interrupted leaves the folder; the creator interrupted, the other re-publishes."""
    Store(workspace.db_path).close()
    source = write_npy_folder(tmp_path / "src")
    for interrupted in ("second", "first"):
        holder = hold_write_lock(workspace.db_path, 60)
        try:
            first = Child(workspace, source)
            first.wait_for("waiting for the workspace database")
            second = Child(workspace, source)
            second.wait_for("waiting for the workspace database")
            victim, survivor = (second, first) if interrupted == "second" else (first, second)
            assert victim.interrupt(signal.SIGTERM)[0] == 130
        finally:
            holder.kill()
            holder.wait()
        assert survivor.proc.wait(30) == 0, "".join(survivor.lines)
        with Store(workspace.db_path) as store:
            (version,) = datasets.versions(store, workspace, "race")
            assert datasets.verify(workspace, version).ok, f"{interrupted} interrupted: files gone"
            datasets.remove(store, workspace, version.ref)
        assert not [p for p in workspace.data_dir.iterdir() if p.name.startswith(".tmp-")]


def test_scratch_folders_of_dead_processes_are_swept_and_live_ones_kept(workspace):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = workspace.data_dir / f".tmp-import-{dead.pid}-abcdef123456"
    (stale / "version").mkdir(parents=True)
    (stale / "version" / "x.npy").write_bytes(b"x")
    old_style = workspace.data_dir / ".tmp-import-0123456789ab"  # before names carried a pid: after an hour
    old_style.mkdir()
    recent_old_style = workspace.data_dir / ".tmp-derive-abcdefabcdef"
    recent_old_style.mkdir()
    os.utime(old_style, (time.time() - 7200, time.time() - 7200))
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live = workspace.data_dir / f".tmp-import-{alive.pid}-abcdef123456"
        live.mkdir()
        assert sorted(sweep_scratch(workspace)) == sorted([stale.name, old_style.name])
        assert live.exists() and recent_old_style.exists() and not stale.exists() and not old_style.exists()
        (stale / "x").mkdir(parents=True)
        Workspace(workspace.root).ensure()  # every start-up sweeps
        assert not stale.exists()
    finally:
        alive.kill()
        alive.wait()
