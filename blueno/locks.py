"""Exclusive locks on workspace files that the kernel drops however their holder ends.

One ``flock`` idiom for every "only one of these per workspace" rule: the
scheduler (``.scheduler.lock``) and the background Elasticsearch sender
(``.es-sync.lock``).  A crashed holder never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class FileLock:
    """A non-blocking exclusive ``flock`` on ``path``; optionally writes the holder's pid for a person looking."""

    def __init__(self, path: Path, *, note_pid: bool = False) -> None:
        self.path = path
        self._note_pid = note_pid
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; never waits."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        if self._note_pid:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
