"""The plugin hooks of stochthermo (pluggy). Built-in and third-party plugins implement the same hooks.

Every hook is a *registration* hook: it is called once, when the registry loads, takes no arguments, and
returns a list of classes (possibly empty). The registry checks each class (a subclass of the right base,
not abstract, a snake_case ``name``) and rejects a name registered twice, naming both plugins.

Implement a hook in a module or object with the ``stochthermo.hookimpl`` marker and expose it through the
``stochthermo.plugins`` entry-point group::

    [project.entry-points."stochthermo.plugins"]
    my_schedules = "my_package.plugin"
"""

from __future__ import annotations

import pluggy

PROJECT = "stochthermo"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def stochthermo_register_schedules() -> list[type]:
    """Return :class:`stochthermo.Schedule` subclasses: (m_s, σ_s) and their derivatives."""


@hookspec
def stochthermo_register_processes() -> list[type]:
    """Return :class:`stochthermo.ForwardProcess` subclasses: forward dynamics with exact velocities."""


@hookspec
def stochthermo_register_distributions() -> list[type]:
    """Return :class:`stochthermo.Distribution` subclasses: data and reverse-start laws."""


@hookspec
def stochthermo_register_estimators() -> list[type]:
    """Return :class:`stochthermo.Estimator` subclasses: velocities used by the reverse process."""


@hookspec
def stochthermo_register_observers() -> list[type]:
    """Return :class:`stochthermo.Observer` subclasses: measured quantities and their variables."""


@hookspec
def stochthermo_register_solvers() -> list[type]:
    """Return :class:`stochthermo.Solver` subclasses: how particles are moved (ODE and SDE schemes)."""
