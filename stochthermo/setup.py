"""What a built scenario hands its observers: the protocols and the run's fixed settings.

:class:`Setup` is the small, read-only view an observer's ``prepare`` receives (instead of the whole
scenario): the time grid, the data, prior and perturbed start laws, the protocols with their built
plugins, the ensemble size, the seeds and where the run computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .distribution import Distribution
from .estimator import Estimator
from .process import ForwardProcess
from .solver import Solver


@dataclass(frozen=True)
class Protocol:
    """A forward process, the estimator the reverse process uses with it, and the solver that moves the
    particles of both."""

    name: str
    process: ForwardProcess
    estimator: Estimator
    solver: Solver


@dataclass(frozen=True)
class Setup:
    """The fixed settings of one (non-swept) scenario, as observers see them in ``prepare``."""

    name: str
    tau: float
    time_steps: int
    particles: int
    #: how the particles of d ≥ 2 ensembles are chosen: ``random``, ``sobol`` or ``antithetic``
    #: (:mod:`stochthermo.ensemble`)
    particle_sampling: str
    seeds: tuple[int, ...]
    #: ``end_distribution`` (the true reverse process starts from P_τ) or ``prior``
    reverse_start: str
    #: the scenario's device name (``auto``, ``cpu``, ``cuda``...) and dtype name (``float64``...)
    device: str
    dtype: str
    data: Distribution
    prior: Distribution
    perturbations: dict[str, Distribution]
    protocols: dict[str, Protocol]

    @property
    def times(self) -> torch.Tensor:
        """The saved forward time grid t_k = k τ / time_steps (float64, CPU)."""
        return torch.linspace(0.0, self.tau, self.time_steps + 1, dtype=torch.float64)
