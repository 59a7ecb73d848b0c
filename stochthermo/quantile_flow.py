r"""The exact flow map of a one-dimensional process whose marginals are Gaussian mixtures (docs/theory.md §4).

In one dimension the trajectories of the probability-flow ODE :math:`\dot x = \nu_t(x)` cannot cross, so a
particle keeps its cumulative probability: with :math:`F_t` the distribution function of :math:`P_t`,

.. math:: \frac{d}{dt}F_t(x_t) = \partial_t F_t(x_t) + P_t(x_t)\,\nu_t(x_t) = 0
   \qquad\Longrightarrow\qquad x_t = F_t^{-1}\big(F_{t_0}(x_{t_0})\big),

because the continuity equation :math:`\partial_t P_t = -\partial_x(\nu_t P_t)` integrates to
:math:`\partial_t F_t = -\nu_t P_t`. This holds for any starting point, not only for particles drawn from
:math:`P_{t_0}`: it is the flow map of the velocity field itself (a perturbed reverse start included). For
:math:`P_t = \sum_k w_k\,\mathcal N(c_k(t), s_k(t)^2)` the map needs no integration: at each saved time one
solves :math:`F_t(x) = F_{t_0}(x_{t_0})` (or the survival function's equation in the upper half,
where :math:`1 - F` would lose its digits) by Newton's method inside the exact bracket
:math:`\min_k(c_k + s_k\zeta) \le x \le \max_k(c_k + s_k\zeta)`, :math:`\zeta = \Phi^{-1}(F)` (every component's
quantile of the same level), started from an Adams–Bashforth predictor along the velocity; two or three
iterations reach float64 resolution. The velocity at the saved points follows from the same mixture
(:func:`mixture_velocity`). It is the default ``auto`` solver's choice for 1-D linear processes with smooth data
(tested against RK4 in tests/test_solvers.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .roots import safeguarded_newton


@dataclass(frozen=True)
class MovingMixture:
    """P_t = Σ_k w_k N(c_k, s_k²) in 1-D at one time, with the time derivatives of c_k and s_k; each (K,)."""

    weights: torch.Tensor
    centres: torch.Tensor
    stds: torch.Tensor
    dcentres: torch.Tensor
    dstds: torch.Tensor


#: t -> the components of P_t
MixtureComponents = Callable[[float], MovingMixture]
#: most Newton iterations per saved time (convergence takes two or three from the predictor)
NEWTON_ITERATIONS = 60
INV_SQRT_2PI, INV_SQRT_2 = 1 / math.sqrt(2 * math.pi), 1 / math.sqrt(2)


def quantile_flow(components: MixtureComponents, x0: torch.Tensor,
                  times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions and velocities ``(len(times), n, 1)`` of the flow through ``x0`` (n, 1) at ``times[0]``."""
    if x0.shape[1] != 1:
        raise ValueError(f"the quantile flow map exists in one dimension only (got dimension {x0.shape[1]})")
    grid = [float(t) for t in times]
    x = x0[:, 0]
    mixture = components(grid[0])
    cdf = _cdf_and_density(x, mixture.weights, mixture.centres, mixture.stds)[0]
    survival = _cdf_and_density(-x, mixture.weights, -mixture.centres, mixture.stds)[0]
    # each particle's conserved level, on the side where it keeps its digits (at most 1/2): sign +1 solves
    # F(x) = level, sign −1 solves the survival function's equation, a distribution function of −x
    upper = survival < cdf
    sign = torch.where(upper, -1.0, 1.0).to(x)
    level = torch.where(upper, survival, cdf)
    zeta = torch.special.ndtri(level)
    if not bool(torch.isfinite(zeta).all()):
        raise ValueError("a particle lies beyond 37 standard deviations of P_t, where its cumulative "
                         "probability underflows: the quantile flow map cannot follow it")
    positions = torch.empty((len(grid),) + x0.shape, dtype=x0.dtype, device=x0.device)
    velocities = torch.empty_like(positions)
    for k, t in enumerate(grid):
        if k:
            mixture = components(t)
            predictor = x + (t - grid[k - 1]) * _predicted_slope(velocities, grid, k)
            x = sign * _solve_level(sign * predictor, level, zeta, mixture.weights, sign * mixture.centres[:, None],
                                    mixture.stds)
        positions[k, :, 0] = x
        velocities[k, :, 0] = mixture_velocity(mixture, x)
    return positions, velocities


def mixture_velocity(mixture: MovingMixture, x: torch.Tensor) -> torch.Tensor:
    r"""The velocity that carries the moving mixture, :math:`\nu = -\partial_t F_t / P_t`, at x (n,):

    .. math:: \nu(x) = \sum_k r_k(x)\,\big(\dot c_k + \dot s_k z_k\big), \qquad z_k = (x - c_k)/s_k, \qquad
       r_k \propto w_k\,\varphi(z_k)/s_k,

    each component's own quantile velocity averaged with the responsibilities."""
    z = (x - mixture.centres[:, None]) / mixture.stds[:, None]
    responsibilities = torch.softmax(torch.log(mixture.weights / mixture.stds)[:, None] - 0.5 * z**2, dim=0)
    return (responsibilities * (mixture.dcentres[:, None] + mixture.dstds[:, None] * z)).sum(0)


def _predicted_slope(velocities, grid, k):
    """The mean velocity over [t_{k-1}, t_k] extrapolated from the last two (Adams–Bashforth, error O(h²))."""
    if k < 2:
        return velocities[k - 1, :, 0]
    ratio = (grid[k] - grid[k - 1]) / (grid[k - 1] - grid[k - 2])
    return (1 + ratio / 2) * velocities[k - 1, :, 0] - (ratio / 2) * velocities[k - 2, :, 0]


def _solve_level(start, level, zeta, weights, centres, stds):
    """y (n,) with F(y) = level under the components N(centres (K, n), stds (K,)²), from ``start``."""
    quantiles = centres + stds[:, None] * zeta  # every component's quantile of the level brackets the root
    low, high = quantiles.min(0).values, quantiles.max(0).values

    def residual_and_slope(y):
        cdf, density = _cdf_and_density(y, weights, centres, stds)
        return cdf - level, density

    return safeguarded_newton(residual_and_slope, low, high, NEWTON_ITERATIONS, start=start)


def _cdf_and_density(y, weights, centres, stds):
    """F(y) and P(y) of the mixture Σ w_k N(centres_k, stds_k²) at y (n,), centres (K,) or (K, n); components
    along the first axis, so the sums over them are elementwise additions. In the lower tail, where the
    equation is solved, F keeps its relative precision (a sum of positive terms)."""
    if centres.ndim == 1:
        centres = centres[:, None]
    z = (y - centres) / stds[:, None]
    cdf = (weights[:, None] * torch.special.erfc(-z * INV_SQRT_2)).sum(0) * 0.5  # torch's ndtr loses the lower tail
    density = ((weights / stds)[:, None] * torch.exp(-0.5 * z**2)).sum(0) * INV_SQRT_2PI
    return cdf, density
