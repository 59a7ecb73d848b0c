r"""Posterior averages over the components of an isotropic Gaussian mixture, chunked so memory stays bounded.

For query points :math:`x_i` and components :math:`\mathcal N(c_k, V_k I)` with weights :math:`w_k`,

.. math:: r_{ik} = \frac{w_k\,\mathcal N(x_i; c_k, V_k I)}{\sum_l w_l\,\mathcal N(x_i; c_l, V_l I)}, \qquad
   \bar g_i = \sum_k r_{ik}\, g_k, \qquad \log P(x_i) = \log\sum_k w_k\,\mathcal N(x_i; c_k, V_k I).

This is the one hot kernel behind every exact velocity of empirical data (docs/theory.md §1: the softmax
posterior over data points, :math:`\bar y_t(x) = \sum_i \mathrm{softmax}_i(-|x - m y_i|^2/2\sigma^2)\,y_i`) and
of the sample-based optimal-transport field (docs/theory.md §3, a normalised Gaussian kernel). The logits are
one matrix product, :math:`x_i\cdot c_k/V_k - |c_k|^2/2V_k + \dots`; the softmax is accumulated online over
blocks of components (running maximum, running sum, running weighted sum), and query points are processed
in blocks, so no block holds more than ``budget`` logits whatever the numbers of points and components.
Equally weighted components sharing one covariance :math:`V = LL^\top` (a point cloud under an anisotropic
force) are whitened into that form: :math:`\mathcal N(x; c, V) = \mathcal N(L^{-1}x; L^{-1}c, I)/\det L`
(:func:`shared_kernel_average`).

With one shared variance, few dimensions and many components (a point cloud's data points), most terms of a
row are negligible: the logits are formed only for the clusters of components that a box screen keeps
(:mod:`stochthermo.numerics._screening`), which drops nothing above a relative ``SCREEN_TOLERANCE`` = 2^-64 of
any row's mass — below float64's rounding, so the result equals the dense sum to rounding.

Query points laid out as a 2-D tensor-product grid (the grid split's faces, a density snapshot's grid) take a
factorised kernel instead (:mod:`stochthermo.numerics._product_grid`): the terms split into a factor of each
axis, and the sums over all n_1 n_2 points are one matrix product of two small tables of exponentials.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from stochthermo.numerics._product_grid import grid_sums, product_axes
from stochthermo.numerics._scratch import scratch
from stochthermo.numerics._screening import Boxes, kept_clusters

#: default largest number of logits held at once (2^24 float64 values: 128 MiB)
DEFAULT_BUDGET = 1 << 24


#: logits more than 700 below their row's maximum are raised to it before the exponential: exp leaves the normal
#: range below -708 and its subnormal path costs 15x the normal one (43 ms against 2.9 ms for 4M values here),
#: while a term e^-700 ~ 1e-304 beside the row's largest, e^0 = 1, changes no bit of a sum of up to 10^280 terms
EXP_FLOOR = -700.0
#: relative mass a screened row may neglect (K e^{-gap} with gap = ln K + 64 ln 2): under float64's rounding
SCREEN_TOLERANCE = 2.0**-64
#: the screen is used up to this dimension (boxes stop separating points above it) ...
SCREEN_MAX_DIM = 3
#: ... from this many components, with clusters of CLUSTER_SIZE components and blocks of QUERY_BLOCK points
SCREEN_MIN_COMPONENTS = 256
CLUSTER_SIZE = 32
QUERY_BLOCK = 64
#: above this fraction of kept (block, cluster) pairs the dense kernel is cheaper (a kept pair costs the screened
#: kernel about 2.6x what a pair costs the dense one: break-even near 0.38)
SCREEN_MAX_KEPT = 0.35


@dataclass(frozen=True)
class PosteriorAverage:
    """``mean`` (n, p): Σ_k r_ik g_k; ``log_density`` (n,): log Σ_k w_k N(x_i; c_k, V_k I)."""

    mean: torch.Tensor
    log_density: torch.Tensor


def posterior_average(x: torch.Tensor, centres: torch.Tensor, values: torch.Tensor, variances: torch.Tensor | float,
                      log_weights: torch.Tensor | None = None, *, budget: int = DEFAULT_BUDGET) -> PosteriorAverage:
    """Posterior average of ``values`` (K, p) at ``x`` (n, d) under components ``centres`` (K, d) with
    variances ``variances`` (a scalar, or (K,)) and ``log_weights`` (K,) (equal weights when ``None``)."""
    n_components = centres.shape[0]
    variances = torch.as_tensor(variances, dtype=x.dtype, device=x.device)
    if log_weights is None:
        log_weights = torch.full((n_components,), -math.log(n_components), dtype=x.dtype, device=x.device)
    recorded = torch.is_grad_enabled() and any(v.requires_grad for v in (x, centres, values, variances, log_weights))
    axes = None if recorded else product_axes(x)
    sums = None if axes is None else grid_sums(*axes, centres, values, variances, log_weights, budget=budget,
                                                 tolerance=SCREEN_TOLERANCE)
    if sums is None:
        return _pointwise_average(x, centres, values, variances, log_weights, recorded, budget)
    mean, log_density = sums.mean, sums.log_sum
    if not sums.resolved.all():  # grid points far from every component in both coordinates: one by one
        missed = torch.nonzero(~sums.resolved).flatten()
        direct = _pointwise_average(x[missed], centres, values, variances, log_weights, recorded, budget)
        mean[missed], log_density[missed] = direct.mean, direct.log_density
    return PosteriorAverage(mean, log_density)


def _pointwise_average(x, centres, values, variances, log_weights, recorded, budget) -> PosteriorAverage:
    """:func:`posterior_average` point by point: screened where that pays, else dense blocks."""
    n, d = x.shape
    n_components = centres.shape[0]
    shared_variance = variances.ndim == 0
    precisions = 1.0 / variances
    # logit_ik = x_i·c_k/V_k − |x_i|²/(2V_k) + bias_k; the middle term is common to all k when V is shared
    bias = log_weights - 0.5 * (centres**2).sum(1) * precisions - 0.5 * d * torch.log(2 * math.pi * variances)
    scaled_centres = centres * (precisions if shared_variance else precisions[:, None])
    if (shared_variance and not recorded and d <= SCREEN_MAX_DIM and n_components >= SCREEN_MIN_COMPONENTS
            and n >= QUERY_BLOCK):
        screened = _screened_softmax(x, centres, bias, values, float(precisions), log_weights, budget,
                                     SCREEN_TOLERANCE)
        if screened is not None:
            running_max, running_sum, running_mean = screened
            log_density = running_max + torch.log(running_sum) - 0.5 * (x**2).sum(1) * precisions
            return PosteriorAverage(running_mean / running_sum[:, None], log_density)
    # the logits as one matrix product: [x_i, 1, −|x_i|²/2] · [c_k/V_k, bias_k, 1/V_k] (the last column only
    # with per-component variances), and the sum and the weighted sum as another: e^logits · [g_k, 1]
    lifted = torch.cat([scaled_centres, bias[:, None]] + ([] if shared_variance else [precisions[:, None]]), 1)
    values_and_ones = torch.cat([values, values.new_ones(n_components, 1)], 1)
    component_block = min(n_components, budget)
    row_block = max(1, budget // component_block)
    workspace = None if recorded else scratch(min(n, row_block) * component_block, x)
    means, log_densities = [], []
    for rows in x.split(row_block):
        squared_norms = (rows**2).sum(1)
        lifted_rows = torch.cat([rows, rows.new_ones(len(rows), 1)]
                                + ([] if shared_variance else [-0.5 * squared_norms[:, None]]), 1)
        if component_block == n_components:  # one block of components: a plain softmax
            logits = _logits(lifted_rows, lifted, workspace)
            running_max = logits.max(1).values
            totals = _exp_relative_(logits, running_max[:, None]) @ values_and_ones
            running_sum, running_mean = totals[:, -1], totals[:, :-1]
        else:  # online softmax over blocks of components (running maximum, sum and weighted sum)
            running_max, running_sum, running_mean = _online_softmax(lifted_rows, lifted, values_and_ones,
                                                                     component_block, workspace)
        means.append(running_mean / running_sum[:, None])
        log_density = running_max + torch.log(running_sum)
        if shared_variance:
            log_density = log_density - 0.5 * squared_norms * precisions
        log_densities.append(log_density)
    return PosteriorAverage(torch.cat(means), torch.cat(log_densities))


def _online_softmax(lifted_rows, lifted, values_and_ones, component_block, workspace):
    """Running maximum, sum and weighted sum of the softmax over blocks of ``component_block`` components."""
    n = len(lifted_rows)
    running_max = torch.full((n,), -math.inf, dtype=lifted.dtype, device=lifted.device)
    running_totals = lifted.new_zeros(n, values_and_ones.shape[1])
    for start in range(0, len(lifted), component_block):
        block = slice(start, start + component_block)
        logits = _logits(lifted_rows, lifted[block], workspace)
        new_max = torch.maximum(running_max, logits.max(1).values)
        rescale = torch.exp(running_max - new_max)
        terms = _exp_relative_(logits, new_max[:, None])
        running_totals = running_totals * rescale[:, None] + terms @ values_and_ones[block]
        running_max = new_max
    return running_max, running_totals[:, -1], running_totals[:, :-1]


def _exp_relative_(logits: torch.Tensor, row_max: torch.Tensor) -> torch.Tensor:
    """exp(logits − row_max) in place, the exponents floored at ``EXP_FLOOR`` (no subnormal results)."""
    return logits.sub_(row_max).clamp_(min=EXP_FLOOR).exp_()


def _screened_softmax(x, centres, bias, values, precision, log_weights, budget, tolerance):
    """Running maximum, sum and weighted sum of the softmax of the logits bias_k + x_i·c_k·precision over the
    components the box screen keeps for each row (each row's neglected mass below ``tolerance`` of its sum);
    ``None`` where it would keep more than ``SCREEN_MAX_KEPT`` of them: the dense kernel is then cheaper."""
    n, dim = x.shape
    gap = math.log(len(centres)) - math.log(tolerance)
    if 2 * gap / precision >= float(((centres.max(0).values - centres.min(0).values) ** 2).sum()):
        return None  # the kernel's reach, (2 V gap)^(1/2), spans all the components: nothing to drop
    clusters, blocks = Boxes.of(centres, CLUSTER_SIZE), Boxes.of(x, QUERY_BLOCK)
    weight_bounds = (clusters.pad(log_weights, math.inf).amin(1), clusters.pad(log_weights, -math.inf).amax(1))
    keep = kept_clusters(blocks, clusters, weight_bounds, precision, gap)
    if keep.float().mean() > SCREEN_MAX_KEPT:
        return None
    n_clusters = len(clusters.low)
    # component tables, one row per cluster, and a last all-empty cluster (bias -inf) to pad short lists
    cluster_size, block_size = clusters.points.shape[1], blocks.points.shape[1]
    centre_table = torch.cat([clusters.points * precision, clusters.points.new_zeros(1, cluster_size, dim)])
    bias_table = torch.cat([clusters.pad(bias, -math.inf), bias.new_full((1, cluster_size), -math.inf)])
    value_table = torch.cat([clusters.pad(values, 0.0), values.new_zeros(1, cluster_size, values.shape[1])])
    counts = keep.sum(1)
    ranked = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # each block's kept clusters first
    # blocks are grouped by their number of kept clusters, rounded up to a quarter of its power of 2 (a
    # quarter of the work wasted on padding at most, a few groups only)
    quantum = 2 ** (torch.log2(counts.to(torch.float64)).floor().to(torch.int64) - 2).clamp_(min=0)
    caps = (-(-counts // quantum) * quantum).clamp_(max=n_clusters)
    shape = blocks.points.shape[:2]
    running_max, running_sum = x.new_empty(shape), x.new_empty(shape)
    running_mean = x.new_empty((*shape, values.shape[1]))
    for cap in caps.unique().tolist():
        members = torch.nonzero(caps == cap).flatten()
        table = ranked[members, :cap]
        table[torch.arange(cap, device=x.device)[None] >= counts[members, None]] = n_clusters
        for positions in torch.arange(len(members), device=x.device).split(
                max(1, budget // (block_size * cap * cluster_size))):
            chunk, lists = members[positions], table[positions]
            logits = torch.baddbmm(bias_table[lists].flatten(1)[:, None, :], blocks.points[chunk],
                                   centre_table[lists].flatten(1, 2).transpose(1, 2))
            row_max = logits.amax(2)
            _exp_relative_(logits, row_max[..., None])
            running_max[chunk], running_sum[chunk] = row_max, logits.sum(2)
            running_mean[chunk] = torch.bmm(logits, value_table[lists].flatten(1, 2))
    return tuple(v.flatten(0, 1)[blocks.slots] for v in (running_max, running_sum, running_mean))


def shared_kernel_average(x: torch.Tensor, centres: torch.Tensor, values: torch.Tensor, kernel: torch.Tensor,
                          log_weights: torch.Tensor | None = None, *, budget: int = DEFAULT_BUDGET) -> PosteriorAverage:
    """:func:`posterior_average` for components N(c_k, V) sharing one (d, d) covariance ``kernel`` = V (equally
    weighted when ``log_weights`` is ``None``), by whitening with its Cholesky factor."""
    factor = torch.linalg.cholesky(kernel)
    white = torch.linalg.solve_triangular(factor, torch.cat([x, centres]).T, upper=False).T
    average = posterior_average(white[:len(x)], white[len(x):], values, 1.0, log_weights, budget=budget)
    return PosteriorAverage(average.mean, average.log_density - torch.log(torch.diagonal(factor)).sum())


def _logits(lifted_rows: torch.Tensor, lifted: torch.Tensor, workspace: torch.Tensor | None) -> torch.Tensor:
    """The logits, lifted rows times lifted components, (len(rows), K), written into the flat ``workspace``
    where one is given."""
    shape = (len(lifted_rows), len(lifted))
    out = None if workspace is None else workspace[:shape[0] * shape[1]].view(shape)
    return torch.mm(lifted_rows, lifted.T, out=out)
