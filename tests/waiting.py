"""The one way tests wait: poll a condition until it holds or a deadline passes (never a fixed sleep).

Qt tests use ``qtbot.waitUntil`` (it runs the event loop); everything else uses :func:`wait_until`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.02,
               message: str = "condition") -> T:
    """Return the predicate's first truthy value; AssertionError if it stays false ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not reached in {timeout:g} s")
        time.sleep(interval)
