"""The real trainer (``python -m blueno.trainer``) with a full disk injected at its write calls.

Used where a real full filesystem is not available (or, for the database, to fill the disk for the
trainer alone):

* ``BLUENO_FAULT_DB_PAGES=N``: the trainer's database connections may grow the file by at most N
  pages (``PRAGMA max_page_count``); past that SQLite fails the write with ``SQLITE_FULL``,
  "database or disk is full", exactly as it does on a full disk;
* ``BLUENO_FAULT_MODEL_ENOSPC=1``: saving a Keras model writes half the file, then fails with
  ``ENOSPC``, as a write on a full filesystem does.

Everything else is the real trainer, unchanged.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))


def _limit_database_growth(extra_pages: int) -> None:
    from blueno.store import Store

    original = Store.connection

    def connection(self: Store):
        fresh = getattr(self._local, "conn", None) is None
        conn = original(self)
        if fresh:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {pages + extra_pages}")
        return conn

    Store.connection = connection  # type: ignore[method-assign]


def _fail_model_saves() -> None:
    import keras

    def save(self, filepath, *args, **kwargs):  # Keras Model.save signature
        with open(filepath, "wb") as handle:
            handle.write(b"PK\x03\x04" + b"\0" * 4096)  # the start of a zip that never ends
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filepath))

    keras.Model.save = save


if __name__ == "__main__":
    if os.environ.get("BLUENO_FAULT_DB_PAGES"):
        _limit_database_growth(int(os.environ["BLUENO_FAULT_DB_PAGES"]))
    if os.environ.get("BLUENO_FAULT_MODEL_ENOSPC"):
        _fail_model_saves()
    from blueno.trainer import main

    sys.exit(main(sys.argv[1:]))
