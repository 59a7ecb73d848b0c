"""The built-in plugins of stochthermo, registered through the same hooks a third party uses.

Installed under the import name ``stochthermo_plugins``, one package per role, named as the registry's
kinds are: ``schedules``, ``distributions``, ``processes``, ``estimators``, ``solvers``, ``observers``. A
module imports the public API of :mod:`stochthermo` and modules of its own role's package only (a test
enforces it); what several roles need lives in the engine's public packages.

:data:`BUILTIN_MODULES` lists the modules that implement hooks, in registration order; each is registered
as the plugin ``builtin.<role>.<module>``.
"""

from .distributions import analytic, images, point_clouds
from .estimators import diffusers_model, exact, neural, torch_module
from .observers import (
    bounds,
    estimation,
    fokker_planck,
    image_snapshots,
    long_time_limit,
    monte_carlo,
    observable_speed,
    ode_sde_gap,
    ot_bridge,
    prior_error,
    response,
    snapshots,
    thermodynamics,
    trajectories,
)
from .processes import optimal_transport, rotational, scheduled
from .schedules import diffusers, standard, variance_exploding
from .solvers import ode, sde

BUILTIN_MODULES = (standard, variance_exploding, diffusers, analytic, point_clouds, images, scheduled, rotational,
                   optimal_transport, exact, torch_module, diffusers_model, neural, ode, sde, thermodynamics,
                   response, bounds, snapshots, monte_carlo, image_snapshots, estimation, trajectories, fokker_planck,
                   ode_sde_gap, prior_error, long_time_limit, ot_bridge, observable_speed)
