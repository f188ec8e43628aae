"""The GUI's handle on the scheduler: its own, in-process, or another process's.

The GUI runs :class:`blueno.scheduler.Scheduler` in ``mode="gui"`` when no
other process holds the workspace's scheduler; when a ``--batch`` run does,
it attaches instead: it shows that scheduler's jobs (they are all in the
database) and never starts a second one.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QObject, QTimer, Signal

from blueno.scheduler import Scheduler, SchedulerInfo, Slot, active_scheduler, configured_slots
from blueno.store import Store
from blueno.workspace import Workspace
from gui.workers import Fetcher, submit

PROBE_MS = 2000


@dataclass(frozen=True)
class SchedulerStatus:
    """What the status bar and the queue view show about scheduling."""

    state: str  # stopped | starting | running | paused | stopping | attached
    slots: tuple[str, ...] = ()
    owner_pid: int | None = None  # the other process when attached
    owner_mode: str | None = None
    error: str | None = None

    @property
    def attached(self) -> bool:
        return self.state == "attached"

    def describe(self) -> str:
        if self.attached:
            return f"attached to {self.owner_mode or 'another'} scheduler, pid {self.owner_pid}"
        return f"scheduler {self.state}"


class SchedulerControl(QObject):
    """Start, pause, resume and stop the in-process scheduler; probe for another one."""

    status_changed = Signal(object)  # SchedulerStatus
    failed = Signal(str)

    def __init__(self, workspace: Workspace, store: Store, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._workspace = workspace
        self._store = store
        self._scheduler: Scheduler | None = None
        self._status = SchedulerStatus("stopped")
        self._probe = Fetcher(lambda: self._probe_other, self)
        self._probe.ready.connect(self._on_probe)
        self._timer = QTimer(self)
        self._timer.setInterval(PROBE_MS)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        self.refresh()

    @property
    def status(self) -> SchedulerStatus:
        return self._status

    def refresh(self) -> None:
        """Probe (off the GUI thread) whether another process runs this workspace's scheduler."""
        scheduler = self._scheduler
        if scheduler is None:
            self._probe.request()
        elif scheduler.error is not None:  # its thread died: say why, and let the user start again
            self._scheduler = None
            self._set(SchedulerStatus("stopped", error=str(scheduler.error)))
            self.failed.emit(f"the scheduler stopped: {scheduler.error}")

    def _probe_other(self) -> SchedulerInfo | None:
        return active_scheduler(self._workspace, self._store)

    def _on_probe(self, info: SchedulerInfo | None) -> None:
        if self._scheduler is not None or self._status.state == "starting":
            return
        if info is None:
            self._set(SchedulerStatus("stopped", error=self._status.error))
            return
        self._set(SchedulerStatus("attached", tuple(info.slots), info.pid, info.mode))

    def _set(self, status: SchedulerStatus) -> None:
        if status != self._status:
            self._status = status
            self.status_changed.emit(status)

    def start(self, slots: list[Slot] | None = None) -> None:
        """Start the in-process scheduler (off the GUI thread: it takes a file lock), or resume it."""
        if self._status.attached:
            self.failed.emit(self._status.describe() + ": stop it there first")
            return
        if self._scheduler is not None:
            self._scheduler.resume()
            self._set(SchedulerStatus("running", self._status.slots))
            return
        if self._status.state == "starting":
            return
        self._set(SchedulerStatus("starting"))
        submit(self._create, slots, on_done=self._started, on_error=self._start_failed)

    def _create(self, slots: list[Slot] | None) -> Scheduler:
        scheduler = Scheduler(self._workspace, slots or configured_slots(self._workspace), mode="gui")
        scheduler.start()
        return scheduler

    def _started(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self._set(SchedulerStatus("running", tuple(slot.name for slot in scheduler.slots)))

    def _start_failed(self, exc: BaseException) -> None:
        """Another process took the lock, or the settings name no usable slot: say so."""
        self._set(SchedulerStatus("stopped", error=str(exc)))
        self.failed.emit(str(exc))
        self.refresh()

    def pause(self) -> None:
        if self._scheduler is not None:
            self._scheduler.pause()
            self._set(SchedulerStatus("paused", self._status.slots))

    def stop(self, cancel_running: bool = False) -> None:
        """Stop off the GUI thread: it waits for trainers to end."""
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is None:
            return
        self._set(SchedulerStatus("stopping", self._status.slots))
        scheduler.stop(cancel_running)
        submit(
            scheduler.join, on_done=lambda _: self._stopped(), on_error=lambda exc: self._stopped(str(exc))
        )

    def _stopped(self, error: str | None = None) -> None:
        self._set(SchedulerStatus("stopped", error=error))
        if error:
            self.failed.emit(error)
        self.refresh()

    def shutdown(self) -> None:
        """On quit: stop without cancelling; running trainings resume from their checkpoints."""
        self._timer.stop()
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.stop(False)
            scheduler.join()
