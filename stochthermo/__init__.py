"""stochthermo: stochastic thermodynamics of diffusion and flow generative models.

Measures entropy production, Wasserstein speed, the distance to the optimal-transport geodesic and the
response of generation to a perturbed start, and checks the speed-accuracy relations of
Ikeda, Uda, Okanohara & Ito, arXiv:2407.04495 (Phys. Rev. X 15, 031031, 2025).

The public API is :data:`__all__`; names are imported on first use, so ``import stochthermo`` (and the
command line's ``--help``) stays cheap. Modules a plugin may import: those listed in docs/architecture.md
("Public modules"); the others are private.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("stochthermo")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

#: public name -> the module that defines it
_EXPORTS = {
    "Distribution": "distribution", "MixtureStructure": "distribution", "PointCloudStructure": "distribution",
    "PluginError": "errors", "ScenarioError": "errors", "SimulationError": "errors", "StochthermoError": "errors",
    "ConformanceError": "errors",
    "Estimator": "estimator", "ForwardProcess": "process", "Schedule": "schedule", "Solver": "solver",
    "Equation": "solver", "Observer": "observer", "Run": "observer", "Flows": "observer", "Variable": "observer",
    "Protocol": "setup", "Setup": "setup", "hookimpl": "hookspecs",
    "Column": "presentation", "RelationColumn": "presentation",
    "ScenarioSpec": "spec", "read_spec": "spec", "parse_spec": "spec",
    "Scenario": "scenario", "Sweep": "scenario", "load_scenario": "scenario", "parse_scenario": "scenario",
    "build": "scenario", "Registry": "registry", "simulate": "engine",
}
__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'stochthermo' has no attribute {name!r}")


def __dir__():
    return __all__
