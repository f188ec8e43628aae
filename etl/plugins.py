"""Registries of named plugins: the built-ins, and one object per folder of the user's files.

Both plugin kinds work this way: user models (``<workspace>/zoo/*.py``, see
:func:`blueno.zoo.registry`) and user transforms (``<workspace>/transforms/*.py``,
see :func:`etl.registry`).  The built-ins live in a base :class:`Registry`; a
folder's files run into a registry object of their own that falls back on the
base, so two workspaces in one process never see each other's plugins.  That
object is built once per change of the files' modification time and size (an
edited model is picked up without a restart; an unchanged folder costs a
``stat`` per file, not a re-execution on every grid check).  Nothing here has
to be reset between tests: the cache is keyed by what is on disk.  It lives in
``etl`` because ``etl`` imports nothing of Blueno and both sides may import it.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")
Signature = tuple[tuple[str, int, int], ...]  # (file name, mtime_ns, size) of each *.py, sorted


class Registry(Generic[T]):
    """Name → plugin: this registry's own entries over those of ``base`` (the built-ins)."""

    def __init__(self, kind: str, base: Registry[T] | None = None,
                 missing: Callable[[str, list[str]], Exception] | None = None) -> None:
        self.kind = kind
        self.base = base
        self._missing = missing or (base._missing if base is not None else None)
        self._own: dict[str, T] = {}

    def add(self, name: str, item: T) -> None:
        self._own[name] = item

    def all(self) -> dict[str, T]:
        """Every entry by name (own entries shadow the base's), sorted."""
        merged = dict(self.base.all()) if self.base is not None else {}
        merged.update(self._own)
        return dict(sorted(merged.items()))

    def own(self) -> list[str]:
        """The names this registry added itself (a folder's plugins), sorted."""
        return sorted(self._own)

    def names(self) -> list[str]:
        return list(self.all())

    def __contains__(self, name: object) -> bool:
        return name in self._own or (self.base is not None and name in self.base)

    def get(self, name: str) -> T:
        """The entry, or the kind's own error naming what is known."""
        if name in self._own:
            return self._own[name]
        if self.base is not None and name in self.base:
            return self.base.get(name)
        if self._missing is not None:
            raise self._missing(name, self.names())
        raise KeyError(name)


# The registry a plugin file being run adds to, per kind (per thread: a context variable).
_adding_to: ContextVar[dict[str, Registry] | None] = ContextVar("blueno_plugin_target", default=None)
_lock = threading.RLock()
_cache: dict[tuple[str, Path], tuple[Signature, Registry]] = {}  # (kind, folder) → its newest load


def target(kind: str, default: Registry[T]) -> Registry[T]:
    """Where a registration of ``kind`` goes now: the folder being loaded, else ``default`` (the built-ins)."""
    return (_adding_to.get() or {}).get(kind, default)


@contextmanager
def _loading(registry: Registry) -> Iterator[None]:
    token = _adding_to.set({**(_adding_to.get() or {}), registry.kind: registry})
    try:
        yield
    finally:
        _adding_to.reset(token)


def signature(folder: Path) -> Signature:
    """The ``*.py`` files of ``folder`` with their modification time and size (empty if no folder)."""
    if not folder.is_dir():
        return ()
    found = []
    for path in sorted(folder.glob("*.py")):
        stat = path.stat()
        found.append((path.name, stat.st_mtime_ns, stat.st_size))
    return tuple(found)


def module_prefix(kind: str, folder: Path) -> str:
    """A module-name prefix unique to the folder (two workspaces' ``mine.py`` are two modules)."""
    return f"blueno_user_{kind}_{hashlib.sha256(str(folder).encode()).hexdigest()[:10]}"


def load(kind: str, folder: Path, base: Registry[T], run_file: Callable[[Path], None]) -> Registry[T]:
    """The registry of ``folder``'s plugins over ``base``, built once per change of the files.

    Each ``*.py`` runs (``run_file``) with registrations of ``kind`` going to
    the new registry.  A file that fails raises now and nothing is cached, so
    it runs again next time.
    """
    folder = folder.resolve() if folder.exists() else folder
    current = signature(folder)
    if not current:
        return base
    with _lock:
        cached = _cache.get((kind, folder))
        if cached is not None and cached[0] == current:
            return cached[1]
        registry: Registry[T] = Registry(kind, base)
        with _loading(registry):
            for name, _, _ in current:
                run_file(folder / name)
        _cache[(kind, folder)] = (current, registry)  # replaces the older load of this folder
        return registry
