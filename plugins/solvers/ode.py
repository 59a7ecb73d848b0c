r"""Built-in solvers of the probability-flow ODE :math:`\dot x = \hat\nu_t(x)` (docs/theory.md §4).

* ``rk4``: the classical fourth-order Runge–Kutta scheme, ``steps_per_save`` equal steps between saved
  times (global error :math:`O(h^4)`, tested in ``tests/test_integrate.py``);
* ``exact``: the equation's exact flow map (the straight lines of optimal transport); refused for an
  equation without one;
* ``auto`` (the default): the exact flow map where the equation has one, RK4 otherwise.

Where the velocity is singular at t = 0 (empirical data), every solver ends a flow into t = 0 with the
equation's endpoint step (the posterior frozen over the last interval).
"""

from __future__ import annotations

import torch

from stochthermo import ScenarioError, Solver, hookimpl
from stochthermo.numerics import rk4
from stochthermo.roles import Equation


def _with_endpoint(step, equation: Equation, x0: torch.Tensor, times: torch.Tensor):
    """``step(x0, times)`` up to the last saved time, then the equation's endpoint step into t = 0 where its
    velocity is singular there."""
    if equation.endpoint is None or float(times[-1]) != 0.0:
        return step(x0, times)
    if len(times) < 2 or float(times[-2]) <= 0:
        raise ValueError("a velocity singular at t = 0: flows may end at t = 0 only, coming from t > 0")
    positions, velocities = step(x0, times[:-1])
    last_position, last_velocity = equation.endpoint(positions[-1], float(times[-2]))
    return torch.cat([positions, last_position[None]]), torch.cat([velocities, last_velocity[None]])


class RungeKutta4(Solver):
    """Classical RK4 on the velocity field, ``steps_per_save`` steps between saved times."""

    name = "rk4"

    def __init__(self, steps_per_save: int = 1):
        if steps_per_save < 1:
            raise ScenarioError(f"must be >= 1, got {steps_per_save}", key="steps_per_save")
        self.steps_per_save = steps_per_save

    def solve(self, equation, x0, save_times, *, generator=None, common_noise=None):
        return _with_endpoint(lambda x, times: rk4(equation.velocity, x, times, substeps=self.steps_per_save),
                              equation, x0, save_times)


class ExactFlow(Solver):
    """The equation's exact flow map, evaluated at the saved times (no integration error)."""

    name = "exact"

    def check(self, equation):
        if equation.flow_map is None:
            return (f"process '{equation.process.name}' gives no exact flow map for this velocity "
                    "(use solver rk4 or auto)")
        return None

    def solve(self, equation, x0, save_times, *, generator=None, common_noise=None):
        return _with_endpoint(equation.flow_map, equation, x0, save_times)


class Automatic(RungeKutta4):
    """The exact flow map where the equation has one, RK4 (``steps_per_save``) otherwise."""

    name = "auto"

    def solve(self, equation, x0, save_times, *, generator=None, common_noise=None):
        if equation.flow_map is not None:
            return _with_endpoint(equation.flow_map, equation, x0, save_times)
        return super().solve(equation, x0, save_times)


@hookimpl
def stochthermo_register_solvers():
    return [Automatic, RungeKutta4, ExactFlow]
