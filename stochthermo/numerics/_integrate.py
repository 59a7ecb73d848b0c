r"""Pure integrators: the probability-flow ODE and integrals over the time grid.

The probability-flow ODE :math:`\dot x = \nu_t(x)` is integrated with the classical fourth-order
Runge–Kutta scheme on a given (increasing or decreasing) time grid; the velocity at every grid point is
returned too, because the thermodynamic observers need :math:`\nu_t(x_t)` along the particles.
"""

from __future__ import annotations

import numpy as np
import torch

from stochthermo.numerics._progress import steps
from stochthermo.types import VelocityField


def rk4(velocity: VelocityField, x0: torch.Tensor, times: torch.Tensor, *,
        substeps: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrate ``dx/dt = velocity(t, x)`` from ``x0`` at ``times[0]`` through ``times``, with ``substeps``
    equal RK4 steps between consecutive saved times.

    Returns ``(positions, velocities)``, each of shape ``(len(times),) + x0.shape``, where
    ``velocities[k] = velocity(times[k], positions[k])``. The grid may run backwards in time (the
    reverse process). Global error O(h⁴).
    """
    grid = [float(t) for t in times]
    positions = torch.empty((len(grid),) + x0.shape, dtype=x0.dtype, device=x0.device)
    velocities = torch.empty_like(positions)
    x = x0
    k1 = velocity(grid[0], x)
    progress = steps("flow", len(grid) - 1)
    for i in range(len(grid) - 1):
        positions[i], velocities[i] = x, k1
        h = (grid[i + 1] - grid[i]) / substeps
        for j in range(substeps):
            t = grid[i] + j * h
            if j:
                k1 = velocity(t, x)
            k2 = velocity(t + h / 2, x + (h / 2) * k1)
            k3 = velocity(t + h / 2, x + (h / 2) * k2)
            k4 = velocity(t + h, x + h * k3)
            x = x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
        k1 = velocity(grid[i + 1], x)
        progress.advance()
    positions[-1], velocities[-1] = x, k1
    return positions, velocities


def time_integral(values: np.ndarray, times: np.ndarray, axis: int = -1) -> np.ndarray:
    """∫ values dt over the grid by composite Simpson's rule (fourth order on an even number of steps)."""
    import scipy.integrate  # imported on use: it costs 0.6 s at start-up

    return scipy.integrate.simpson(values, x=times, axis=axis)


def cumulative_integral(values: np.ndarray, times: np.ndarray) -> np.ndarray:
    """∫_{times[0]}^{times[k]} values dt at every grid point k (cumulative Simpson's rule; 0 at the first)."""
    import scipy.integrate  # imported on use: it costs 0.6 s at start-up

    return scipy.integrate.cumulative_simpson(values, x=times, initial=0.0)
