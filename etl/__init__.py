"""Preprocessing transforms that turn one dataset version into a derived one.

Built-ins (normalize, resize, crop, center_crop, clip, mip) register on import;
users add their own in ``<workspace>/transforms/*.py``::

    import numpy as np
    import etl

    @etl.transform("invert")
    def invert(batch: np.ndarray, *, maximum: float = 1.0) -> np.ndarray:
        return maximum - batch

``etl.registry(folder)`` holds the built-ins and one folder's own transforms
(loaded once per change of its files); ``etl.get``/``etl.names`` are the
built-ins.  ``blueno.datasets.derive`` applies them with lineage and caching.  This package
depends on numpy (and scipy for resize) only: no Blueno, no Qt.
"""

from etl import builtin  # noqa: F401  (registers the built-in transforms)
from etl.plugins import Registry
from etl.registry import Transform, TransformError, check_step, get, names, registry, transform

__all__ = ["Registry", "Transform", "TransformError", "check_step", "get", "names", "registry", "transform"]
