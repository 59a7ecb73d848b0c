"""The built-in plugins of stochthermo, registered through the same hooks a third party uses.

Installed under the import name ``stochthermo_plugins``.
"""

from . import distributions, estimators, point_clouds, schedules
from .observers import bounds, response, snapshots, thermodynamics
from .processes import optimal_transport, rotational, scheduled

BUILTIN_MODULES = (schedules, distributions, point_clouds, scheduled, rotational, optimal_transport, estimators,
                   thermodynamics, response, bounds, snapshots)
