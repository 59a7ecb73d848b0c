"""The base every plugin class derives from: a name, typed parameters, and device placement.

A plugin class declares its scenario parameters as keyword arguments of ``__init__`` with type
annotations and defaults; the engine's typed-parameter machinery validates a scenario mapping against them.
Arguments named in ``CONTEXT`` are injected by the engine (the data distribution, τ, ...) and are not
scenario keys.
"""

from __future__ import annotations

import copy
import dataclasses
from abc import ABC
from typing import ClassVar, Self

import torch


class Component(ABC):
    """Common base of schedules, processes, estimators, observers and distributions."""

    #: snake_case name under which the class is registered and referred to in scenarios
    name: ClassVar[str]
    #: role of the class in the registry ("schedule", "process", ...); set by each abstract base
    kind: ClassVar[str]
    #: ``__init__`` arguments supplied by the engine rather than by the scenario file
    CONTEXT: ClassVar[frozenset[str]] = frozenset()

    def to(self, device: torch.device, dtype: torch.dtype = torch.float64) -> Self:
        """A copy whose floating-point tensor attributes (recursively through components, lists, tuples and
        dataclasses) live on ``device`` with ``dtype``."""
        clone = copy.copy(self)
        for key, value in vars(self).items():
            setattr(clone, key, _moved(value, device, dtype))
        return clone

    def inputs(self) -> dict[str, str]:
        """What identifies this component beyond its scenario parameters: digests of the files or objects it
        read (a model's weights, an image folder). The engine records them in the Dataset (``inputs``) and in
        every task key, so a changed model file or data set never reuses a result computed from the old one.
        Empty by default: parameters alone determine most components."""
        return {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} '{getattr(self, 'name', '?')}'>"


def _moved(value, device, dtype):
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype if value.is_floating_point() else value.dtype)
    if isinstance(value, Component):
        return value.to(device, dtype)
    if isinstance(value, list | tuple):
        return type(value)(_moved(v, device, dtype) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # e.g. a MixtureStructure
        return dataclasses.replace(value, **{f.name: _moved(getattr(value, f.name), device, dtype)
                                             for f in dataclasses.fields(value) if f.init})
    return value
