"""Noticing database changes cheaply, whichever process made them.

``PRAGMA data_version`` changes when another connection commits; reading it
costs microseconds, so polling it a few times a second is the GUI's whole
change-notification mechanism.  The views re-read only when it moves, and
only what is new: the watcher holds no state the database lacks.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal

from blueno.store import Store

POLL_MS = 250


class StoreWatcher(QObject):
    """Emits ``changed`` when another connection has committed since the last poll."""

    changed = Signal()

    def __init__(self, store: Store, interval_ms: int = POLL_MS, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._store = store
        self._version = store.data_version()
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.poll)
        self._timer.start()

    def poll(self) -> bool:
        """Check now; return whether the database changed."""
        version = self._store.data_version()
        if version == self._version:
            return False
        self._version = version
        self.changed.emit()
        return True

    def poke(self) -> None:
        """Announce a change this process made through a connection the probe does not see."""
        self.changed.emit()

    def stop(self) -> None:
        self._timer.stop()
