r"""The Gaussian-mixture posterior kernel on a tensor-product grid of query points, factorised by axis.

On a 2-D grid :math:`x_{ij} = (u_i, w_j)` the log terms of the kernel sum of :mod:`stochthermo.numerics._posterior`
split into a part that depends on the first coordinate and one that depends on the second,

.. math:: g_{ijk} = a_k - \tfrac12\log(2\pi V_k)\,d - \frac{|x_{ij} - c_k|^2}{2V_k}
   = \underbrace{a_k - \log(2\pi V_k) - \frac{(u_i - c_{k1})^2}{2V_k}}_{A_{ik}}
   \; \underbrace{-\, \frac{(w_j - c_{k2})^2}{2V_k}}_{B_{jk}},

so :math:`e^{g_{ijk}} = e^{A_{ik}}e^{B_{jk}}`, and the sums the posterior needs over all n_1 n_2 grid points are
matrix products of two small factor tables:

.. math:: Z_{ij} = \sum_k e^{g_{ijk}} = e^{\alpha_i + \beta_j} \sum_k F_{ik} G_{jk}, \qquad
   \sum_k e^{g_{ijk}} h_k = e^{\alpha_i + \beta_j}\sum_k (F_{ik}h_k)\, G_{jk},

with :math:`F_{ik} = e^{A_{ik} - \alpha_i}`, :math:`\alpha_i = \max_k A_{ik}`, and :math:`G_{jk}` likewise:
(n_1 + n_2) K exponentials instead of n_1 n_2 K, and the rest is one GEMM.

**Exactness.** Each factor's exponent is floored at ``-FACTOR_FLOOR`` = −350 before the exponential, so no
product of two factors is subnormal (≥ e^-700). A term with a floored factor has true value at most
:math:`e^{\alpha_i + \beta_j - 350}`, and so does its computed stand-in; the K terms of a point together change
:math:`Z_{ij}` by at most :math:`K e^{\alpha_i+\beta_j-350}`. Where the computed :math:`\log Z_{ij} -
\alpha_i - \beta_j` lies above :math:`\ln K - 350 - \ln\epsilon`, with :math:`\epsilon` the posterior kernel's
tolerance 2^-64 (below float64's rounding), that change is below ε of the sum and ε times the spread of h in
the average: the result equals the direct sum to rounding. Grid points below that level (where no single
component is near in both coordinates at once, relative to the component width: the largest term of the point
lies about 300 below :math:`\alpha_i + \beta_j`) are reported as not resolved and computed point by point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from stochthermo.numerics._scratch import scratch

#: each factor's exponent is floored here: a product of two factors stays a normal float64 (≥ e^-700)
FACTOR_FLOOR = 350.0
#: fewest grid points for which the factorised kernel is tried (below, the direct kernel costs as little)
MIN_GRID_POINTS = 1024


@dataclass(frozen=True)
class GridSums:
    """Per grid point, row-major over (u_i, w_j): ``log_sum`` log Z, ``mean`` (n, p) Σ_k r_k h_k, and
    ``resolved`` where the factorised sums equal the direct ones to rounding (module docstring)."""

    log_sum: torch.Tensor
    mean: torch.Tensor
    resolved: torch.Tensor


def product_axes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(u, w)`` when the rows of ``x`` (n, 2) are the grid u × w in row-major order (u outer, the layout of
    ``numpy.meshgrid(u, w, indexing="ij")``), with at least ``MIN_GRID_POINTS`` points, in float64 (the floor's
    e^-700 needs its range); else ``None``."""
    n, dim = x.shape
    if dim != 2 or n < MIN_GRID_POINTS or x.dtype != torch.float64:
        return None
    changes = torch.nonzero(x[1:, 0] != x[:-1, 0])
    inner = int(changes[0]) + 1 if len(changes) else n
    if inner < 2 or n % inner or n // inner < 2:
        return None
    grid = x.view(n // inner, inner, 2)
    u, w = grid[:, 0, 0], grid[0, :, 1]
    if not (torch.equal(grid[..., 0], u[:, None].expand_as(grid[..., 0]))
            and torch.equal(grid[..., 1], w[None].expand_as(grid[..., 1]))):
        return None
    return u, w


def grid_sums(u: torch.Tensor, w: torch.Tensor, centres: torch.Tensor, values: torch.Tensor,
              variances: torch.Tensor, log_weights: torch.Tensor, *, budget: int, tolerance: float) -> GridSums | None:
    """The kernel sums of the mixture (``centres`` (K, 2), ``variances`` () or (K,), ``log_weights`` (K,)) at
    the grid u × w, factorised by axis (module docstring); ``values`` (K, p) are averaged under the posterior.
    A grid point is resolved where the floor changes its sums by less than ``tolerance`` relative. The first
    axis is processed in blocks so that the tables held at once stay within ``budget`` numbers; ``None`` where
    the second axis's table alone and one row of the first would not."""
    count, columns = len(centres), values.shape[1] + 1
    room = budget - len(w) * count
    if room < columns * max(count, len(w)):
        return None
    block = min(len(u), room // (columns * max(count, len(w))))
    buffer = scratch((len(w) + columns * block) * count, u)  # the tables, reused (see _scratch)
    second, weighted = buffer[:(len(w) + columns * block) * count].split([len(w) * count, columns * block * count])
    half_precisions = 0.5 / variances
    second = torch.sub(w[:, None], centres[:, 1], out=second.view(len(w), count)).square_().mul_(-half_precisions)
    second_max = second.max(1).values
    second_factor = _floored_exp_(second.sub_(second_max[:, None])).T  # (K, n2)
    first_offset = log_weights - torch.log(2 * math.pi * variances)
    threshold = math.log(count) - FACTOR_FLOOR - math.log(tolerance)
    log_sums, means, resolved = [], [], []
    for points in u.split(block):
        table = weighted[:columns * len(points) * count].view(columns, len(points), count)  # F, then F × values
        first = torch.sub(points[:, None], centres[:, 0], out=table[0]).square_().mul_(-half_precisions)
        first_max = first.add_(first_offset).max(1).values
        factor = _floored_exp_(first.sub_(first_max[:, None]))  # (b, K)
        torch.mul(factor[None], values.T[:, None, :], out=table[1:])
        sums = (table.flatten(0, 1) @ second_factor).view(columns, len(points), len(w))
        level = torch.log(sums[0])  # log Z − α_i − β_j
        log_sums.append(first_max[:, None] + second_max[None] + level)
        means.append((sums[1:] / sums[0]).permute(1, 2, 0))
        resolved.append(level > threshold)
    return GridSums(torch.cat(log_sums).flatten(), torch.cat(means).flatten(0, 1), torch.cat(resolved).flatten())


def _floored_exp_(exponents: torch.Tensor) -> torch.Tensor:
    """exp of ``exponents`` (≤ 0) floored at −``FACTOR_FLOOR``, in place."""
    return exponents.clamp_(min=-FACTOR_FLOOR).exp_()
