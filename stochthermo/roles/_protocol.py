"""What a built scenario hands its observers: the protocols, the run's fixed settings and the engine's services.

:class:`Setup` is the small, read-only view an observer's ``prepare`` receives (instead of the whole
scenario): the time grid, the data, prior and perturbed start laws, the protocols with their built
plugins, the ensemble size, the seeds and where the run computes; and :meth:`Setup.solver`, which builds a
solver by name with the scenario's registry, so an observer that integrates flows of its own (an SDE beside
the protocol's ODE, a sampler at a coarse step) never imports another plugin's class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from stochthermo.roles._distribution import Distribution
from stochthermo.roles._estimator import Estimator
from stochthermo.roles._process import ForwardProcess
from stochthermo.roles._solver import Solver


@dataclass(frozen=True)
class DrivingProtocol:
    """One driving protocol of the scenario (``protocols.<name>``): a forward process, the estimator the
    reverse (generating) process uses with it, and the solver that moves the particles of both."""

    name: str
    process: ForwardProcess
    estimator: Estimator
    solver: Solver
    #: the deterministic solver that carries the forward marginals where ``solver`` is stochastic: the forward
    #: process does not depend on the sampler, so its quantities are measured once, on its exact ensemble
    forward_solver: Solver | None = None
    #: which forward process this is (the canonical JSON of its ``process`` specification and of the deterministic
    #: solver that carries its marginals): protocols with one ``forward_group`` drive the same process on the same
    #: numerics, whose forward quantities an observer may measure once for all
    forward_group: str = ""


@dataclass(frozen=True)
class Setup:
    """The fixed settings of one (non-swept) scenario, as observers see them in ``prepare``."""

    name: str
    tau: float
    time_steps: int
    particles: int
    #: how the particles of d ≥ 2 ensembles are chosen: ``random``, ``sobol`` or ``antithetic``
    #: (:func:`stochthermo.measures.make_ensemble`)
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
    protocols: dict[str, DrivingProtocol]
    #: ``(spec, key) -> Solver``: the scenario's registry building a solver (:meth:`solver`)
    solver_factory: Callable[[Any, str], Solver] = field(repr=False, compare=False)

    def solver(self, spec: str | dict, key: str) -> Solver:
        """A solver built from ``spec`` (a name, or a mapping with ``name`` and parameters) by the registry that
        built the scenario; ``key`` is the observer's parameter its errors name."""
        return self.solver_factory(spec, key)

    @property
    def times(self) -> torch.Tensor:
        """The saved forward time grid t_k = k τ / time_steps (float64, CPU)."""
        return torch.linspace(0.0, self.tau, self.time_steps + 1, dtype=torch.float64)
