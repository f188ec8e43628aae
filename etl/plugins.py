"""Loading a folder of the user's plugin files (``*.py``) once per change of those files.

Both plugin kinds load this way: user models (``<workspace>/zoo/``, by
:func:`blueno.zoo.load_user_models`) and user transforms
(``<workspace>/transforms/``, by :func:`etl.load_user_transforms`).  A file
runs again only when its modification time or size changed (an edited model
is picked up without a restart; an unchanged folder costs a ``stat`` per
file, not a re-execution on every grid check).  It lives in ``etl`` because
``etl`` imports nothing of Blueno and both sides may import it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

Signature = dict[str, tuple[int, int]]  # file name → (mtime_ns, size)
_loaded: dict[tuple[str, Path], Signature] = {}  # (kind, folder) → what was run last


def signature(folder: Path) -> Signature:
    """The ``*.py`` files of ``folder`` with their modification time and size (empty if no folder)."""
    if not folder.is_dir():
        return {}
    found = {}
    for path in sorted(folder.glob("*.py")):
        stat = path.stat()
        found[path.name] = (stat.st_mtime_ns, stat.st_size)
    return found


def load_changed(kind: str, folder: Path, run_file: Callable[[Path], None]) -> list[Path]:
    """Run each file of ``folder`` that is new or changed since the last load of this ``kind``;
    the files run.  A file that fails is run again next time (its error is raised now)."""
    key = (kind, folder.resolve() if folder.exists() else folder)
    current = signature(folder)
    previous = _loaded.get(key, {})
    if current == previous:
        return []
    ran = []
    done = {name: stamp for name, stamp in previous.items() if name in current}
    try:
        for name, stamp in current.items():
            if previous.get(name) != stamp:
                run_file(folder / name)
                ran.append(folder / name)
            done[name] = stamp
    finally:
        _loaded[key] = done  # what ran; a failed file is not recorded and runs again
    return ran
