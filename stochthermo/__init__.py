"""stochthermo: stochastic thermodynamics of diffusion and flow generative models.

Measures entropy production, Wasserstein speed, the distance to the optimal-transport geodesic and the
response of generation to a perturbed start, and checks the speed-accuracy relations of
Ikeda, Uda, Okanohara & Ito, arXiv:2407.04495 (Phys. Rev. X 15, 031031, 2025).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("stochthermo")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

from .distribution import Distribution, MixtureStructure, PointCloudStructure  # noqa: E402
from .errors import PluginError, ScenarioError, SimulationError, StochthermoError  # noqa: E402
from .estimator import Estimator  # noqa: E402
from .hookspecs import hookimpl  # noqa: E402
from .observer import Observer, Run, Variable  # noqa: E402
from .process import ForwardProcess  # noqa: E402
from .schedule import Schedule  # noqa: E402

__all__ = [
    "Distribution", "Estimator", "ForwardProcess", "MixtureStructure", "Observer", "PluginError", "PointCloudStructure",
    "Run",
    "Schedule", "ScenarioError", "SimulationError", "StochthermoError", "Variable", "__version__", "hookimpl",
    "load_scenario", "simulate",
]


def __getattr__(name):  # lazy: keeps `import stochthermo` light for plugin authors
    if name == "simulate":
        from .engine import simulate

        return simulate
    if name == "load_scenario":
        from .scenario import load_scenario

        return load_scenario
    raise AttributeError(name)
