"""The scheduler as a process of its own: started, paused, resumed and stopped through the workspace."""

from __future__ import annotations

import psutil
import pytest
from waiting import wait_until

from blueno import BluenoError, service
from blueno.cli import main as cli
from blueno.scheduler import active_scheduler


def test_that_a_started_scheduler_is_steered_by_signals_from_any_process(workspace, capsys) -> None:
    workspace.settings_path.write_text("[scheduler]\nslots = 1\n")
    process = service.start_scheduler(workspace, sync=False)
    try:
        info = active_scheduler(workspace)
        assert info is not None and info.pid == process.pid and info.mode == service.SERVICE_MODE
        with pytest.raises(BluenoError, match="already runs"):
            service.start_scheduler(workspace, sync=False)
        assert cli(["--home", str(workspace.root), "scheduler", "pause"]) == 0
        wait_until(lambda: active_scheduler(workspace).state == "paused", timeout=20)
        service.control_scheduler(workspace, "resume")
        wait_until(lambda: active_scheduler(workspace).state == "running", timeout=20)
        assert cli(["--home", str(workspace.root), "scheduler", "status"]) == 0
        assert f"service scheduler, pid {process.pid}" in capsys.readouterr().out
        assert cli(["--home", str(workspace.root), "scheduler", "stop", "--wait", "30"]) == 0
        assert process.wait(timeout=30) == 0
        assert active_scheduler(workspace) is None
        assert "scheduler stopped" in (workspace.logs_dir / service.LOG_NAME).read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with pytest.raises(BluenoError, match="no scheduler runs"):
        service.control_scheduler(workspace, "pause")
    assert not psutil.pid_exists(process.pid) or psutil.Process(process.pid).status() == psutil.STATUS_ZOMBIE


def test_that_a_scheduler_stopped_before_start_scheduler_looked_again_counts_as_started(
    workspace, monkeypatch
) -> None:
    """Start, then Stop at once (seen in the GUI tests): the process registered, ran and ended between two of
    start_scheduler's looks, which then said "the scheduler did not start" (a modal error box after the fact)."""
    import signal
    import time
    import types

    from blueno.store import Store

    workspace.settings_path.write_text("[scheduler]\nslots = 1\n")
    stopped: list[int] = []

    def between_two_looks(seconds: float) -> None:  # the time that passes between two looks: a Start, then a Stop
        if not stopped:
            with Store(workspace.db_path) as store:
                while (row := store.query_one("SELECT pid FROM schedulers")) is None:
                    time.sleep(0.01)
            scheduler = psutil.Process(row["pid"])
            scheduler.send_signal(signal.SIGTERM)
            while scheduler.is_running() and scheduler.status() != psutil.STATUS_ZOMBIE:
                time.sleep(0.01)  # ended, not reaped: start_scheduler's handle reaps it
            stopped.append(row["pid"])
        time.sleep(seconds)

    # Only start_scheduler's clock: time passes between its looks as it does when the user is quick.
    monkeypatch.setattr(service, "time", types.SimpleNamespace(
        time=time.time, monotonic=time.monotonic, strftime=time.strftime, sleep=between_two_looks))
    process = service.start_scheduler(workspace, sync=False)  # no error: it did start

    assert stopped == [process.pid] and process.poll() == 0
    assert active_scheduler(workspace) is None
