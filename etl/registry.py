"""The transform registry: typed functions found by name, built-in or from the workspace.

A transform is a plain function ``fn(batch, *, param=…) -> batch`` over a batch
of samples (first axis = samples).  Its keyword-only parameters, with their
type hints and defaults, are its contract: steps are checked against them
before any data is touched.  A transform that needs dataset statistics
(normalize without a fixed mean) declares a ``fit`` that sees every batch
once first; what it computes is recorded with the derived version.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from etl import plugins
from etl.plugins import Registry

Fit = Callable[[Iterable[np.ndarray], dict[str, Any]], dict[str, Any]]


class TransformError(ValueError):
    """A transform step that cannot run: unknown name, bad parameter, or data it does not fit."""


@dataclass(frozen=True)
class Param:
    name: str
    hint: Any
    default: Any  # inspect.Parameter.empty when required

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


@dataclass(frozen=True)
class Transform:
    name: str
    fn: Callable[..., np.ndarray]
    params: dict[str, Param]
    fit: Fit | None = None
    code: str | None = None  # hash of a user transform's source: editing it invalidates cached results
    doc: str = ""

    def check(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters coerced to their types, defaults filled in; TransformError saying what is valid."""
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            raise TransformError(f"{self.name} has no parameter {', '.join(map(repr, unknown))}; "
                                 f"it takes: {self.signature()}")
        checked = {}
        for p in self.params.values():
            if p.name in params:
                checked[p.name] = _coerce(self.name, p, params[p.name])
            elif p.required:
                raise TransformError(f"{self.name} needs the parameter {p.name!r} ({self.signature()})")
            else:
                checked[p.name] = p.default
        return checked

    def signature(self) -> str:
        parts = []
        for p in self.params.values():
            hint = _hint_name(p.hint)
            parts.append(f"{p.name}: {hint}" if p.required else f"{p.name}: {hint} = {p.default!r}")
        return ", ".join(parts) or "no parameters"

    def __call__(self, batch: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
        """Apply to one batch; a failure inside the function (a user's bug) becomes a TransformError."""
        try:
            return self.fn(batch, **params)
        except TransformError:
            raise
        except Exception as exc:
            raise TransformError(f"{self.name} failed on a batch shaped {batch.shape}: "
                                 f"{type(exc).__name__}: {exc}") from exc


def _unknown(name: str, known: list[str]) -> TransformError:
    return TransformError(
        f"unknown transform {name!r}; known: {', '.join(known)}. Your own go in "
        "<workspace>/transforms/*.py, decorated with @etl.transform"
    )


# The built-in transforms; a workspace's own are in ``registry(folder)``, over these.
BUILTINS: Registry[Transform] = Registry("transforms", missing=_unknown)
_loading_code: ContextVar[str | None] = ContextVar("blueno_transform_code", default=None)  # file being run


def transform(name: str | None = None, *, fit: Fit | None = None) -> Callable[[Callable], Callable]:
    """Decorator: register ``fn`` under ``name`` (default: its own name).

    In a workspace's ``transforms/*.py`` it goes to that workspace's registry
    only; elsewhere to the built-ins.
    """

    def register(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        key = name or fn.__name__
        hints = typing.get_type_hints(fn)
        signature = inspect.signature(fn)
        params = {
            p.name: Param(p.name, hints.get(p.name, Any), p.default)
            for p in signature.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY
        }
        doc = inspect.getdoc(fn) or ""
        entry = Transform(key, fn, params, fit, _loading_code.get(), doc.splitlines()[0] if doc else "")
        plugins.target("transforms", BUILTINS).add(key, entry)
        return fn

    return register


def registry(folder: Path | None = None) -> Registry[Transform]:
    """The built-in transforms plus those of ``folder``'s ``*.py`` files (a workspace's
    ``transforms/``), run again only when those files change."""
    if folder is None:
        return BUILTINS
    return plugins.load("transforms", Path(folder), BUILTINS, _run_transform_file)


def names() -> list[str]:
    """The built-in transforms' names."""
    return BUILTINS.names()


def get(name: str) -> Transform:
    """A built-in transform (a workspace's own: ``registry(folder).get(name)``)."""
    return BUILTINS.get(name)


def check_step(name: str, params: Mapping[str, Any], workspace_root: Path | None = None) -> str | None:
    """Why this step cannot run, or None (the grid checks steps with it before queueing)."""
    try:
        found = registry(Path(workspace_root) / "transforms" if workspace_root is not None else None)
        found.get(name).check(params)
    except TransformError as exc:
        return str(exc)
    return None


def _run_transform_file(path: Path) -> None:
    source = path.read_bytes()
    module_name = f"{plugins.module_prefix('transforms', path.parent)}.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    token = _loading_code.set(hashlib.sha256(source).hexdigest()[:12])
    try:
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise TransformError(f"{path} failed to load: {type(exc).__name__}: {exc}") from None
    finally:
        _loading_code.reset(token)


# -- parameter types ------------------------------------------------------------------------


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _coerce(transform_name: str, param: Param, value: Any) -> Any:
    try:
        return _coerce_to(param.hint, value)
    except (TypeError, ValueError):
        raise TransformError(
            f"{transform_name}: {param.name}={value!r} is not {_hint_name(param.hint)}"
        ) from None


def _coerce_to(hint: Any, value: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _coerce_to(option, value)
            except (TypeError, ValueError):
                continue
        raise ValueError(value)
    if hint is type(None):
        if value is None:
            return None
        raise ValueError(value)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(value)
        return [_coerce_to(args[0] if args else Any, v) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ValueError(value)
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(value)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(value)
        return value
    raise TypeError(f"unsupported parameter type {hint}")
