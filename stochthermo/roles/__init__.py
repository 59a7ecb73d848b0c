"""The roles a plugin implements: the base classes, the capabilities it may declare, and what an observer
declares for presentation.

A plugin subclasses one of :class:`Schedule`, :class:`ForwardProcess`, :class:`Distribution`,
:class:`Estimator`, :class:`Solver` or :class:`Observer` (all :class:`Component` s) and registers it through
the hooks of :mod:`stochthermo.hookspecs`. What it can do beyond its role's required methods it declares by
implementing the small runtime-checkable protocols below (:class:`ForceField`, :class:`GaussianConditional`,
...); code asks ``isinstance(plugin, Capability)``, never the concrete class (docs/architecture.md,
"Capabilities").
"""

from stochthermo.roles._capabilities import (
    ConditionalTarget,
    ForceField,
    GaussianConditional,
    HoldsImages,
    ImageLayout,
    KineticCostBound,
    MinibatchCoupling,
    Trained,
)
from stochthermo.roles._component import Component
from stochthermo.roles._declarations import Column, FigureFunction, RelationColumn, recorded
from stochthermo.roles._distribution import (
    Distribution,
    MixtureStructure,
    PointCloudStructure,
    categorical_from_uniform,
    gaussian_components,
)
from stochthermo.roles._equation import Equation, estimator_equation, process_equation
from stochthermo.roles._estimator import Estimator
from stochthermo.roles._observer import SWEEP_DIMS, Coordinate, Flows, Observer, Run, Variable
from stochthermo.roles._process import ForwardProcess
from stochthermo.roles._protocol import DrivingProtocol, Setup
from stochthermo.roles._relations import HOLDS, NOT_APPLICABLE, STATUS_ATTRS, UNRESOLVED, VIOLATED, RelationStatus
from stochthermo.roles._schedule import Schedule, schedule_problem
from stochthermo.roles._solver import Solver
from stochthermo.roles._trajectory import Trajectory

__all__ = [
    "Column",
    "Component",
    "Coordinate",
    "ConditionalTarget",
    "Distribution",
    "Equation",
    "Estimator",
    "FigureFunction",
    "Flows",
    "ForceField",
    "ForwardProcess",
    "GaussianConditional",
    "HOLDS",
    "HoldsImages",
    "ImageLayout",
    "KineticCostBound",
    "MinibatchCoupling",
    "MixtureStructure",
    "NOT_APPLICABLE",
    "Observer",
    "PointCloudStructure",
    "DrivingProtocol",
    "RelationColumn",
    "RelationStatus",
    "Run",
    "STATUS_ATTRS",
    "SWEEP_DIMS",
    "Schedule",
    "Setup",
    "Solver",
    "Trained",
    "Trajectory",
    "UNRESOLVED",
    "VIOLATED",
    "Variable",
    "categorical_from_uniform",
    "estimator_equation",
    "gaussian_components",
    "process_equation",
    "recorded",
    "schedule_problem",
]
