r"""Estimators: the velocity :math:`\hat\nu_t(x)` the reverse (generating) process actually follows.

The reverse process runs the probability-flow ODE :math:`dx/d\tilde t = -\hat\nu_{\tau-\tilde t}(x)`
(docs/theory.md §4); in forward time this is :math:`\dot x = \hat\nu_t(x)` integrated from τ down to 0.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import torch

from stochthermo.numerics._log_density import autograd_velocity_and_divergence
from stochthermo.roles._component import Component
from stochthermo.roles._process import ForwardProcess
from stochthermo.types import EndpointStep, FlowMap


class Estimator(Component):
    """Abstract estimator; constructed with the forward process it estimates (context)."""

    kind: ClassVar[str] = "estimator"
    CONTEXT: ClassVar[frozenset[str]] = frozenset({"process"})
    #: True when ν̂ = ν exactly: the speed-accuracy relations (80)-(83) assume it; otherwise (100) applies (a
    #: class attribute, or an instance attribute where a parameter decides it)
    exact: bool = False

    def __init__(self, *, process: ForwardProcess):
        self.process = process

    @abstractmethod
    def velocity(self, t: float, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def velocity_and_divergence(self, t: float, x: torch.Tensor, *, probes: int = 16,
                                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """ν_t(x) and ∇·ν_t(x) (the log-density ODE, :func:`stochthermo.numerics.log_density_flow`): by
        autograd, exact for d ≤ 3, Hutchinson with ``probes`` above; override where ν is not differentiable
        by autograd."""
        return autograd_velocity_and_divergence(self.velocity, t, x, probes=probes, generator=generator)

    def flow_map(self) -> FlowMap | None:
        """The exact flow map of ν̂ where known (:meth:`ForwardProcess.flow_map`); ``None`` by default."""
        return None

    def singular_endpoint(self) -> EndpointStep | None:
        """The last step into t = 0 where ν̂ is singular there (:meth:`ForwardProcess.singular_endpoint`);
        ``None`` by default."""
        return None
