"""The built-in plugins of stochthermo, registered through the same hooks a third party uses.

Installed under the import name ``stochthermo_plugins``.
"""

from . import (
    diffusers_model,
    diffusers_schedule,
    distributions,
    estimators,
    images,
    neural,
    point_clouds,
    schedules,
    sde_solvers,
    solvers,
    torch_module,
)
from .observers import (
    bounds,
    estimation,
    fokker_planck,
    image_snapshots,
    long_time_limit,
    monte_carlo,
    ode_sde_gap,
    ot_bridge,
    prior_error,
    response,
    snapshots,
    thermodynamics,
    trajectories,
)
from .processes import optimal_transport, rotational, scheduled

BUILTIN_MODULES = (schedules, diffusers_schedule, distributions, point_clouds, images, scheduled, rotational,
                   optimal_transport, estimators, torch_module, diffusers_model,
                   neural, solvers, sde_solvers, thermodynamics, response, bounds, snapshots, monte_carlo,
                   image_snapshots, estimation, trajectories, fokker_planck,
                   ode_sde_gap, prior_error, long_time_limit, ot_bridge)
