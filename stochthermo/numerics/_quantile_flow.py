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
where :math:`1 - F` would lose its digits) by Halley's iteration from a cubic Hermite predictor along the
trajectory (one iteration reaches float64 resolution almost everywhere), with Newton's method inside the exact
bracket :math:`\min_k(c_k + s_k\zeta) \le x \le \max_k(c_k + s_k\zeta)`, :math:`\zeta = \Phi^{-1}(F)` (every
component's quantile of the same level) as the safeguard. The same solver gives a mixture's quantile function
(:func:`mixture_quantile`). The velocity at the saved points follows from the same mixture
(:func:`mixture_velocity`). It is the default ``auto`` solver's choice for 1-D linear processes with smooth data
(tested against RK4 in tests/test_quantile_flow.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from stochthermo.numerics._roots import safeguarded_newton


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
#: Halley iterations from the predictor (one settles almost every particle) before the bracketed Newton
#: iteration takes over the particles that have not settled
HALLEY_ITERATIONS = 2
#: a Halley step has settled when the error it leaves is below this (relative): float64 resolution
RESOLUTION = 2.0**-52
#: normal scores beyond this have levels Φ(−|z|) < 6e−300 that lose their relative precision (subnormal)
MAX_NORMAL_SCORE = 37.0
#: most iterations of the bracketed Newton iteration
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
    cdf = _cdf(x, mixture.weights, mixture.centres[:, None], mixture.stds)
    survival = _cdf(-x, mixture.weights, -mixture.centres[:, None], mixture.stds)
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
            predictor = _predicted_position(positions, velocities, grid, k)
            x = sign * solve_level(level, zeta, mixture.weights, sign * mixture.centres[:, None], mixture.stds,
                                   start=sign * predictor)
        positions[k, :, 0] = x
        velocities[k, :, 0] = mixture_velocity(mixture, x)
    return positions, velocities


def mixture_quantile(weights: torch.Tensor, centres: torch.Tensor, stds: torch.Tensor,
                     z: torch.Tensor) -> torch.Tensor:
    """x (n,) = F⁻¹(Φ(z)) of the 1-D mixture Σ w_k N(centres_k, stds_k²) (each (K,)) at normal scores z (n,)
    with ``|z| <= MAX_NORMAL_SCORE``: the equation F(x) = Φ(z) for z <= 0, 1 − F(x) = Φ(−z) above, each
    solved where its level keeps its relative precision, from the moment-matched Gaussian's quantile."""
    sign = torch.where(z > 0, -1.0, 1.0).to(z)
    zeta = -z.abs()
    level = 0.5 * torch.special.erfc(-zeta * INV_SQRT_2)
    mean = (weights * centres).sum()
    std = torch.sqrt((weights * (stds**2 + (centres - mean) ** 2)).sum())
    return sign * solve_level(level, zeta, weights, sign * centres[:, None], stds, start=sign * (mean + std * z))


def solve_level(level: torch.Tensor, zeta: torch.Tensor, weights: torch.Tensor, centres: torch.Tensor,
                stds: torch.Tensor, *, start: torch.Tensor) -> torch.Tensor:
    r"""y (n,) with F(y) = ``level`` (n,) under the mixture Σ_k w_k N(centres_k, stds_k²), centres (K, n),
    weights and stds (K,); ``zeta`` = Φ⁻¹(level).

    Halley's iteration from ``start``, :math:`y \leftarrow y - \delta_N/(1 - \delta_N P'/(2P))` with
    :math:`\delta_N = (F - \text{level})/P` (cubic convergence: a particle has settled when the error its step
    leaves, :math:`|C|\delta^3`, is below ``RESOLUTION``); a particle not settled after ``HALLEY_ITERATIONS`` (a poor
    start, a density that underflows) is solved by Newton's method safeguarded by the exact bracket
    :math:`\min_k(c_k + s_k\zeta) \le y \le \max_k(c_k + s_k\zeta)` (every component's quantile of the level)."""
    y = start
    for _ in range(HALLEY_ITERATIONS):
        cdf, density, slope, curvature = _cdf_and_derivatives(y, weights, centres, stds)
        newton = (cdf - level) / density
        bend = slope / (2 * density)
        step = newton / (1 - newton * bend)
        y = y - step
        # the error left is C δ³ with Halley's constant C = P'²/(4P²) − P''/(6P) (δ: the step, which is the
        # error it removed); a non-finite step is not settled
        error = (bend**2 - curvature / (6 * density)).abs() * step.abs() ** 3
        unsettled = ~(error <= RESOLUTION * (1 + y.abs()))
        if not bool(unsettled.any()):
            return y
    quantiles = centres[:, unsettled] + stds[:, None] * zeta[unsettled]
    low, high = quantiles.min(0).values, quantiles.max(0).values
    centres_left, level_left = centres[:, unsettled], level[unsettled]

    def residual_and_slope(x):
        cdf, density, *_ = _cdf_and_derivatives(x, weights, centres_left, stds)
        return cdf - level_left, density

    y = y.clone()
    y[unsettled] = safeguarded_newton(residual_and_slope, low, high, NEWTON_ITERATIONS, start=start[unsettled])
    return y


def mixture_velocity(mixture: MovingMixture, x: torch.Tensor) -> torch.Tensor:
    r"""The velocity that carries the moving mixture, :math:`\nu = -\partial_t F_t / P_t`, at x (n,):

    .. math:: \nu(x) = \sum_k r_k(x)\,\big(\dot c_k + \dot s_k z_k\big), \qquad z_k = (x - c_k)/s_k, \qquad
       r_k \propto w_k\,\varphi(z_k)/s_k,

    each component's own quantile velocity averaged with the responsibilities."""
    z = (x - mixture.centres[:, None]) / mixture.stds[:, None]
    responsibilities = torch.softmax(torch.log(mixture.weights / mixture.stds)[:, None] - 0.5 * z**2, dim=0)
    return (responsibilities * (mixture.dcentres[:, None] + mixture.dstds[:, None] * z)).sum(0)


def _predicted_position(positions, velocities, grid, k):
    """Where the particles will be at t_k, extrapolated from the last two saved times: the cubic Hermite
    polynomial through the positions and velocities at t_{k−2} and t_{k−1} (error O(h⁴); Euler's step at k = 1)."""
    h = grid[k] - grid[k - 1]
    if k < 2:
        return positions[k - 1, :, 0] + h * velocities[k - 1, :, 0]
    width = grid[k - 1] - grid[k - 2]
    u = 1 + h / width  # t_k in units of the last interval, from t_{k−2}
    h10, h01, h11 = u**3 - 2 * u**2 + u, 3 * u**2 - 2 * u**3, u**3 - u**2
    x0, x1 = positions[k - 2, :, 0], positions[k - 1, :, 0]
    return x1 + (h01 - 1) * (x1 - x0) + width * (h10 * velocities[k - 2, :, 0] + h11 * velocities[k - 1, :, 0])


def _cdf(y, weights, centres, stds):
    """F(y) of the mixture at y (n,), centres (K, 1) or (K, n)."""
    return _cdf_of_scores((y - centres) / stds[:, None], weights)


def _cdf_of_scores(z, weights):
    """F = ½ Σ_k w_k erfc(−z_k/√2) from the components' scores z (K, n) (the sum over the components a
    matrix-vector product). In the lower tail, where the equations are solved, F keeps its relative precision
    (a sum of positive terms; torch's ndtr loses it)."""
    return (0.5 * weights) @ torch.special.erfc(z * -INV_SQRT_2)


def _cdf_and_derivatives(y, weights, centres, stds):
    """F(y) and the density's value and first two derivatives, P, P', P'', of the mixture at y (n,), centres
    (K, n): with z_k = (y − c_k)/s_k and the components' densities p_k = w_k φ(z_k)/s_k,
    P = Σ p_k, P' = −Σ p_k z_k/s_k, P'' = Σ p_k (z_k² − 1)/s_k²."""
    inverse = 1 / stds
    z = (y - centres) * inverse[:, None]
    log_coefficients = torch.log(weights * inverse * INV_SQRT_2PI)[:, None]
    densities = torch.exp(torch.addcmul(log_coefficients, z, z, value=-0.5))
    reduced = z * inverse[:, None]  # z_k / s_k
    ones = torch.ones_like(weights)
    return (_cdf_of_scores(z, weights), ones @ densities, -(ones @ (densities * reduced)),
            ones @ (densities * torch.addcmul(-(inverse**2)[:, None], reduced, reduced)))
