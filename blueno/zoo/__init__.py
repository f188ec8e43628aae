"""The model zoo: built-in architectures, the workspace's own models, and their typed hyperparameters.

``registry(workspace)`` holds the built-ins and that workspace's own models
(another workspace's are not in it); ``registry(workspace).get(name)`` returns
a :class:`ModelSpec` whose ``build`` imports Keras only when called, so the CLI
and the GUI can list models and validate grids without TensorFlow.
``get(name)`` is a built-in model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from blueno import BluenoError
from blueno.zoo.base import (
    INPUT_KINDS,
    TRAINING_PARAMS,
    Hyperparam,
    ModelSpec,
    Registry,
    all_models,
    builtins,
    get,
    register,
    user_models,
)

if TYPE_CHECKING:
    from blueno.workspace import Workspace

__all__ = [
    "INPUT_KINDS",
    "TRAINING_PARAMS",
    "Hyperparam",
    "ModelSpec",
    "Registry",
    "all_models",
    "check_fits",
    "check_input",
    "fit_problem",
    "get",
    "load",
    "register",
    "registry",
    "resolve_params",
]

# What each input kind accepts, for the shape check and its message.
_RANKS = {"image": ((2, 3), "(H, W) or (H, W, C)"), "volume": ((3, 4), "(D, H, W) or (D, H, W, C)")}


def registry(workspace: Workspace | None = None) -> Registry[ModelSpec]:
    """The built-in models and, given a workspace, the models of the ``*.py`` files in its ``zoo/``
    (run again only when those files change)."""
    return builtins() if workspace is None else user_models(workspace.zoo_dir)


def load(workspace: Workspace | None = None) -> dict[str, ModelSpec]:
    """Every model the workspace can train, by name (``registry(workspace).all()``)."""
    return registry(workspace).all()


def resolve_params(spec: ModelSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    """Every model and training hyperparameter, checked and coerced, defaults filled in.

    Raises :class:`BluenoError` naming the parameter, the model and the valid values.
    """
    declared = {hp.name: hp for hp in (*TRAINING_PARAMS, *spec.hyperparams)}
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise BluenoError(
            f"model {spec.name!r} has no hyperparameter {', '.join(map(repr, unknown))}; "
            f"it accepts: {', '.join(sorted(declared))}"
        )
    resolved = {}
    for name, hp in declared.items():
        try:
            resolved[name] = hp.check(params[name]) if name in params else hp.default
        except ValueError as exc:
            raise BluenoError(f"model {spec.name!r}, hyperparameter {name!r}: {exc}") from None
    return resolved


def check_input(spec: ModelSpec, sample_shape: tuple[int, ...], dataset: str = "the dataset") -> None:
    """Refuse data whose sample shape the model cannot take, saying what would fit."""
    if spec.input_kind not in _RANKS:
        return
    ranks, wanted = _RANKS[spec.input_kind]
    if len(sample_shape) not in ranks:
        raise BluenoError(
            f"model {spec.name!r} needs {spec.input_kind}s shaped {wanted}, but {dataset} has samples "
            f"shaped {tuple(sample_shape)}. Choose a model that takes this data (e.g. 'mlp', which "
            f"flattens any input), or add a preprocessing step that reshapes the samples to {wanted}."
        )


def fit_problem(spec: ModelSpec, params: Mapping[str, Any], sample_shape: tuple[int, ...],
                dataset: str = "the dataset") -> str | None:
    """Why this model, with these resolved parameters, cannot take samples shaped so (None: it can).

    Keras-free: the grid, the form and the trainer all ask it before anything runs.
    """
    try:
        check_input(spec, sample_shape, dataset)
    except BluenoError as exc:
        return str(exc)
    if spec.fits is not None:
        problem = spec.fits(tuple(sample_shape), dict(params))
        if problem:
            return f"{problem} ({dataset})"
    from blueno.zoo.knobs import knob_problem

    return knob_problem(spec, params, tuple(sample_shape), dataset)


def check_fits(spec: ModelSpec, params: Mapping[str, Any], sample_shape: tuple[int, ...],
               dataset: str = "the dataset") -> None:
    """Raise :class:`BluenoError` with :func:`fit_problem`'s reason, if there is one."""
    problem = fit_problem(spec, params, sample_shape, dataset)
    if problem:
        raise BluenoError(problem)
