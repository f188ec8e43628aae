"""Running blocking work off the GUI thread.

Every call that touches the disk, the network or a subprocess goes through
here: the function runs on a ``QThreadPool`` thread and its result comes back
as a queued signal on the GUI thread.  The functions themselves are plain
``blueno`` calls that know nothing of Qt (Orange's ``concurrent.py`` idea).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

log = logging.getLogger(__name__)


WORKER_NICENESS = 10
_thread_state = threading.local()


def lower_priority(native_id: int) -> None:
    """Lower a thread's CPU priority (Linux schedules threads one by one).

    On a box busy with trainings, the event loop then gets the CPU first and
    background work takes what is left: an import runs a little slower, the
    window does not stall.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, native_id, WORKER_NICENESS)
    except (AttributeError, OSError):  # not Linux, or not allowed: it runs at normal priority
        pass


def _yield_to_the_gui() -> None:
    """Pool threads run at lower priority (set once per thread)."""
    if not getattr(_thread_state, "niced", False):
        _thread_state.niced = True
        lower_priority(threading.get_native_id())


def _log_failure(exc: BaseException) -> None:
    """Where a failure goes when nobody asked to hear about it: never silently nowhere."""
    log.error("background task failed: %s", exc, exc_info=exc)


class _Signals(QObject):
    done = Signal(object)
    failed = Signal(object)


class Task(QRunnable):
    """One call of ``fn`` on the pool; ``signals.done``/``failed`` fire on the GUI thread."""

    _running: set[Task] = set()  # keeps the Python side alive until the pool is done with it

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.setAutoDelete(False)
        self.signals = _Signals()
        self._fn, self._args, self._kwargs = fn, args, kwargs

    def run(self) -> None:
        _yield_to_the_gui()
        try:
            result = self._fn(*self._args, **self._kwargs)
        except BaseException as exc:  # reported to the GUI, which shows it
            self._emit(self.signals.failed, exc)
        else:
            self._emit(self.signals.done, result)
        finally:
            Task._running.discard(self)

    @staticmethod
    def _emit(signal: Any, value: Any) -> None:
        try:
            signal.emit(value)
        except RuntimeError:  # the application quit while this ran: nobody is listening any more
            pass


def submit(
    fn: Callable[..., Any],
    *args: Any,
    on_done: Callable[[Any], None] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
    **kwargs: Any,
) -> Task:
    """Run ``fn(*args, **kwargs)`` on the global pool and call back on the GUI thread."""
    task = Task(fn, *args, **kwargs)
    if on_done is not None:
        task.signals.done.connect(on_done)
    task.signals.failed.connect(on_error or _log_failure)
    Task._running.add(task)
    QThreadPool.globalInstance().start(task)
    return task


class Fetcher(QObject):
    """One read at a time off the GUI thread; requests made meanwhile coalesce into one more.

    ``prepare`` runs on the GUI thread when a fetch starts and returns the
    zero-argument function to run in the worker, so it captures the state the
    previous result left (for example the newest row id already shown).
    """

    ready = Signal(object)
    failed = Signal(object)

    def __init__(self, prepare: Callable[[], Callable[[], Any]], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._prepare = prepare
        self._busy = False
        self._again = False

    @property
    def busy(self) -> bool:
        return self._busy

    def request(self) -> None:
        if self._busy:
            self._again = True
            return
        self._busy = True
        submit(self._prepare(), on_done=self._on_done, on_error=self._on_error)

    def _on_done(self, result: Any) -> None:
        self._busy = False
        self.ready.emit(result)
        self._maybe_again()

    def _on_error(self, exc: BaseException) -> None:
        self._busy = False
        _log_failure(exc)
        self.failed.emit(exc)
        self._maybe_again()

    def _maybe_again(self) -> None:
        if self._again:
            self._again = False
            self.request()


def wait_for_pool(timeout_ms: int = 10_000) -> bool:
    """Block until the pool is idle (on quit, so no worker outlives the store)."""
    return QThreadPool.globalInstance().waitForDone(timeout_ms)
