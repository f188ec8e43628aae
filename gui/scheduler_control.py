"""The GUI's handle on the workspace's scheduler, which always runs as a process of its own.

Start launches ``blueno batch`` without a grid (:func:`blueno.service.start_scheduler`)
when no scheduler runs; otherwise, or afterwards, the window attaches: it
probes the workspace for the scheduler (its lock and ``schedulers`` row) and
shows its jobs, which are all in the database.  Pause, Resume and Stop are the
library's :func:`blueno.service.control_scheduler`, the same calls as
``blueno scheduler pause|resume|stop``.  Closing the window can leave the
scheduler running: its trainings go on without the window.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from PySide6.QtCore import QObject, QTimer, Signal

from blueno import BluenoError, service
from blueno.scheduler import SchedulerInfo, active_scheduler
from blueno.store import Store
from blueno.workspace import Workspace
from gui.workers import Fetcher, submit

PROBE_MS = 2000
STOP_WAIT_S = 60.0  # closing with "stop them": how long to wait for trainers to checkpoint


@dataclass(frozen=True)
class SchedulerStatus:
    """What the status bar and the queue view show about scheduling."""

    state: str  # stopped | starting | running | paused | stopping
    slots: tuple[str, ...] = ()
    owner_pid: int | None = None  # the scheduler process, once one runs
    owner_mode: str | None = None  # service (a Start, here or elsewhere) or batch (a grid run to its end)
    error: str | None = None

    @property
    def attached(self) -> bool:
        """A scheduler process runs on the workspace and this window shows it."""
        return self.owner_pid is not None

    def describe(self) -> str:
        if self.attached:
            return f"attached to {self.owner_mode or 'a'} scheduler, pid {self.owner_pid} ({self.state})"
        return f"scheduler {self.state}"


class SchedulerControl(QObject):
    """Start the scheduler process, pause, resume or stop it, and follow its state."""

    status_changed = Signal(object)  # SchedulerStatus
    failed = Signal(str)

    def __init__(self, workspace: Workspace, store: Store, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._workspace = workspace
        self._store = store
        self._process: subprocess.Popen | None = None  # the one this window started, to reap it
        self._pending: str | None = None  # starting | stopping, until the probe shows it done
        self._status = SchedulerStatus("stopped")
        self._probe = Fetcher(lambda: self._probe_scheduler, self)
        self._probe.ready.connect(self._on_probe)
        self._timer = QTimer(self)
        self._timer.setInterval(PROBE_MS)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        self.refresh()

    @property
    def workspace(self) -> Workspace:
        return self._workspace

    @property
    def started_here(self) -> bool:
        """This window started the scheduler process that runs now."""
        return self._process is not None and self._process.poll() is None

    @property
    def status(self) -> SchedulerStatus:
        return self._status

    def refresh(self) -> None:
        """Probe (off the GUI thread) which scheduler runs on the workspace."""
        if self._process is not None and self._process.poll() is not None:
            self._process = None  # it ended (and is reaped)
        self._probe.request()

    def _probe_scheduler(self) -> SchedulerInfo | None:
        return active_scheduler(self._workspace, self._store)

    def _on_probe(self, info: SchedulerInfo | None) -> None:
        if info is None:
            if self._pending == "starting":
                return  # the start is still under way
            self._pending = None
            self._set(SchedulerStatus("stopped", error=self._status.error))
            return
        if self._pending == "starting":
            self._pending = None
        state = "stopping" if self._pending == "stopping" else info.state
        self._set(SchedulerStatus(state, tuple(info.slots), info.pid or None, info.mode))

    def _set(self, status: SchedulerStatus) -> None:
        if status != self._status:
            self._status = status
            self.status_changed.emit(status)

    def start(self) -> None:
        """Start a scheduler process (off the GUI thread: it waits for it to register), or resume a paused one."""
        if self._status.state == "paused":
            self._control("resume")
            return
        if self._status.attached or self._pending is not None:
            return
        self._pending = "starting"
        self._set(SchedulerStatus("starting"))
        # It syncs to Elasticsearch itself (when configured), so results of trainings kept running
        # after the window closes go out; the window's own sync thread stands by while it does.
        submit(service.start_scheduler, self._workspace, on_done=self._started,
               on_error=self._start_failed)

    def _started(self, process: subprocess.Popen) -> None:
        self._process = process
        self._pending = None
        self.refresh()

    def _start_failed(self, exc: BaseException) -> None:
        """Another process took the workspace, or the settings name no usable slot: say so."""
        self._pending = None
        self._set(SchedulerStatus("stopped", error=str(exc)))
        self.failed.emit(str(exc))
        self.refresh()

    def pause(self) -> None:
        self._control("pause")

    def stop(self, cancel_running: bool = False) -> None:
        """Stop the scheduler process: running trainings checkpoint and are requeued to resume later."""
        if not self._status.attached:
            return
        self._pending = "stopping"
        self._set(SchedulerStatus("stopping", self._status.slots, self._status.owner_pid, self._status.owner_mode))
        self._control("stop")

    def _control(self, action: str) -> None:
        submit(service.control_scheduler, self._workspace, action, on_done=lambda _: self.refresh(),
               on_error=self._control_failed)

    def _control_failed(self, exc: BaseException) -> None:
        self._pending = None
        self.failed.emit(str(exc))
        self.refresh()

    def shutdown(self, keep_running: bool = True) -> None:
        """On quit: leave the scheduler process to go on (the default), or stop it and wait for it to end."""
        self._timer.stop()
        if not keep_running and active_scheduler(self._workspace, self._store) is not None:
            try:
                service.control_scheduler(self._workspace, "stop")
            except BluenoError:
                pass  # it ended meanwhile, or runs on another host: nothing to stop from here
            service.wait_stopped(self._workspace, STOP_WAIT_S)
        if self._process is not None and self._process.poll() is None and keep_running:
            self._process = None  # it lives on in its own session; init reaps it when it ends
        elif self._process is not None:
            self._process.wait(timeout=5)
            self._process = None
