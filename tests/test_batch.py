"""``python main.py --batch GRID`` as a user runs it: a real process, killed and restarted."""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from standin_model import STANDIN, db_content, standin_grid_text

from blueno import datasets
from blueno.queue import JobQueue, JobState
from blueno.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def batch_workspace(workspace: Workspace, store, ledger: Path, monkeypatch) -> Workspace:
    """A workspace whose zoo knows the stand-in model, with the demo dataset, running the stand-in trainer."""
    workspace.zoo_dir.mkdir(exist_ok=True)
    shutil.copy(Path(__file__).with_name("standin_model.py"), workspace.zoo_dir / "standin_model.py")
    datasets.make_demo(workspace, store)
    monkeypatch.setenv("BLUENO_TRAINER", f"{sys.executable} {STANDIN}")
    return workspace


def start_batch(workspace: Workspace, grid: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "--batch", str(grid), "--home", str(workspace.root), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def test_that_batch_runs_a_grid_to_the_end_and_prints_progress_and_best_runs(batch_workspace, tmp_path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text(standin_grid_text(4, dataset="digits", duration=0.2))
    batch = start_batch(batch_workspace, grid, "--slots", "2", "--no-sync")
    out, _ = batch.communicate(timeout=120)
    assert batch.returncode == 0, out
    assert "4 configurations (4 new)" in out
    assert "4/4" in out and "4 succeeded" in out
    # Submitting the same grid again runs nothing: every configuration already succeeded.
    again = start_batch(batch_workspace, grid, "--slots", "2", "--no-sync")
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 0 and "4 already done or queued" in out


def test_that_a_failed_job_makes_batch_exit_non_zero(batch_workspace, tmp_path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text(standin_grid_text(2, dataset="digits", exit_code=2))
    batch = start_batch(batch_workspace, grid, "--no-sync")
    out, _ = batch.communicate(timeout=120)
    assert batch.returncode == 1, out
    assert "2 failed" in out


def test_that_a_malformed_grid_exits_2_naming_the_file_and_leaves_the_database_unchanged(
    batch_workspace, tmp_path
) -> None:
    before = db_content(batch_workspace.db_path)
    grid = tmp_path / "bad.toml"
    grid.write_text(standin_grid_text(2, dataset="digits", duration=-1.0))
    batch = start_batch(batch_workspace, grid, "--no-sync")
    out, _ = batch.communicate(timeout=60)
    assert batch.returncode == 2
    assert "bad.toml" in out and "duration" in out
    assert db_content(batch_workspace.db_path) == before


@pytest.mark.slow
def test_that_sigkill_of_batch_mid_grid_then_restart_loses_no_job_and_runs_none_twice(
    batch_workspace, tmp_path, ledger
) -> None:
    jobs = 30
    grid = tmp_path / "grid.toml"
    grid.write_text(standin_grid_text(jobs, dataset="digits", duration=0.6, steps=3))
    with batch_workspace.open_store() as store:
        queue = JobQueue(store)
        for kill_after in (4, 12, 20):
            batch = start_batch(batch_workspace, grid, "--slots", "2", "--no-sync")
            deadline = time.monotonic() + 120
            while queue.counts()[JobState.SUCCEEDED] < kill_after and time.monotonic() < deadline:
                time.sleep(0.05)
            os.kill(batch.pid, signal.SIGKILL)
            batch.communicate(timeout=30)
        batch = start_batch(batch_workspace, grid, "--slots", "2", "--no-sync")
        out, _ = batch.communicate(timeout=300)
        assert batch.returncode == 0, out
        counts = queue.counts()
        lines = [line.split(",") for line in ledger.read_text().splitlines()]
        completions = collections.Counter(int(job) for job, *_ in lines)
    print(f"3 SIGKILLs of --batch: {counts[JobState.SUCCEEDED]}/{jobs} succeeded, "
          f"{sum(1 for n in completions.values() if n > 1)} completed twice")
    assert counts[JobState.SUCCEEDED] == jobs
    assert len(completions) == jobs and set(completions.values()) == {1}


def test_that_batch_sends_every_run_to_elasticsearch_before_it_exits(batch_workspace, tmp_path) -> None:
    from es_server import EsTestServer

    server = EsTestServer().up()
    try:
        (batch_workspace.root / "settings.toml").write_text(
            f'[elasticsearch]\nurls = ["{server.url}"]\nindex_prefix = "lab"\n'
        )
        grid = tmp_path / "grid.toml"
        grid.write_text(standin_grid_text(3, dataset="digits", duration=0.1))
        batch = start_batch(batch_workspace, grid, "--slots", "2")
        out, _ = batch.communicate(timeout=120)
        assert batch.returncode == 0, out
        assert "Elasticsearch: in sync" in out
        runs = server.docs("lab-runs")
        assert len(runs) == 3
        assert sorted(doc["state"] for doc in runs.values()) == ["succeeded"] * 3
    finally:
        server.down()


def test_that_a_terminal_gets_a_rich_bar_and_a_line_per_slot(store) -> None:
    import io
    import re

    from blueno.cli.batch_cmd import Display

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    display = Display(store, [], ["cpu0", "cpu1"], out)
    display.draw()
    display.note("job 1 (run 1) started on cpu0, attempt 1")
    display.finish()
    text = out.getvalue()
    assert "━" in text  # rich's bar, not the plain [###...] of a piped log
    assert "cpu0: idle" in text and "cpu1: idle" in text and "started on cpu0" in text
    last = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text.rstrip().splitlines()[-1])  # the cursor moves that erase
    assert last.startswith("[") and "0/0" in last  # the plain summary stays after the live lines go
def test_that_batch_prints_each_failure_on_one_line_without_colour_codes_and_ends_with_the_summary(
    batch_workspace, tmp_path
) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text("max_failures = 1\n" + standin_grid_text(2, dataset="digits", exit_code=1)
                    + 'message = "\\u001b[31mValueError: the scan is empty\\u001b[0m"\n')
    batch = start_batch(batch_workspace, grid, "--no-sync")
    out, _ = batch.communicate(timeout=120)
    assert batch.returncode == 1, out
    lines = out.splitlines()
    failed = [line for line in lines if ": failed: " in line]
    assert len(failed) == 2, out
    assert all("ValueError: the scan is empty (attempt 1, giving up)" in line and "\x1b" not in line
               for line in failed), failed
    assert "nothing new to run" not in out
    last_job_line = max(i for i, line in enumerate(lines) if line.startswith("job "))
    summaries = [i for i, line in enumerate(lines) if line.startswith("[") and "2/2" in line]
    assert summaries and summaries[-1] > last_job_line, out


def test_that_stored_errors_carry_no_colour_codes(batch_workspace, store, tmp_path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text("max_failures = 1\n" + standin_grid_text(1, dataset="digits", exit_code=1)
                    + 'message = "\\u001b[1;31mboom\\u001b[0m \\u001b]8;;http://x\\u0007link\\u001b]8;;\\u0007"\n')
    batch = start_batch(batch_workspace, grid, "--no-sync")
    out, _ = batch.communicate(timeout=120)
    assert batch.returncode == 1, out
    (job,) = JobQueue(store).jobs()
    assert job.state == JobState.FAILED
    error = store.query_one("SELECT error FROM jobs WHERE id = ?", (job.id,))["error"]
    assert error.endswith("boom link (attempt 1, giving up)") and "\x1b" not in error and "\x07" not in error


def test_that_a_grid_with_jobs_still_queued_does_not_say_nothing_new_to_run(batch_workspace, store, tmp_path):
    from blueno.actions import submit_grid

    grid = tmp_path / "grid.toml"
    grid.write_text(standin_grid_text(2, dataset="digits"))
    submit_grid(batch_workspace, store, str(grid))  # queued earlier (e.g. `blueno queue add`), not run yet
    batch = start_batch(batch_workspace, grid, "--no-sync")
    out, _ = batch.communicate(timeout=120)
    assert batch.returncode == 0, out
    assert "nothing new to run" not in out and "2 still to run from an earlier submission" in out
