r"""Wasserstein distances between particle ensembles, and the rate of change of W_1 along two flows.

A *coupling* pairs particles i of one ensemble with particles j of the other with masses
:math:`\pi_{ij}`. In 1-D two quantile ensembles on the same normal-score grid are coupled monotonically
(particle j with particle j), which is optimal for every :math:`W_p` and exact up to quadrature. In d ≥ 2
the optimal plan is computed with POT's exact network simplex (``ot.emd``); W_1 between two weightings of one
set of particles (the common support) only over the net surplus against the net deficit
(:func:`common_support_coupling`).

Along two flows with velocities :math:`v_i, \tilde v_j`, the derivative of
:math:`W_1 = \min_\pi\sum\pi_{ij}|x_i - \tilde x_j|` is, by the envelope (Danskin) theorem, the derivative of the
cost at the optimal plan: :math:`\partial_t W_1 = \sum\pi_{ij}\, e_{ij}\cdot(v_i - \tilde v_j)`,
:math:`e_{ij} = (x_i - \tilde x_j)/|x_i - \tilde x_j|`. In 1-D this is
:math:`\int_0^1 \mathrm{sign}(F^{-1} - G^{-1})\,\partial_t(F^{-1} - G^{-1})\,du` exactly.

The *sliced* distance :math:`SW_1 = E_\theta W_1(\theta\cdot x, \theta\cdot\tilde x)` over unit directions θ
(equally spaced angles in 2-D, seeded Gaussian directions above) needs only sorting: O(n log n) per
direction instead of a network-simplex solve. It is a different distance (:math:`SW_1 \le W_1`), but each
projected :math:`W_1` is a supremum over 1-Lipschitz test functions of :math:`\theta\cdot x`, so the
speed-accuracy bounds (80)-(83) hold for it as they do for :math:`W_1`.

Between two finite samples of one law :math:`W_1` is positive (about :math:`\sqrt{\log n/n}` in 2-D,
:math:`n^{-1/d}` above, docs/theory.md §4): :func:`sampling_bias` measures it with two independent samples.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from stochthermo.numerics._streams import RandomStreams
from stochthermo.roles._distribution import Distribution
from stochthermo.roles._trajectory import Trajectory

#: network-simplex iteration cap (POT's default, 1e5, stops short of optimality above ~2000 points)
EMD_ITERATIONS = 100_000_000
#: threads over which the per-time problems of :func:`w1_and_rate` are spread (``None``: torch's thread count)
SOLVER_THREADS: int | None = None


@dataclass(frozen=True)
class Coupling:
    """Sparse coupling: particle ``rows[k]`` of the first ensemble carries ``mass[k]`` to ``cols[k]``."""

    rows: torch.Tensor
    cols: torch.Tensor
    mass: torch.Tensor


def optimal_coupling(x: torch.Tensor, wx: torch.Tensor, y: torch.Tensor, wy: torch.Tensor, *,
                     monotone: bool, metric: str) -> Coupling:
    """Optimal coupling of two weighted ensembles for cost ‖x − y‖ (``euclidean``) or ‖x − y‖²
    (``sqeuclidean``). ``monotone`` pairs quantile ensembles index by index (1-D, same weights)."""
    if monotone:
        index = torch.arange(len(x), device=x.device)
        return Coupling(index, index, wx)
    if x.shape[1] == 1:
        return sorted_coupling(x[:, 0], wx, y[:, 0], wy)
    if metric == "euclidean" and torch.equal(x, y):
        return common_support_coupling(x, wx, wy)
    return _simplex_coupling(x, wx, y, wy, metric)


def common_support_coupling(x: torch.Tensor, wx: torch.Tensor, wy: torch.Tensor) -> Coupling:
    r"""The W_1-optimal coupling of two weightings ``wx``, ``wy`` of the same particles ``x``: the common mass
    :math:`\min(w_x, w_y)` stays in place and the net surplus :math:`(w_x - w_y)^+` is carried to the net
    deficit :math:`(w_x - w_y)^-` by the simplex.

    Exact, not an approximation: for a metric cost W_1 depends on :math:`w_x - w_y` alone
    (Kantorovich–Rubinstein), since mass routed i → j → k never costs less than i → k directly, so some optimal
    plan leaves the common mass where it is; the simplex then solves a problem over the surplus and deficit
    particles only — two sets of about n/2 instead of n × n (5x faster at n = 1024, the simplex's cost growing
    as n^2.2-2.5). The weightings must carry the same mass (to 1e-9 relative)."""
    if not torch.isclose(wx.sum(), wy.sum(), rtol=1e-9, atol=0):
        raise ValueError(f"the two weightings carry different masses: {float(wx.sum())!r} and {float(wy.sum())!r}")
    net = wx - wy
    sources, sinks = torch.nonzero(net > 0).flatten(), torch.nonzero(net < 0).flatten()
    common = torch.minimum(wx, wy)
    stay = torch.nonzero(common > 0).flatten()
    moved = _simplex_coupling(x[sources], net[sources], x[sinks], -net[sinks], "euclidean")
    return Coupling(torch.cat([sources[moved.rows], stay]), torch.cat([sinks[moved.cols], stay]),
                    torch.cat([moved.mass, common[stay]]))


def _simplex_coupling(x, wx, y, wy, metric) -> Coupling:
    """POT's exact network simplex on the dense cost matrix (empty where either side has no particles)."""
    if not len(x) or not len(y):
        empty = torch.zeros(0, dtype=torch.long, device=x.device)
        return Coupling(empty, empty, wx.new_zeros(0))
    import ot  # POT is only needed in d >= 2; importing it costs ~0.5 s of start-up

    plan = ot.emd(wx, wy, ot.dist(x, y, metric=metric), numItermax=EMD_ITERATIONS)
    rows, cols = torch.nonzero(plan > 0, as_tuple=True)
    return Coupling(rows, cols, plan[rows, cols])


def sorted_coupling(x: torch.Tensor, wx: torch.Tensor, y: torch.Tensor, wy: torch.Tensor) -> Coupling:
    """The optimal coupling of two weighted 1-D ensembles for any convex cost of x − y (hence also for
    |x − y|): the quantile (north-west corner) coupling of the sorted ensembles, O(n log n). Pieces of mass
    between consecutive breakpoints of the two cumulative weights pair the particles whose quantile ranges
    contain them."""
    ox, oy = x.argsort(), y.argsort()
    cx, cy = wx[ox].cumsum(0), wy[oy].cumsum(0)
    total = torch.minimum(cx[-1], cy[-1])
    breaks = torch.cat([cx, cy]).clamp(max=total).unique()  # sorted
    mass = torch.diff(breaks, prepend=breaks.new_zeros(1))
    middle = breaks - 0.5 * mass
    keep = mass > 0
    rows = torch.searchsorted(cx, middle[keep]).clamp(max=len(x) - 1)
    cols = torch.searchsorted(cy, middle[keep]).clamp(max=len(y) - 1)
    return Coupling(ox[rows], oy[cols], mass[keep])


def w1_and_rate(a: Trajectory, b: Trajectory) -> tuple[torch.Tensor, torch.Tensor]:
    """W_1 between two trajectories at every time and its time derivative (envelope theorem), each (T,)."""
    if _paired(a, b):  # monotone coupling at every time: all times at once
        return _coupled_w1_and_rate(a.positions - b.positions, a.velocities - b.velocities, a.weights)

    def at(k: int):
        coupling = optimal_coupling(a.positions[k], a.weights, b.positions[k], b.weights, monotone=False,
                                    metric="euclidean")
        return _coupled_w1_and_rate(a.positions[k][coupling.rows] - b.positions[k][coupling.cols],
                                    a.velocities[k][coupling.rows] - b.velocities[k][coupling.cols], coupling.mass)

    # one problem per time, each solved by POT's single-threaded simplex, which releases the GIL: the times
    # are spread over the process's torch threads (1.9x on 2 cores; the results do not depend on the order)
    with ThreadPoolExecutor(max_workers=SOLVER_THREADS or max(1, torch.get_num_threads())) as pool:
        values = list(pool.map(at, range(len(a.times))))
    return tuple(torch.stack(v) for v in zip(*values, strict=True))


def sliced_w1_and_rate(a: Trajectory, b: Trajectory, projections: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sliced W_1 between two equally weighted trajectories (same particle count) at every time and its
    time derivative (envelope theorem in each direction), each (T,)."""
    if _paired(a, b) or a.dim == 1:
        return w1_and_rate(a, b)
    directions = projection_directions(a.dim, projections, dtype=a.positions.dtype, device=a.positions.device)
    pa, pb = a.positions @ directions.T, b.positions @ directions.T  # (T, n, K)
    va, vb = a.velocities @ directions.T, b.velocities @ directions.T
    pa, order_a = pa.sort(dim=1)
    pb, order_b = pb.sort(dim=1)
    va, vb = va.gather(1, order_a), vb.gather(1, order_b)
    diff = pa - pb
    return diff.abs().mean((1, 2)), (torch.sign(diff) * (va - vb)).mean((1, 2))


def projection_directions(dim: int, count: int, *, dtype, device) -> torch.Tensor:
    """``count`` unit directions: equally spaced angles on [0, π) in 2-D, seeded Gaussian ones above."""
    if dim == 2:
        angles = torch.arange(count, dtype=dtype, device=device) * (math.pi / count)
        return torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    directions = torch.randn(count, dim, dtype=dtype, generator=torch.Generator().manual_seed(0)).to(device)
    return directions / directions.norm(dim=1, keepdim=True)


def sampling_bias(law: Distribution, n: int, seed: int, *, projections: int | None = None, device,
                  dtype) -> float:
    """W_1 (sliced over ``projections`` directions, if given) between two independent n-samples of ``law``;
    0 for 1-D laws, which are represented by exact quantile ensembles."""
    if law.dim == 1:
        return 0.0
    x, y = (law.sample(n, generator).to(dtype) for generator in (torch.Generator(device=device).manual_seed(seed),
                                                                   RandomStreams(seed).generator("second_sample",
                                                                                                 device=device)))
    if projections is not None:
        directions = projection_directions(law.dim, projections, dtype=dtype, device=x.device)
        return float(((x @ directions.T).sort(0).values - (y @ directions.T).sort(0).values).abs().mean())
    weights = torch.full((n,), 1.0 / n, dtype=dtype, device=x.device)
    coupling = optimal_coupling(x, weights, y, weights, monotone=False, metric="euclidean")
    return float(coupling.mass @ (x[coupling.rows] - y[coupling.cols]).norm(dim=1))


def _coupled_w1_and_rate(diff: torch.Tensor, relative_velocity: torch.Tensor, mass: torch.Tensor):
    """Σ π |Δx| and Σ π (Δx/|Δx|)·Δv over coupled pairs (last two axes: pairs, dimension)."""
    distance = diff.norm(dim=-1)
    direction = diff / distance.clamp_min(torch.finfo(diff.dtype).tiny)[..., None]
    return distance @ mass, (direction * relative_velocity).sum(-1) @ mass


def w2_squared(a: Trajectory, index_a: int, b: Trajectory, index_b: int) -> float:
    """W_2² between two ensembles of trajectories at given time indices (monotone in 1-D quantile ensembles)."""
    return sample_w2_squared(a.positions[index_a], a.weights, b.positions[index_b], b.weights, monotone=_paired(a, b))


def sample_w2_squared(x: torch.Tensor, wx: torch.Tensor, y: torch.Tensor, wy: torch.Tensor, *,
                      monotone: bool = False) -> float:
    """W_2² between two weighted ensembles (exact plan, or index-by-index for paired quantile ensembles)."""
    coupling = optimal_coupling(x, wx, y, wy, monotone=monotone, metric="sqeuclidean")
    return float(coupling.mass @ ((x[coupling.rows] - y[coupling.cols]) ** 2).sum(1))


def w2_and_w1(x: torch.Tensor, wx: torch.Tensor, y: torch.Tensor, wy: torch.Tensor) -> tuple[float, float]:
    """(W_2, W_1) between two weighted ensembles, each from its own exact plan (sorted in 1-D)."""
    w2 = sample_w2_squared(x, wx, y, wy) ** 0.5
    coupling = optimal_coupling(x, wx, y, wy, monotone=False, metric="euclidean")
    return w2, float(coupling.mass @ (x[coupling.rows] - y[coupling.cols]).norm(dim=1))


def law_reference(law: Distribution, count: int, generator: torch.Generator,
                  dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """What generated particles are compared with: the law's atoms and their weights when it is given as
    points without smoothing (an exact comparison), else ``count`` fresh draws of equal weight."""
    cloud = law.point_cloud()
    device = generator.device
    if cloud is not None and cloud.std == 0:
        return cloud.points.to(device, dtype), cloud.probabilities().to(device, dtype)
    return law.sample(count, generator).to(dtype), torch.full((count,), 1.0 / count, dtype=dtype, device=device)


def _paired(a: Trajectory, b: Trajectory) -> bool:
    return (a.normal_scores is not None and b.normal_scores is not None
            and torch.equal(a.normal_scores, b.normal_scores))
