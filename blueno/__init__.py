"""Blueno: an experiment manager that trains grids of Keras models in the background.

The ``blueno`` package is the engine: no Qt, and TensorFlow only inside the
trainer and the model zoo, imported lazily, so the CLI and the GUI start fast.
"""

from importlib.resources import files
from importlib.resources.abc import Traversable

__version__ = "0.1.0"


def resource(*parts: str) -> Traversable:
    """A file shipped with Blueno (``blueno/resources/…``: index templates, Kibana objects, example grids,
    the report's CSS), found the same way in a checkout and in an installed wheel."""
    return files(__name__).joinpath("resources", *parts)


class BluenoError(Exception):
    """An error meant for the user: the message names what is wrong and the fix.

    The CLI prints it without a traceback and exits non-zero.
    """
