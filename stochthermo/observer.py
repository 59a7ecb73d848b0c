"""Observers: what is measured along a run, and how it is declared in the Dataset.

An observer declares its output variables (:class:`Variable`: dims, long name, units, symbol, paper
equation) and, for each protocol and seed, turns a :class:`Run` into arrays with exactly those dims, minus
``protocol`` and ``seed``, which the engine adds (architecture.md, "Output"). Observers may read what the
observers they ``require`` measured earlier in the same run.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from .component import Component
from .distribution import Distribution
from .estimator import Estimator
from .process import ForwardProcess
from .trajectory import Trajectory

if TYPE_CHECKING:
    from .scenario import Scenario

#: dimensions the engine sweeps over; they come first in every variable, then ``seed``, then the rest
SWEEP_DIMS = ("protocol", "perturbation")


@dataclass(frozen=True)
class Variable:
    """Declaration of one output variable (dims exclude ``protocol`` and ``seed``)."""

    dims: tuple[str, ...]
    long_name: str
    units: str
    symbol: str
    equation: str
    #: why non-finite values are legitimate in this variable; ``None``: they are an error
    nonfinite: str | None = None
    #: extra attributes (e.g. CF ``flag_values`` / ``flag_meanings``)
    attrs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    """Everything one (protocol, seed) produced, in forward time. The reverse flows are computed when an
    observer first reads them (an observer that needs no flow, such as the Monte Carlo cost, costs none)."""

    protocol: str
    seed: int
    process: ForwardProcess
    estimator: Estimator
    times: torch.Tensor
    perturbations: dict[str, Distribution]
    #: the law the true reverse process starts from, P_0†
    true_start: Distribution
    #: computes (true, perturbed) on first use
    transport: Callable[[], tuple[Trajectory, dict[str, Trajectory]]] = field(repr=False)
    #: computes the forward trajectory on first use; ``None`` when the true reverse process starts from P_τ
    #: (it is then the forward trajectory)
    forward_transport: Callable[[], Trajectory] | None = field(default=None, repr=False)

    @cached_property
    def _trajectories(self) -> tuple[Trajectory, dict[str, Trajectory]]:
        return self.transport()

    @property
    def true(self) -> Trajectory:
        """The true reverse process: its start law (P_τ, or the prior with ``reverse_start: prior``)
        transported by the exact velocity."""
        return self._trajectories[0]

    @cached_property
    def forward(self) -> Trajectory:
        """Particles of the forward marginals P_t (physics.md §1-§2: every thermodynamic quantity is an average
        over P_t): P_τ transported by the exact velocity. The true reverse process itself when it starts from
        P_τ; with ``reverse_start: prior`` and P_τ ≠ prior the generator's path is not P_t, and this is a
        separate flow."""
        return self.true if self.forward_transport is None else self.forward_transport()

    @property
    def perturbed(self) -> dict[str, Trajectory]:
        """The perturbed reverse processes: each start P̃_0† transported by the estimator, by name."""
        return self._trajectories[1]


class Observer(Component):
    """Abstract observer."""

    kind: ClassVar[str] = "observer"
    #: names of observers whose results :meth:`observe` reads
    requires: ClassVar[tuple[str, ...]] = ()

    def prepare(self, scenario: Scenario) -> None:
        """Called once when the scenario is loaded, before any run (e.g. to fix a spatial grid); may raise
        :class:`~stochthermo.ScenarioError`. Does nothing by default."""

    @abstractmethod
    def variables(self) -> dict[str, Variable]:
        """The declared output variables, by name."""
        raise NotImplementedError

    def coordinates(self) -> dict[str, np.ndarray]:
        """Coordinates of the observer's own dims (e.g. a spatial grid); none by default."""
        return {}

    @abstractmethod
    def observe(self, run: Run, measured: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Arrays named and shaped as :meth:`variables` declares, for one protocol and seed."""
        raise NotImplementedError
