"""Progress and cancellation for long dataset work (import, hashing, transfers, derive).

The Orange ``TaskState`` idea: the worker is a plain function that reports
through a :class:`Task` and polls it for cancellation; a terminal progress bar
and a Qt progress dialog are just two ``on_progress`` callbacks.  Nothing here
knows about threads other than that ``cancel()`` may come from another one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from blueno import BluenoError


class Cancelled(BluenoError):
    """The user cancelled the work; whatever it had started was undone."""


@dataclass(frozen=True)
class Progress:
    """One progress report: counts so far, totals (0 when unknown), the file at hand."""

    stage: str
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    current: str = ""

    @property
    def fraction(self) -> float:
        """Done so far in [0, 1], by bytes when they are known, else by files."""
        if self.bytes_total:
            return min(1.0, self.bytes_done / self.bytes_total)
        if self.files_total:
            return min(1.0, self.files_done / self.files_total)
        return 0.0


class Task:
    """Carries progress out of a worker and a cancel request into it (thread-safe)."""

    def __init__(self, on_progress: Callable[[Progress], None] | None = None) -> None:
        self._on_progress = on_progress
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._stage = ""
        self._files_done = self._files_total = self._bytes_done = self._bytes_total = 0

    def cancel(self) -> None:
        """Ask the worker to stop at its next check (safe from any thread)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` when cancellation was requested."""
        if self._cancel.is_set():
            raise Cancelled("cancelled; nothing was changed")

    def start(self, stage: str, files_total: int = 0, bytes_total: int = 0) -> None:
        """Begin a new stage (``"hashing"``, ``"uploading"``…) with its totals."""
        with self._lock:
            self._stage = stage
            self._files_done, self._bytes_done = 0, 0
            self._files_total, self._bytes_total = files_total, bytes_total
        self._emit("")

    def advance(self, files: int = 0, nbytes: int = 0, current: str = "") -> None:
        """Count work done (workers in a pool may call this concurrently), then check for cancel."""
        with self._lock:
            self._files_done += files
            self._bytes_done += nbytes
        self._emit(current)
        self.check()

    def _emit(self, current: str) -> None:
        if self._on_progress is None:
            return
        with self._lock:
            report = Progress(
                self._stage, self._files_done, self._files_total,
                self._bytes_done, self._bytes_total, current,
            )
        self._on_progress(report)


def ensure_task(task: Task | None) -> Task:
    """The given task, or a silent one that is never cancelled."""
    return task if task is not None else Task()
