"""Scenario parameters of plugin classes: introspection of ``__init__`` and validation of values.

Supported annotations: ``float``, ``int``, ``bool``, ``str``, ``pathlib.Path`` (a file name, resolved against
the scenario file's directory), ``collections.abc.Callable`` (``package.module:name``, imported: a scenario
file is code you trust; from Python, the object itself), ``list[float]``, ``list[list[float]]``, unions of these
(``float | list[float]``), ``X | None``, and plugin base classes (``Schedule``, ``Distribution``...), whose
values are plugin specifications resolved by the scenario loader.
"""

from __future__ import annotations

import importlib
import inspect
import math
import types
import typing
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stochthermo.errors import ScenarioError, did_you_mean

#: directory against which relative file names in a scenario are resolved (the scenario file's, while loading)
SCENARIO_DIRECTORY: ContextVar[Path] = ContextVar("scenario_directory", default=Path("."))


@dataclass(frozen=True)
class Parameter:
    name: str
    annotation: Any
    default: Any  # inspect.Parameter.empty when required

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    @property
    def type_name(self) -> str:
        return type_name(self.annotation)


def parameters_of(cls: type) -> list[Parameter]:
    """The scenario parameters of a plugin class, in signature order (context arguments excluded)."""
    hints = typing.get_type_hints(cls.__init__)
    context = getattr(cls, "CONTEXT", frozenset())
    params = []
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name == "self" or p.name in context or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        params.append(Parameter(p.name, hints.get(p.name, Any), p.default))
    return params


def construct(cls: type, given: dict[str, Any], *, key: str = "", what: str | None = None,
              context: dict[str, Any] | None = None, plugin=None) -> Any:
    """``cls(**context, **values)``, the values ``given`` under the scenario ``key`` checked against the typed
    parameters of ``cls.__init__``: an unknown parameter gets a "did you mean", a value is coerced to its
    annotation (``plugin(kind, spec, key)`` builds those annotated with a plugin base class), a missing
    required one is named, and the class's own errors are located under ``key``. ``what`` names the owner in
    messages (``"schedule 'cosine'"``); plugins and the scenario's top-level settings are built alike."""
    params = {p.name: p for p in parameters_of(cls)}
    owner = f"{what} has no parameter" if what else "unknown key"
    values = {}
    for name, value in given.items():
        where = f"{key}.{name}" if key else str(name)
        if name not in params:
            raise ScenarioError(f"{owner} '{name}'{did_you_mean(str(name), params)}" if what else
                                f"{owner}{did_you_mean(str(name), params)}", key=where)
        annotation = params[name].annotation
        base = plugin_base(annotation)
        values[name] = plugin(base.kind, value, where) if base is not None else coerce(value, annotation, where)
    missing = [p for p in params.values() if p.required and p.name not in given]
    if missing:
        raise ScenarioError(f"{what or 'the scenario'} needs parameter '{missing[0].name}' ({missing[0].type_name})",
                            key=key or None)
    try:
        return cls(**(context or {}), **values)
    except ScenarioError as exc:
        raise exc.located(key_prefix=key or None) from None


def type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        kind = getattr(annotation, "kind", None)
        return f"{kind} plugin" if kind and annotation.__module__.startswith("stochthermo") else annotation.__name__
    return str(annotation).replace("typing.", "")


def plugin_base(annotation: Any) -> type | None:
    """The plugin base class an annotation asks for (``Schedule``, ``Distribution``...), if any."""
    from stochthermo.roles._component import Component

    for option in _union_options(annotation):
        if isinstance(option, type) and issubclass(option, Component):
            return option
    return None


def coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check a YAML value against an annotation and convert it (ints to floats where floats are asked).

    Raises :class:`ScenarioError` with ``key`` when the value does not fit.
    """
    errors = []
    options = _union_options(annotation)
    for option in options:
        try:
            return _coerce_one(value, option, key)
        except ScenarioError as exc:
            if option is not type(None):  # "expected nothing" says nothing about a value that was given
                errors.append(exc.problem)
    raise ScenarioError(errors[0] if len(errors) == 1 else f"expected {type_name(annotation)}, got {value!r}",
                        key=key)


def _union_options(annotation: Any) -> tuple:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _coerce_one(value: Any, annotation: Any, key: str) -> Any:
    if annotation is Any:
        return value
    if annotation is type(None):
        if value is None:
            return None
        raise ScenarioError(f"expected nothing, got {value!r}", key=key)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ScenarioError(f"expected true or false, got {value!r}", key=key)
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ScenarioError(f"expected an integer, got {value!r}", key=key)
    if annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ScenarioError(f"expected a finite number, got {value!r}", key=key)
            return float(value)
        raise ScenarioError(f"expected a number, got {value!r}", key=key)
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ScenarioError(f"expected a string, got {value!r}", key=key)
    if annotation is Path:
        if isinstance(value, str) and value:
            return SCENARIO_DIRECTORY.get() / Path(value).expanduser()
        raise ScenarioError(f"expected a file name, got {value!r}", key=key)
    if annotation is Callable or typing.get_origin(annotation) is Callable:
        return import_callable(value, key)
    if typing.get_origin(annotation) is list:
        (inner,) = typing.get_args(annotation)
        if not isinstance(value, list) or not value:
            raise ScenarioError(f"expected a non-empty list ({type_name(annotation)}), got {value!r}", key=key)
        return [_coerce_one(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    raise ScenarioError(f"parameter type {type_name(annotation)} is not supported", key=key)


def import_callable(value: Any, key: str) -> Callable:
    """A callable named ``package.module:name`` (imported; the module runs, as a scenario file is code you trust),
    or a callable object given from Python as it is."""
    if callable(value) and not isinstance(value, str):
        return value
    if not isinstance(value, str):
        raise ScenarioError(f"expected package.module:name, got {value!r}", key=key)
    module_name, _, attribute = value.partition(":")
    if not module_name or not attribute:
        raise ScenarioError(f"expected package.module:name, got '{value}'", key=key)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ScenarioError(f"cannot import '{module_name}': {exc}", key=key) from None
    try:
        found = getattr(module, attribute)
    except AttributeError:
        raise ScenarioError(f"module '{module_name}' has no '{attribute}'", key=key) from None
    if not callable(found):
        raise ScenarioError(f"'{value}' is not callable", key=key)
    return found
