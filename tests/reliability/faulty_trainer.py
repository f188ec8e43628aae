"""The real trainer (``python -m blueno.trainer``) with a full disk injected at its write calls.

Used where a real full filesystem is not available:

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


def _fail_model_saves() -> None:
    import keras

    def save(self, filepath, *args, **kwargs):  # Keras Model.save signature
        with open(filepath, "wb") as handle:
            handle.write(b"PK\x03\x04" + b"\0" * 4096)  # the start of a zip that never ends
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filepath))

    keras.Model.save = save


if __name__ == "__main__":
    if os.environ.get("BLUENO_FAULT_MODEL_ENOSPC"):
        _fail_model_saves()
    from blueno.trainer import main

    sys.exit(main(sys.argv[1:]))
