r"""The equation a solver integrates (diffrax's layering: equation, solver, what is saved).

An :class:`Equation` bundles the velocity field the particles follow, the forward process whose force
:math:`f_t` and temperature :math:`T_t` a stochastic scheme needs, and the exact flow map or singular-endpoint
step where the process knows one. :func:`process_equation` and :func:`estimator_equation` build the two a
protocol has: the exact dynamics and the estimated reverse dynamics.
"""

from __future__ import annotations

from dataclasses import dataclass

from stochthermo.roles._estimator import Estimator
from stochthermo.roles._process import ForwardProcess
from stochthermo.types import EndpointStep, FlowMap, VelocityField


@dataclass(frozen=True)
class Equation:
    """The dynamics a solver integrates.

    ``velocity`` is the field the particles follow (ν_t of the process, or an estimator's ν̂_t); ``process``
    gives the force and temperature for stochastic schemes; ``flow_map`` is the exact flow of ``velocity``
    where one is known (``None`` otherwise); ``endpoint`` takes the last step into t = 0 where ``velocity`` is
    singular there (empirical data: the denoising step with the posterior frozen)."""

    velocity: VelocityField
    process: ForwardProcess
    flow_map: FlowMap | None = None
    endpoint: EndpointStep | None = None


def process_equation(process: ForwardProcess) -> Equation:
    """The exact dynamics of a process: its velocity ν_t, flow map and endpoint step where it has them."""
    return Equation(process.velocity, process, process.flow_map(), process.singular_endpoint())


def estimator_equation(estimator: Estimator) -> Equation:
    """The dynamics of the estimated reverse process: ν̂_t, with the estimator's flow map and endpoint step."""
    return Equation(estimator.velocity, estimator.process, estimator.flow_map(), estimator.singular_endpoint())
