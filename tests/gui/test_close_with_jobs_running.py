"""Closing the window with trainings running: keep them going in the background, or stop them.

The scheduler is a process of its own (``blueno batch`` without a grid), so
a kept training survives the window and a newly opened window attaches to it.
"""

from __future__ import annotations

import sys

import psutil
import pytest
from PySide6.QtCore import QTimer
from standin_model import STANDIN, standin_grid
from waiting import wait_until

from blueno import actions, datasets
from blueno.queue import JobQueue
from blueno.scheduler import active_scheduler
from gui.main_window import MainWindow


@pytest.fixture
def running_job(qtbot, window, store, workspace, monkeypatch) -> int:
    """One long stand-in training, started with the window's Start."""
    datasets.make_demo(workspace, store)
    monkeypatch.setenv("BLUENO_TRAINER", f"{sys.executable} {STANDIN}")
    workspace.settings_path.write_text("[scheduler]\nslots = 1\n")
    (job_id,) = JobQueue(store).submit(standin_grid(1, dataset="digits", duration=120.0, steps=120),
                                       resolve=actions.dataset_resolver(store, workspace)).added
    window.queue_view.actions_by_name["start"].trigger()
    qtbot.waitUntil(lambda: JobQueue(store).get(job_id).state == "running", timeout=30_000)
    return job_id


def close_answering(window: MainWindow, answer: str) -> None:
    """Close the window and click ``answer`` in its question, as a user would."""
    def click() -> None:
        box = window.close_question
        if box is None:
            QTimer.singleShot(20, click)
            return
        (button,) = [b for b in box.buttons() if b.text().replace("&", "").startswith(answer)]
        button.click()

    window.keep_training_on_close = None  # ask, as the app does
    QTimer.singleShot(0, click)
    window.close()


def test_that_keeping_training_leaves_the_scheduler_running_and_a_new_window_attaches(
    qtbot, window, store, workspace, qsettings, running_job
) -> None:
    scheduler = active_scheduler(workspace)
    assert scheduler is not None and scheduler.mode == "service" and scheduler.pid != window_pid()
    close_answering(window, "Keep training")
    assert not window.isVisible()
    assert psutil.pid_exists(scheduler.pid)
    assert JobQueue(store).get(running_job).state == "running"

    second = MainWindow(workspace, workspace.open_store(), qsettings)
    qtbot.addWidget(second)
    second.show()
    qtbot.waitUntil(lambda: second.scheduler.status.attached, timeout=10_000)
    assert second.scheduler.status.owner_pid == scheduler.pid
    qtbot.waitUntil(lambda: [r["state"] for r in second.queue_view.model.rows()] == ["running"], timeout=10_000)
    assert second.queue_view.actions_by_name["stop"].isEnabled()
    second.shutdown(keep_training=False)  # stops the scheduler: the training is requeued to resume later
    assert active_scheduler(workspace) is None
    assert JobQueue(store).get(running_job).state == "queued"
    second.store.close()


def test_that_stopping_them_on_close_requeues_the_running_job(qtbot, window, store, workspace, running_job) -> None:
    pid = active_scheduler(workspace).pid
    close_answering(window, "Stop them")
    assert active_scheduler(workspace) is None
    wait_until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    job = JobQueue(store).get(running_job)
    assert job.state == "queued" and job.failures == 0  # interrupted, not failed: it resumes at the next Start


def test_that_cancel_keeps_the_window_open(qtbot, window, store, workspace, running_job) -> None:
    close_answering(window, "Cancel")
    assert window.isVisible()
    assert active_scheduler(workspace) is not None
    window.keep_training_on_close = False  # pytest-qt closes it at teardown


def test_that_closing_with_nothing_running_asks_nothing(qtbot, window, workspace) -> None:
    window.close()  # a question would block here
    assert not window.isVisible() and window.close_question is None


def window_pid() -> int:
    import os

    return os.getpid()
