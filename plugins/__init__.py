"""The built-in plugins of stochthermo, registered through the same hooks a third party uses.

Installed under the import name ``stochthermo_plugins``.
"""

from . import distributions, estimators, schedules
from .observers import bounds, response, snapshots, thermodynamics
from .processes import optimal_transport, scheduled

BUILTIN_MODULES = (schedules, distributions, scheduled, optimal_transport, estimators,
                   thermodynamics, response, bounds, snapshots)
