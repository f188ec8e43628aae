"""Blueno: an experiment manager that trains grids of Keras models in the background.

The ``blueno`` package is the engine: no Qt, and TensorFlow only inside the
trainer and the model zoo, imported lazily, so the CLI and the GUI start fast.
"""

__version__ = "0.1.0"


class BluenoError(Exception):
    """An error meant for the user: the message names what is wrong and the fix.

    The CLI prints it without a traceback and exits non-zero.
    """
