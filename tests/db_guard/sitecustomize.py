"""Loaded at start-up by every Python process whose PYTHONPATH holds this folder (trainers under test).

When ``$BLUENO_TEST_DB_GUARD`` names a workspace, an audit hook refuses any ``open`` or
``sqlite3.connect`` of that workspace's ``blueno.db*`` files and notes the attempt in
``$BLUENO_TEST_DB_GUARD/db-guard.log``: file modes do not stop root, an audit hook does.
"""

import os
import sys

_ROOT = os.environ.get("BLUENO_TEST_DB_GUARD")


def _guard(event: str, args: tuple) -> None:
    if event not in ("open", "sqlite3.connect") or not args:
        return
    target = args[0]
    if isinstance(target, int) or target is None:
        return
    try:
        path = os.path.realpath(os.fsdecode(target))
    except (TypeError, ValueError):
        return
    if os.path.dirname(path) == _ROOT and os.path.basename(path).startswith("blueno.db"):
        with open(os.path.join(_ROOT, "db-guard.log"), "a") as log:  # not blueno.db*: allowed
            log.write(f"{os.getpid()} {event} {path}\n")
        raise PermissionError(f"this process may not touch the workspace database ({path})")


if _ROOT:
    _ROOT = os.path.realpath(_ROOT)
    sys.addaudithook(_guard)
