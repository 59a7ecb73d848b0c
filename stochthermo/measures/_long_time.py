r"""The probability-flow map from the prior to the data for every horizon T, T = ∞ included
(docs/theory.md §9).

A variance-preserving (VP / OU) process has marginals :math:`x = a\,y + \sqrt{c(1 - a^2)}\,\varepsilon`
(prior N(0, cI), signal level a decreasing from 1 to 0). In variance-exploding coordinates
:math:`u = x/a`, :math:`\sigma^2 = c(1 - a^2)/a^2` the process is :math:`u = y + \sigma\varepsilon`, whose
probability flow is :math:`du/d\sigma = (u - \bar y)/\sigma` with :math:`\bar y = E[y\mid u]`. Back in x, with
the signal level itself as time,

.. math:: \frac{dx}{da} = \frac{\bar y(x, a) - a\,x}{1 - a^2}, \qquad
   \bar y(x, a) = \sum_j y_j\,\mathrm{softmax}_j\Big(\log w_j - \frac{|x - a\,y_j|^2}{2c(1 - a^2)}\Big)

for weighted points. The right-hand side is the same for every VP schedule (the flow only depends on the
path of marginals, not on its speed) and regular at a = 0, where :math:`\bar y = \sum_j w_j y_j`: the flow
from T = ∞ starts there like any other. The map :math:`\Phi_T` starts a prior sample z at
:math:`a_T = e^{-T}` (T the equivalent Ornstein–Uhlenbeck time of the signal level) and runs to a = 1; for
points the posterior collapses there and :math:`\Phi_T(z) = y_{J_T(z)}`, the point with the largest
posterior at the last grid level.

Numerics: RK4 in :math:`\theta = \arcsin a`, :math:`dx/d\theta = (\bar y - a x)/\cos\theta`, on a grid
clustered quadratically towards θ = π/2 (the relaxation rate 1/cos θ grows there; the step over rate stays
below 2/(N − k) at step k of N, inside RK4's stability interval). The last level is
:math:`\pi/2 - (\pi/2 - \theta_T)/N^2`, where the posterior's log-odds between points a distance δ apart
exceed :math:`\delta^2N^4/(2c\,(\pi/2)^2)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from stochthermo.numerics._integrate import rk4
from stochthermo.numerics._posterior import posterior_average

#: RK4 steps of a flow from the prior to the data
FLOW_STEPS = 256

PosteriorMean = Callable[[torch.Tensor, float], torch.Tensor]


def point_posterior_mean(points: torch.Tensor, weights: torch.Tensor, prior_variance: float) -> PosteriorMean:
    """ȳ(x, a) for weighted points and a VP process with prior N(0, c I), c = ``prior_variance``."""
    log_weights = torch.log(weights)

    def mean(x: torch.Tensor, a: float) -> torch.Tensor:
        return posterior_average(x, a * points.to(x), points.to(x), prior_variance * (1 - a * a),
                                 log_weights.to(x)).mean

    return mean


def point_posterior(points: torch.Tensor, weights: torch.Tensor, prior_variance: float, x: torch.Tensor,
                    a: float) -> torch.Tensor:
    """The posterior probabilities of the points given x at signal level a, (n, m): the posterior average of
    the indicator of each point."""
    indicators = torch.eye(len(points), dtype=x.dtype, device=x.device)
    return posterior_average(x, a * points.to(x), indicators, prior_variance * (1 - a * a),
                             torch.log(weights.to(x))).mean


def gaussian_posterior_mean(mean: torch.Tensor, covariance: torch.Tensor, prior_variance: float) -> PosteriorMean:
    """ȳ(x, a) = m + a S (a² S + c(1 − a²) I)⁻¹ (x − a m) for Gaussian data N(m, S)."""
    eye = torch.eye(len(mean), dtype=covariance.dtype, device=covariance.device)

    def posterior(x: torch.Tensor, a: float) -> torch.Tensor:
        marginal = a * a * covariance + prior_variance * (1 - a * a) * eye
        gain = a * covariance @ torch.linalg.inv(marginal)
        return mean.to(x) + (x - a * mean.to(x)) @ gain.to(x).mT

    return posterior


def signal_level(horizon: float) -> float:
    """a_T = e^{−T} (0 for T = ∞)."""
    return math.exp(-horizon)


def level_grid(start_level: float, steps: int = FLOW_STEPS, *, dtype=torch.float64) -> torch.Tensor:
    """θ from arcsin(a_T) towards π/2, clustered quadratically at the end (module docstring), (steps,)."""
    start = math.asin(start_level)
    remaining = (1 - torch.arange(steps, dtype=dtype) / steps) ** 2
    return math.pi / 2 - (math.pi / 2 - start) * remaining


def probability_flow(posterior_mean: PosteriorMean, z: torch.Tensor, horizon: float, *,
                     steps: int = FLOW_STEPS, until: float | None = None) -> tuple[torch.Tensor, float]:
    """Φ_T: prior samples ``z`` carried from a_T = e^{−T} (``horizon`` may be ``math.inf``) towards a = 1, or
    up to the signal level ``until``; returns the positions and the last signal level reached."""
    grid = level_grid(signal_level(horizon), steps).to(z.device)
    if until is not None:
        grid = grid[grid <= math.asin(until)]
        grid = torch.cat([grid, torch.tensor([math.asin(until)], dtype=grid.dtype, device=grid.device)])

    def velocity(theta: float, x: torch.Tensor) -> torch.Tensor:
        a = math.sin(theta)
        return (posterior_mean(x, a) - a * x) / math.cos(theta)

    positions, _ = rk4(velocity, z, grid)
    return positions[-1], math.sin(float(grid[-1]))


def point_basins(points: torch.Tensor, weights: torch.Tensor, prior_variance: float, z: torch.Tensor,
                 horizon: float, *, steps: int = FLOW_STEPS) -> tuple[torch.Tensor, torch.Tensor]:
    """J_T(z), the point each prior sample reaches, and its posterior probability at the last level (1 up to
    rounding where the flow has resolved the point)."""
    x, level = probability_flow(point_posterior_mean(points, weights, prior_variance), z, horizon, steps=steps)
    posterior = point_posterior(points, weights, prior_variance, x, level)
    best = posterior.max(1)
    return best.indices, best.values


def jacobian_asymmetry(posterior_mean: PosteriorMean, z: torch.Tensor, horizon: float, level: float, *,
                       steps: int = FLOW_STEPS, step_size: float = 1e-5) -> torch.Tensor:
    """‖J − Jᵀ‖_F / ‖J‖_F of the flow map z ↦ x_a(z) from a_T to signal level a = ``level``, per sample (J by
    central differences). A gradient map (a Brenier map) has a symmetric Jacobian: 0."""
    n, d = z.shape
    shifted = torch.cat([z + step_size * e for e in torch.eye(d, dtype=z.dtype, device=z.device)]
                        + [z - step_size * e for e in torch.eye(d, dtype=z.dtype, device=z.device)])
    x, _ = probability_flow(posterior_mean, shifted, horizon, steps=steps, until=level)
    plus, minus = x[:n * d].reshape(d, n, d), x[n * d:].reshape(d, n, d)
    jacobian = ((plus - minus) / (2 * step_size)).permute(1, 2, 0)  # (n, output, input)
    return torch.linalg.matrix_norm(jacobian - jacobian.mT) / torch.linalg.matrix_norm(jacobian)


def two_point_thresholds(points: torch.Tensor, weights: torch.Tensor, prior_variance: float,
                         horizon: float) -> tuple[float, float]:
    """For two points, both Φ_T and the Brenier map split space by a hyperplane normal to e = (y₂ − y₁)/|y₂ − y₁|:
    z goes to y₁ iff z·e < threshold. Returns (Φ_T's threshold, the Brenier map's). Along e the flow is the
    1-D flow of the projected process, monotone, so its threshold is the w₁-quantile of the projected P_T
    (the mixture Σ_j w_j N(a_T y_j·e, c(1 − a_T²))); the Brenier cell of y₁ is the half-space of prior mass
    w₁: threshold √c Φ⁻¹(w₁). The two agree at T = ∞."""
    from scipy.optimize import brentq
    from scipy.stats import norm

    direction = (points[1] - points[0]) / torch.linalg.norm(points[1] - points[0])
    along = (points @ direction).tolist()
    w = weights.tolist()
    a = signal_level(horizon)
    spread = math.sqrt(prior_variance * (1 - a * a))

    def excess(u):
        return sum(wj * norm.cdf((u - a * yj) / spread) for wj, yj in zip(w, along, strict=True)) - w[0]

    reach = 40 * spread + a * max(abs(v) for v in along)
    return brentq(excess, -reach, reach, xtol=1e-14), math.sqrt(prior_variance) * float(norm.ppf(w[0]))
