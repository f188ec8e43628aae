"""A GUI opened while ``main.py --batch`` runs on the workspace attaches instead of scheduling."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from standin_model import STANDIN, standin_grid_text

from blueno import datasets

ROOT = Path(__file__).resolve().parents[2]
STANDIN_MODEL = ROOT / "tests" / "standin_model.py"


@pytest.mark.slow
def test_that_the_gui_shows_a_batch_runs_jobs_without_starting_its_own_scheduler(
    qtbot, workspace, store, qsettings, tmp_path, monkeypatch
) -> None:
    workspace.zoo_dir.mkdir(exist_ok=True)
    shutil.copy(STANDIN_MODEL, workspace.zoo_dir / "standin_model.py")
    datasets.make_demo(workspace, store)
    grid = tmp_path / "grid.toml"
    grid.write_text(standin_grid_text(4, dataset="digits", duration=1.0, steps=4))
    monkeypatch.setenv("BLUENO_TRAINER", f"{sys.executable} {STANDIN}")
    batch = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "main.py"),
            "--batch",
            str(grid),
            "--home",
            str(workspace.root),
            "--slots",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        from gui.main_window import MainWindow

        window = MainWindow(workspace, store, qsettings)
        qtbot.addWidget(window)
        window.show()
        qtbot.waitUntil(lambda: window.scheduler.status.attached, timeout=20_000)
        assert window.scheduler.status.owner_pid == batch.pid
        assert not window.queue_view.actions_by_name["start"].isEnabled()
        assert "attached" in window.queue_view.scheduler_label.text()
        model = window.queue_view.model
        qtbot.waitUntil(lambda: any(r["state"] == "running" for r in model.rows()), timeout=20_000)
        qtbot.waitUntil(
            lambda: model.rowCount() == 4 and all(r["state"] == "succeeded" for r in model.rows()),
            timeout=60_000,
        )
        assert batch.wait(timeout=30) == 0
        qtbot.waitUntil(lambda: window.scheduler.status.state == "stopped", timeout=10_000)
        window.shutdown()
    finally:
        if batch.poll() is None:
            batch.kill()
        batch.wait()
