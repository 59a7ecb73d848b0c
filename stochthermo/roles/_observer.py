"""Observers: what is measured along a run, and how it is declared in the Dataset.

An observer declares its output variables (:class:`Variable`: dims, long name, units, symbol, paper
equation) and, for each protocol and seed, turns a :class:`Run` into arrays with exactly those dims, minus
``protocol`` and ``seed``, which the engine adds (docs/architecture.md, "Output"). An observer may read
variables of other observers that it declares in :attr:`Observer.consumes` (xarray-simlab's foreign
variables); the engine orders the observers by these declarations.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from stochthermo.numerics._streams import RandomStreams
from stochthermo.roles._component import Component
from stochthermo.roles._distribution import Distribution
from stochthermo.roles._estimator import Estimator
from stochthermo.roles._process import ForwardProcess
from stochthermo.roles._protocol import Setup
from stochthermo.roles._solver import Solver
from stochthermo.roles._trajectory import Trajectory

if TYPE_CHECKING:
    import xarray as xr

    from stochthermo.roles._declarations import Column, FigureFunction, RelationColumn

#: dimensions the engine sweeps over; they come first in every variable, then ``seed``, then the rest
SWEEP_DIMS = ("protocol", "perturbation")


#: the longest ``long_name`` a variable may declare: a label for axes and table headers (xarray's automatic plot
#: labels wrap it with the units); what it is in full goes into ``description``
LONG_NAME_LIMIT = 40


@dataclass(frozen=True)
class Variable:
    """Declaration of one output variable (dims exclude ``protocol`` and ``seed``)."""

    dims: tuple[str, ...]
    #: a short label (at most 40 characters, ``LONG_NAME_LIMIT``, no parentheses): CF's ``long_name``
    long_name: str
    units: str
    symbol: str
    equation: str
    #: why non-finite values are legitimate in this variable; ``None``: they are an error
    nonfinite: str | None = None
    #: extra attributes (e.g. CF ``flag_values`` / ``flag_meanings``)
    attrs: dict = field(default_factory=dict)
    #: the symbol in matplotlib mathtext / LaTeX (attribute ``symbol_latex``, used by figure labels); ``None``:
    #: derived from ``symbol`` (``stochthermo.present.latex_symbol``: Greek names, sub- and superscripts)
    latex: str | None = None
    #: the unit a reader is shown (attribute ``display_units``, used by figure labels) where the CF ``units`` must
    #: be ``1``: entropy in units of Boltzmann's constant, ``k_B``, is dimensionless for UDUNITS
    display_units: str | None = None
    #: what the variable is, in a sentence (attribute ``description``); the long name where empty
    description: str = ""

    def __post_init__(self):
        if len(self.long_name) > LONG_NAME_LIMIT or "(" in self.long_name:
            raise ValueError(f"long_name {self.long_name!r} is a label of at most {LONG_NAME_LIMIT} characters "
                             "without parentheses: say the rest in description=")


@dataclass(frozen=True, eq=False)
class Coordinate:
    """Declaration of one of an observer's own coordinates: its values and what they are, written as CF
    attributes (a plain array in :meth:`Observer.coordinates` is a coordinate with a generic long name)."""

    values: np.ndarray
    long_name: str
    units: str = "1"
    #: the edges of a histogram's bins ((n, 2): each bin's lower and upper end; the values are its midpoints),
    #: written as the variable ``<name>_bounds`` that the coordinate's CF ``bounds`` attribute names
    bounds: np.ndarray | None = None
    #: the unit a reader is shown where ``units`` must be 1 (as :attr:`Variable.display_units`)
    display_units: str | None = None

    def __post_init__(self):
        if self.bounds is not None and np.shape(self.bounds) != (len(self.values), 2):
            raise ValueError(f"bounds of shape {np.shape(self.bounds)}: expected ({len(self.values)}, 2)")


def coordinate_values(declared: Coordinate | np.ndarray) -> np.ndarray:
    """The values of one entry of :meth:`Observer.coordinates`."""
    return np.asarray(declared.values if isinstance(declared, Coordinate) else declared)


@dataclass(frozen=True)
class Flows:
    """The particles of one (protocol, seed), on the saved forward time grid."""

    #: the true reverse process: its start law carried by the exact velocity
    true: Trajectory
    #: the perturbed reverse processes: each start carried by the estimator's velocity, by name
    perturbed: dict[str, Trajectory]
    #: the forward marginals P_t (P_τ carried by the exact velocity, by a deterministic solver from the exact
    #: ensemble where the protocol's solver is stochastic); ``true`` itself when that starts from P_τ and the
    #: solver is deterministic
    forward: Trajectory
    #: the perturbations whose start particles are the image of the true start's under the Gaussian transport map
    #: (row i of both ensembles is one draw of a coupling of the two starts, i.i.d. over i)
    coupled: frozenset[str] = frozenset()
    #: how the d >= 2 particles were chosen (``random``, ``sobol``, ``antithetic``)
    sampling: str = "random"


@dataclass(frozen=True)
class Run:
    """Everything one (protocol, seed) produced, in forward time. The flows are computed when an observer
    first reads them (an observer that needs no flow, such as the Monte Carlo cost, costs none)."""

    protocol: str
    seed: int
    process: ForwardProcess
    estimator: Estimator
    times: torch.Tensor
    perturbations: dict[str, Distribution]
    #: the law the true reverse process starts from, P_0†
    true_start: Distribution
    #: ``end_distribution`` (P_0† = P_τ: the true reverse process runs through the forward marginals) or ``prior``
    reverse_start: str
    #: the protocol's solver, which moved every flow of this run (an observer integrating more flows of the same
    #: protocol uses it rather than a solver class of its own)
    solver: Solver
    #: computes the flows on first use
    transport: Callable[[], Flows] = field(repr=False)
    #: the protocol's ``forward_group``: runs of one group and seed share their
    #: forward marginals exactly (measure them once)
    forward_group: str = ""

    @property
    def streams(self) -> RandomStreams:
        """The run's named random streams (:class:`~stochthermo.numerics.RandomStreams` of its seed): an
        observer draws from ``run.streams.generator("purpose", device=...)``, never from seed + offset."""
        return RandomStreams(self.seed)

    @property
    def stochastic(self) -> bool:
        """Whether the solver is stochastic (a reverse SDE): the saved velocities are then ν̂ at the particles,
        not the mean local velocity of their law, and 1-D ensembles are weighted samples, not ordered
        quantiles."""
        return self.solver.stochastic

    @cached_property
    def flows(self) -> Flows:
        return self.transport()

    @property
    def true(self) -> Trajectory:
        """The true reverse process: its start law (P_τ, or the prior with ``reverse_start: prior``)
        transported by the exact velocity."""
        return self.flows.true

    @property
    def forward(self) -> Trajectory:
        """Particles of the forward marginals P_t (docs/theory.md §2: every thermodynamic quantity is an
        average over P_t): P_τ transported by the exact velocity. The true reverse process itself when it
        starts from P_τ; with ``reverse_start: prior`` and P_τ ≠ prior the generator's path is not P_t, and
        this is a separate flow."""
        return self.flows.forward

    @property
    def perturbed(self) -> dict[str, Trajectory]:
        """The perturbed reverse processes: each start P̃_0† transported by the estimator, by name."""
        return self.flows.perturbed


class Observer(Component):
    """Abstract observer."""

    kind: ClassVar[str] = "observer"
    #: the variables of other observers that :meth:`observe` reads, by producing observer: the engine runs
    #: the producers first, and a scenario that lacks one is refused naming both observers
    consumes: ClassVar[dict[str, tuple[str, ...]]] = {}

    def prepare(self, setup: Setup) -> None:
        """Called once when the scenario is built, before any run (e.g. to fix a spatial grid or to refuse
        data it cannot measure); may raise :class:`~stochthermo.ScenarioError`. Does nothing by default."""

    def draws_random_numbers(self, setup: Setup) -> bool:
        """Whether :meth:`observe` draws random numbers of its own (from ``run.streams``, or anything seeded by
        ``run.seed``) on the runs of ``setup``. Where the particles do not depend on the seed either (1-D
        quadrature ensembles, a deterministic solver, a process without a random realisation) and no observer
        draws, the engine computes a protocol once and gives every seed that result. ``True`` by default: an
        observer that draws nothing says so."""
        return True

    @abstractmethod
    def variables(self) -> dict[str, Variable]:
        """The declared output variables, by name."""
        raise NotImplementedError

    def coordinates(self) -> dict[str, Coordinate | np.ndarray]:
        """Coordinates of the observer's own dims (e.g. a spatial grid), each a :class:`Coordinate` (values and
        CF attributes) or its bare values; none by default."""
        return {}

    # ---- presentation (classmethods: a Dataset read from disk has no observer instances) -------------------
    @classmethod
    def summary_columns(cls, ds: xr.Dataset) -> list[Column]:
        """The numbers of this observer that the summary table shows for ``ds`` (only variables ``ds`` has);
        none by default."""
        return []

    @classmethod
    def relation_columns(cls, ds: xr.Dataset) -> list[RelationColumn]:
        """The relation statuses of this observer that the summary table shows for ``ds``; none by default."""
        return []

    @classmethod
    def figures(cls, ds: xr.Dataset) -> dict[str, FigureFunction]:
        """Figures this observer can draw from ``ds``, by kind (``plot`` writes ``<stem>_<kind>.png``); none by
        default."""
        return {}

    @abstractmethod
    def observe(self, run: Run, measured: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Arrays named and shaped as :meth:`variables` declares, for one protocol and seed. ``measured``
        holds exactly the variables declared in :attr:`consumes`, ``measured[observer][variable]``."""
        raise NotImplementedError
