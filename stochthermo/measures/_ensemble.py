r"""Weighted particle ensembles that represent a distribution.

* In one dimension, a *quantile ensemble*: particles at :math:`x_j = F^{-1}(\Phi(z_j))` on a uniform grid of
  normal scores :math:`z_j \in [-z_{max}, z_{max}]` with weights :math:`\propto \varphi(z_j)`. Expectations
  :math:`\sum_j w_j g(x_j) = \int g(F^{-1}(\Phi(z)))\varphi(z)\,dz` are then the trapezoidal rule in ``z``,
  which converges exponentially fast for smooth integrands. An ODE flow in 1-D keeps particles in order,
  so the particle with score :math:`z_j` stays at the :math:`\Phi(z_j)`-quantile of the transported law:
  the flow of a quantile ensemble is a quantile ensemble (docs/theory.md §4, last fact).
* In d ≥ 2, an equally weighted sample of ``n`` particles, chosen by the scenario's ``sampling``:

  - ``random``: independent draws from a freshly seeded generator, so that ensembles of Gaussian laws drawn
    with the same seed share their standard-normal draws (common random numbers across protocols);
  - ``sobol``: randomised quasi-Monte Carlo, the first ``n`` points of a scrambled Sobol sequence in the unit
    cube (Owen scrambling seeded by the seed, :class:`torch.quasirandom.SobolEngine`) mapped to the law by
    :meth:`~stochthermo.Distribution.from_unit_cube`. Each point is uniform on the cube, so every
    expectation stays unbiased and seeds remain independent replicas; the points fill the cube evenly, so
    the error of smooth expectations falls faster than n^(-1/2) (n a power of two keeps the sequence's
    balance);
  - ``antithetic``: n/2 independent uniform points u and their mirror images 1 − u (for a Gaussian, the
    pairs ±z about the mean), which removes the odd part of every fluctuation.

  Both structured samplings are common across protocols in the same way as ``random``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from stochthermo.roles._distribution import Distribution

#: normal scores beyond ±8.5 carry weight below 1e-16
Z_MAX = 8.5
#: how the particles of a d ≥ 2 ensemble are chosen (module docstring)
SAMPLINGS = ("random", "sobol", "antithetic")


@dataclass(frozen=True)
class Ensemble:
    positions: torch.Tensor  # (n, d)
    weights: torch.Tensor  # (n,), sums to 1
    normal_scores: torch.Tensor | None  # (n,) for quantile ensembles


def normal_score_grid(n: int, *, device, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform grid of ``n`` normal scores on [−Z_MAX, Z_MAX] and its trapezoidal weights (sum 1)."""
    z = torch.linspace(-Z_MAX, Z_MAX, n, device=device, dtype=dtype)
    weights = torch.exp(-0.5 * z**2)
    weights[0] *= 0.5
    weights[-1] *= 0.5
    return z, weights / weights.sum()


def make_ensemble(distribution: Distribution, n: int, seed: int, *, device, dtype=torch.float64,
                  sampling: str = "random") -> Ensemble:
    """A quantile ensemble in 1-D, a seeded sample of ``n`` particles chosen by ``sampling`` otherwise."""
    if distribution.dim == 1:
        z, weights = normal_score_grid(n, device=device, dtype=dtype)
        return Ensemble(distribution.from_normal_score(z), weights, z)
    if sampling == "random":
        positions = distribution.sample(n, torch.Generator(device=device).manual_seed(seed))
    else:
        positions = distribution.from_unit_cube(unit_cube_points(distribution, n, seed, sampling).to(device))
    return Ensemble(positions, torch.full((n,), 1.0 / n, device=device, dtype=dtype), None)


def unit_cube_points(distribution: Distribution, n: int, seed: int, sampling: str) -> torch.Tensor:
    """``n`` points (float64, CPU) of the open unit cube of ``distribution.unit_cube_dim()`` dimensions, by the
    structured ``sampling`` (``sobol`` or ``antithetic``), seeded by ``seed``."""
    k = distribution.unit_cube_dim()
    if k is None:
        raise ValueError(f"{distribution.name} cannot be sampled by '{sampling}': it does not map the unit cube")
    if sampling == "sobol":
        u = torch.quasirandom.SobolEngine(k, scramble=True, seed=seed).draw(n, dtype=torch.float64)
    elif sampling == "antithetic":
        half = torch.rand((n + 1) // 2, k, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        u = torch.cat([half, 1 - half])[:n]
    else:
        raise ValueError(f"unknown sampling '{sampling}': one of {', '.join(SAMPLINGS)}")
    edge = torch.finfo(torch.float64).eps
    return u.clamp(edge, 1 - edge)  # Φ⁻¹ is finite on the open cube


def quantile_density(positions: torch.Tensor, normal_scores: torch.Tensor) -> torch.Tensor:
    r"""Density of a 1-D quantile ensemble at its particles, :math:`p(x_j) = \varphi(z_j) / (dx/dz)_j`,
    with :math:`dx/dz` by second-order finite differences. ``positions`` (..., n, 1) -> (..., n).

    Far in the tails of a bounded law (e.g. uniform) neighbouring quantiles round to the same float64 value;
    there dx/dz is 0 and the density is undefined: NaN is returned for those particles (their probability
    is below 1e-15)."""
    x = positions[..., 0]
    dxdz = torch.gradient(x, spacing=(normal_scores,), dim=-1)[0]
    phi = torch.exp(-0.5 * normal_scores**2) / math.sqrt(2 * math.pi)
    return torch.where(dxdz > 0, phi / dxdz, torch.full_like(dxdz, math.nan))
