"""stochthermo: stochastic thermodynamics of diffusion and flow generative models.

Measures entropy production, Wasserstein speed, the distance to the optimal-transport geodesic and the
response of generation to a perturbed start, and checks the speed-accuracy relations of
Ikeda, Uda, Okanohara & Ito, arXiv:2407.04495 (Phys. Rev. X 15, 031031, 2025).

The public API is ``__all__``; names are imported on first use, so ``import stochthermo`` (and the
command line's ``--help``) stays cheap. A plugin imports this package, :mod:`stochthermo.roles`,
:mod:`stochthermo.numerics`, :mod:`stochthermo.measures`, :mod:`stochthermo.present`,
:mod:`stochthermo.testing`, :mod:`stochthermo.types`, :mod:`stochthermo.errors` and :mod:`stochthermo.hookspecs`;
every module whose name starts with an underscore, and the ``engine`` and ``output`` packages, are the
engine's own (docs/architecture.md, "Public API").
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("stochthermo")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

#: public name -> the module that defines it
_EXPORTS = {
    **dict.fromkeys(["Component", "Distribution", "MixtureStructure", "PointCloudStructure", "Schedule",
                     "ForwardProcess", "Estimator", "Solver", "Equation", "Observer", "Run", "Flows", "Variable",
                     "Coordinate", "Trajectory", "DrivingProtocol", "Setup", "Column", "RelationColumn",
                     "RelationStatus"],
                    "roles"),
    **dict.fromkeys(["PluginError", "ScenarioError", "SimulationError", "StochthermoError", "ConformanceError"],
                    "errors"),
    "hookimpl": "hookspecs",
    "import_callable": "engine._parameters",
    **dict.fromkeys(["ScenarioSpec", "read_spec", "parse_spec"], "engine._spec"),
    **dict.fromkeys(["Scenario", "Sweep", "load_scenario", "parse_scenario", "build"], "engine._build"),
    **dict.fromkeys(["Registry", "default_registry"], "engine._registry"),
    "simulate": "engine._simulate",
    **dict.fromkeys(["run", "rerun", "RunResult"], "engine._run"),
    **dict.fromkeys(["Executor", "InProcess", "DaskExecutor", "TaskFailures", "OnTask"], "engine._executors"),
    **dict.fromkeys(["Task", "TaskStore", "DamagedTaskFile"], "engine._tasks"),
    "open_run": "output._files",
    "reproducible": "engine._dataset",
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
