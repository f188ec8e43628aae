"""An empty workspace opens on the short path to a first experiment, which leaves once there is work."""

from __future__ import annotations

import sys

from standin_model import STANDIN

from blueno.queue import JobQueue
from gui.workers import wait_for_pool


def test_that_an_empty_workspace_offers_the_demo_and_the_steps(qtbot, window, store) -> None:
    welcome = window.welcome
    qtbot.waitUntil(welcome.isVisible, timeout=5000)
    assert welcome.create_demo.isVisible() and welcome.import_button.isVisible()
    welcome.create_demo.click()  # step 1 in one click
    qtbot.waitUntil(lambda: "1 dataset" in welcome.steps["data"].text(), timeout=30_000)
    assert not welcome.create_demo.isVisible() and welcome.isVisible()
    qtbot.waitUntil(lambda: window.grid_view.dataset.findText("digits") >= 0, timeout=5000)
    welcome.build_button.click()
    assert window.tabs.currentWidget() is window.grid_view


def test_that_run_the_demo_queues_starts_and_shows_the_runs_then_gets_out_of_the_way(
    qtbot, window, workspace, store, monkeypatch
) -> None:
    monkeypatch.setenv("BLUENO_TRAINER", f"{sys.executable} {STANDIN}")  # fast: the real demo trains Keras
    (workspace.root / "settings.toml").write_text("[scheduler]\nslots = 2\n")
    welcome = window.welcome
    qtbot.waitUntil(welcome.isVisible, timeout=5000)
    try:
        welcome.run_demo.click()
        qtbot.waitUntil(lambda: JobQueue(store).counts().get("queued", 0) + JobQueue(store).counts().get("running", 0)
                        + JobQueue(store).counts().get("succeeded", 0) == 8, timeout=30_000)
        qtbot.waitUntil(lambda: window.scheduler.status.state == "running", timeout=15_000)
        assert window.tabs.currentWidget() is window.runs_view
        qtbot.waitUntil(lambda: len(window.runs_view.selected_ids()) == 8, timeout=15_000)  # every demo run's curves
        assert not welcome.isVisible()
        window.welcome.refresh()
        wait_for_pool()
        assert not welcome.isVisible()  # there is work now: it stays out of the way
    finally:
        window.scheduler.stop(False)
        qtbot.waitUntil(lambda: window.scheduler.status.state == "stopped", timeout=30_000)
        wait_for_pool()
