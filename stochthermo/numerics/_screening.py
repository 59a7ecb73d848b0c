r"""Which components of an isotropic kernel sum can matter at which query points: a provable screen.

For query points :math:`x_i`, components :math:`c_k` with log weights :math:`a_k` and one shared variance V,
the terms of :math:`Z_i = \sum_k e^{g_{ik}}`, :math:`g_{ik} = a_k - |x_i - c_k|^2/2V`, that lie more than
``gap`` = L below the row's largest term :math:`G_i = \max_k g_{ik}` carry together at most

.. math:: \sum_{k:\, g_{ik} < G_i - L} e^{g_{ik}} \;\le\; K e^{G_i - L} \;\le\; K e^{-L}\, Z_i

of the row's mass, so dropping them changes :math:`Z_i` (hence :math:`\log Z_i`) by a relative
:math:`\epsilon \le Ke^{-L}`, and any posterior average :math:`\sum_k r_{ik} g_k` by at most
:math:`\epsilon\max_{k,l}|g_k - g_l|` (the dropped mass times the largest change of the average).

The screen works on boxes, not points, so that it costs a few vector operations. Points are sorted along a
Morton (Z-order) curve; consecutive runs form *clusters* of components and *blocks* of query points, each with
an axis-aligned bounding box (a run may straddle a jump of the curve: its box is then loose, which costs
work, never exactness). For a block B and a cluster C, the boxes give the nearest and farthest possible
distances :math:`\underline d_{BC} \le |x - c| \le \overline d_{BC}`, hence for every row of B

.. math:: \max_{k\in C} g_{ik} \le \max_C a - \underline d_{BC}^2/2V, \qquad
   G_i \ge \max_{C'}\big(\min_{C'} a - \overline d_{BC'}^2/2V\big) =: \underline G_B,

and cluster C is kept for block B unless its upper bound lies below :math:`\underline G_B - L`. Every term
within L of its row's maximum is thereby kept (a superset of the terms the bound above allows to keep),
including the maximum itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: bits per axis of the Morton code (a 1024-cell lattice per axis: finer than any run of points needs)
MORTON_BITS = 10


def morton_order(points: torch.Tensor) -> torch.Tensor:
    """The permutation that sorts ``points`` (n, d) along the Z-order curve of their bounding box (d ≤ 3)."""
    n, dim = points.shape
    low = points.min(0).values
    span = (points.max(0).values - low).clamp_min(torch.finfo(points.dtype).tiny)
    levels = (1 << MORTON_BITS) - 1
    quantised = ((points - low) / span * levels).round().to(torch.int64).clamp_(0, levels)
    code = torch.zeros(n, dtype=torch.int64, device=points.device)
    for bit in range(MORTON_BITS):
        for axis in range(dim):
            code |= ((quantised[:, axis] >> bit) & 1) << (bit * dim + axis)
    return code.argsort()


@dataclass(frozen=True)
class Boxes:
    """Consecutive runs of ``size`` points in a Morton order, padded by repeating the last point:
    ``points`` (runs, size, d), their bounding boxes ``low``/``high`` (runs, d), and each point's slot
    ``slots`` (n,) in the flattened (runs · size) layout."""

    points: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    slots: torch.Tensor

    @classmethod
    def of(cls, points: torch.Tensor, size: int) -> Boxes:
        order = morton_order(points)
        runs = -(-len(points) // size)
        padded = torch.cat([order, order[-1:].expand(runs * size - len(points))])
        grouped = points[padded].view(runs, size, points.shape[1])
        slots = torch.empty_like(order)
        slots[order] = torch.arange(len(points), device=points.device)
        return cls(grouped, grouped.min(1).values, grouped.max(1).values, slots)

    def pad(self, per_point: torch.Tensor, fill: float) -> torch.Tensor:
        """``per_point`` (n, ...) in this layout, grouped (runs, size, ...), the padding set to ``fill``."""
        runs, size = self.points.shape[:2]
        out = per_point.new_full((runs * size, *per_point.shape[1:]), fill)
        out[self.slots] = per_point
        return out.view(runs, size, *per_point.shape[1:])


def box_distances(a: Boxes, b: Boxes) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared nearest and farthest distances between every box of ``a`` and every box of ``b``, (len a, len b)."""
    low_a, high_a = a.low[:, None, :], a.high[:, None, :]
    low_b, high_b = b.low[None], b.high[None]
    gap = (low_b - high_a).clamp_min(0) + (low_a - high_b).clamp_min(0)
    reach = torch.maximum(high_b - low_a, high_a - low_b)
    return (gap**2).sum(-1), (reach**2).sum(-1)


def kept_clusters(blocks: Boxes, clusters: Boxes, log_weight_bounds: tuple[torch.Tensor, torch.Tensor],
                  precision: float, gap: float) -> torch.Tensor:
    """(blocks, clusters) bool: the clusters whose terms can come within ``gap`` of a row's largest term, for
    components of variance 1/``precision`` whose log weights lie in ``log_weight_bounds`` (per cluster, low
    and high)."""
    low_weight, high_weight = log_weight_bounds
    nearest, farthest = box_distances(blocks, clusters)
    upper = high_weight[None] - 0.5 * precision * nearest
    row_max_lower = (low_weight[None] - 0.5 * precision * farthest).max(1, keepdim=True).values
    return upper >= row_max_lower - gap
