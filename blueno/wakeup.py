"""A wake-up the enqueuer sends the scheduler through the workspace: a FIFO next to ``.scheduler.lock``.

A job queued by another process (the CLI, a second terminal, the GUI) is
seen by the scheduler on its next ``PRAGMA data_version`` tick; a poke on
``<workspace>/.scheduler.wake`` wakes its selector at once, so the job starts
within a few milliseconds without the scheduler polling faster.

The scheduler opens the FIFO read-write (so it never sees end-of-file and
never spins) and registers it in its selector.  :func:`poke` opens it
write-only and non-blocking and writes one byte; with no scheduler listening
the open fails with ``ENXIO`` (a stale FIFO) or ``ENOENT`` (none), a full pipe
means a wake-up is already pending, and anything else is ignored too: a poke
never blocks and never fails a submit.  ``data_version`` polling stays the
fallback (a filesystem without FIFOs, an enqueuer that does not poke).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

WAKE_NAME = ".scheduler.wake"


def wake_path(root: os.PathLike[str] | str) -> Path:
    return Path(root) / WAKE_NAME


def poke(root: os.PathLike[str] | str) -> bool:
    """Wake the workspace's scheduler if one listens; True when the byte was written."""
    try:
        fd = os.open(wake_path(root), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # ENOENT: no endpoint; ENXIO: no scheduler reads it (stale); EACCES, ...
        return False
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return False  # something else took the name: never write into a regular file
        os.write(fd, b"!")
        return True
    except OSError:  # EAGAIN: the pipe is full, so a wake-up is pending already
        return False
    finally:
        os.close(fd)


class WakeEndpoint:
    """The scheduler's end: create (or reuse) the FIFO and hold it open for reading."""

    def __init__(self, root: os.PathLike[str] | str) -> None:
        self.path = wake_path(root)
        self.fd: int | None = None

    def open(self) -> int | None:
        """The fd to register in a selector, or None when FIFOs don't work here (then poll)."""
        try:
            with contextlib.suppress(FileNotFoundError):
                if not stat.S_ISFIFO(os.lstat(self.path).st_mode):
                    self.path.unlink()  # not ours to keep: only a FIFO may sit under this name
            with contextlib.suppress(FileExistsError):
                os.mkfifo(self.path, 0o600)
            # Read-write: the scheduler is itself a writer, so the FIFO never reports end-of-file.
            self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            self.fd = None
        return self.fd

    def drain(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(BlockingIOError, OSError):
                os.read(self.fd, 4096)

    def close(self) -> None:
        """Close, and remove the FIFO so a poke fails fast (ENOENT) while no scheduler runs."""
        if self.fd is None:
            return
        os.close(self.fd)
        self.fd = None
        with contextlib.suppress(OSError):
            self.path.unlink()
