"""Typed hyperparameter declarations and the model registry.

A model declares its hyperparameters (type, default, valid range or choices);
the grid validates against them and the GUI generates its form from them.
Nothing here imports TensorFlow: ``build`` functions import Keras when called.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blueno import BluenoError
from etl import plugins
from etl.plugins import Registry

INPUT_KINDS = ("any", "image", "volume")


@dataclass(frozen=True)
class Hyperparam:
    """One hyperparameter: its type, default and the values it may take."""

    name: str
    type: type  # int, float, str or bool
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    log: bool = False  # ranges over it are best spaced logarithmically
    help: str = ""

    def describe(self) -> str:
        """The valid values in words, for error messages and the docs."""
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.type is bool:
            return "true or false"
        parts = [self.type.__name__]
        if self.low is not None and self.high is not None:
            parts.append(f"from {self.low:g} to {self.high:g}")
        elif self.low is not None:
            parts.append(f">= {self.low:g}")
        elif self.high is not None:
            parts.append(f"<= {self.high:g}")
        return " ".join(parts)

    def check(self, value: Any) -> Any:
        """Return ``value`` coerced to this type, or raise ``ValueError`` saying what is valid."""
        if self.type is bool:
            if isinstance(value, bool):
                return value
            raise ValueError(f"{value!r} is not true or false")
        if self.type is int:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not value.is_integer()
            ):
                raise ValueError(f"{value!r} is not a whole number ({self.describe()})")
            value = int(value)
        elif self.type is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{value!r} is not a number ({self.describe()})")
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"{value!r} is not a finite number")
        elif self.type is str and not isinstance(value, str):
            raise ValueError(f"{value!r} is not text ({self.describe()})")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{value!r} is not {self.describe()}")
        if self.low is not None and value < self.low:
            raise ValueError(f"{value!r} is below the minimum {self.low:g} ({self.describe()})")
        if self.high is not None and value > self.high:
            raise ValueError(f"{value!r} is above the maximum {self.high:g} ({self.describe()})")
        return value


@dataclass(frozen=True)
class ModelSpec:
    """A model architecture the grid can choose."""

    name: str
    description: str
    hyperparams: tuple[Hyperparam, ...]
    # build(input_shape, n_classes, params) -> keras.Model; imports Keras itself.
    build: Callable[[tuple[int, ...], int, dict[str, Any]], Any] = field(repr=False)
    input_kind: str = "any"  # any: flattened; image: (H, W[, C]); volume: (D, H, W[, C])
    # fits(sample_shape, params) -> None, or why this configuration cannot take such samples.
    # Keras-free, so a grid is refused at validation instead of at run time.
    fits: Callable[[tuple[int, ...], dict[str, Any]], str | None] | None = field(default=None, repr=False)

    def param(self, name: str) -> Hyperparam | None:
        for hp in self.hyperparams:
            if hp.name == name:
                return hp
        return None


# Training hyperparameters every model accepts: these, then the knobs of blueno.zoo.knobs.
CORE_TRAINING_PARAMS: tuple[Hyperparam, ...] = (
    Hyperparam("optimizer", str, "adam", choices=("adam", "adamw", "sgd", "rmsprop"),
               help="Keras optimizer"),
    Hyperparam("learning_rate", float, 1e-3, low=1e-7, high=1.0, log=True,
               help="initial learning rate"),
    Hyperparam("batch_size", int, 32, low=1, high=65536, log=True, help="samples per step"),
    Hyperparam("epochs", int, 10, low=1, high=100000, help="maximum epochs"),
    Hyperparam("early_stopping", int, 0, low=0, high=1000,
               help="stop after this many epochs without improvement (0: off)"),
    Hyperparam("reduce_lr_patience", int, 0, low=0, high=1000,
               help="halve the learning rate after this many epochs on a plateau (0: off)"),
    Hyperparam("monitor", str, "val_loss", choices=("val_loss", "val_accuracy", "val_auc"),
               help="validation metric that picks the best (saved) epoch"),
    Hyperparam("seed", int, 0, low=0, high=2**31 - 1, help="seed for weights, shuffling and augmentation"),
    Hyperparam("augment_flip", bool, False, help="random horizontal flips (images and volumes)"),
    Hyperparam("augment_noise", float, 0.0, low=0.0, high=10.0,
               help="standard deviation of Gaussian noise added to inputs while training"),
)

from blueno.zoo.knobs import KNOBS  # noqa: E402  (knobs.py builds on Hyperparam, defined above)

TRAINING_PARAMS: tuple[Hyperparam, ...] = (*CORE_TRAINING_PARAMS, *KNOBS)


def _unknown(name: str, known: list[str]) -> BluenoError:
    return BluenoError(f"unknown model {name!r}; the zoo has: {', '.join(known) or 'none'}")


# The built-in models (and any registered outside a workspace's zoo/ files).
BUILTINS: Registry[ModelSpec] = Registry("zoo", missing=_unknown)


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model to the zoo (user models call this from a file in ``<workspace>/zoo``).

    While a workspace's ``zoo/`` files run, it goes to that workspace's
    registry only; otherwise to the built-ins.
    """
    if spec.input_kind not in INPUT_KINDS:
        raise BluenoError(f"model {spec.name!r}: input_kind must be one of {', '.join(INPUT_KINDS)}")
    training = {hp.name for hp in TRAINING_PARAMS}
    for hp in spec.hyperparams:
        if hp.name in training:
            raise BluenoError(
                f"model {spec.name!r}: hyperparameter {hp.name!r} is a training parameter "
                "every model has; rename it"
            )
        hp.check(hp.default)
    plugins.target("zoo", BUILTINS).add(spec.name, spec)
    return spec


def builtins() -> Registry[ModelSpec]:
    """The built-in models, registered on first use (their modules import Keras only when building)."""
    if "mlp" not in BUILTINS:
        from blueno.zoo.models import BUILTIN
        from blueno.zoo.pretrained import PRETRAINED

        for spec in (*BUILTIN, *PRETRAINED):
            register(spec)
    return BUILTINS


def user_models(zoo_dir: Path) -> Registry[ModelSpec]:
    """The built-ins plus the models that ``zoo_dir``'s ``*.py`` files register, loaded once per change.

    These are the user's own model files, run on purpose, as Python.  Grid
    files are never executed.
    """
    return plugins.load("zoo", zoo_dir, builtins(), _run_model_file)


def _run_model_file(path: Path) -> None:
    module_name = f"{plugins.module_prefix('zoo', path.parent)}_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: report it, with the path
        del sys.modules[module_name]
        raise BluenoError(f"{path}: loading this model file failed: {exc!r}") from exc


def get(name: str) -> ModelSpec:
    """A built-in model (a workspace's own: ``blueno.zoo.registry(workspace).get(name)``)."""
    return builtins().get(name)


def all_models() -> dict[str, ModelSpec]:
    """The built-in models by name."""
    return builtins().all()
