"""The screened posterior kernel (issue 32): the box screen keeps every term within its gap of a row's largest,
the neglected mass stays below the stated bound K e^{-gap}, and the kernel equals the dense sum to rounding —
property-tested over random point clouds (clustered and spread), variances, weights and tolerances."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import stochthermo.numerics._posterior as posterior
from stochthermo.numerics._screening import Boxes, box_distances, kept_clusters, morton_order


def _cloud(seed: int, n: int, dim: int, clustered: bool) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if not clustered:
        return 2 * torch.randn(n, dim, generator=generator, dtype=torch.float64)
    centres = 3 * torch.randn(5, dim, generator=generator, dtype=torch.float64)
    pick = torch.randint(0, 5, (n,), generator=generator)
    return centres[pick] + 0.05 * torch.randn(n, dim, generator=generator, dtype=torch.float64)


def _dense_terms(x, centres, log_weights, variance):
    """g_ik = a_k − |x_i − c_k|²/2V, the terms the screen reasons about, computed directly."""
    return log_weights[None] - torch.cdist(x, centres) ** 2 / (2 * variance)


clouds = st.tuples(st.integers(0, 10_000), st.integers(1, 3), st.booleans())


@settings(max_examples=40, deadline=None)
@given(cloud=clouds, variance=st.floats(1e-4, 2.0), tolerance=st.sampled_from([1e-3, 1e-8, 1e-16, 2.0**-64]),
       weighted=st.booleans())
def test_screen_keeps_every_term_within_its_gap_and_the_dropped_mass_is_bounded(cloud, variance, tolerance, weighted):
    seed, dim, clustered = cloud
    centres = _cloud(seed, 600, dim, clustered)
    x = _cloud(seed + 1, 500, dim, not clustered)
    generator = torch.Generator().manual_seed(seed + 2)
    log_weights = (torch.log_softmax(torch.randn(600, generator=generator, dtype=torch.float64), 0) if weighted
                   else torch.full((600,), -math.log(600), dtype=torch.float64))
    gap = math.log(600) - math.log(tolerance)
    clusters, blocks = Boxes.of(centres, 32), Boxes.of(x, 64)
    bounds = (clusters.pad(log_weights, math.inf).amin(1), clusters.pad(log_weights, -math.inf).amax(1))
    keep = kept_clusters(blocks, clusters, bounds, 1 / variance, gap)
    # the kept (row, component) pairs, in the original order of rows and components
    cluster_of = clusters.slots // clusters.points.shape[1]
    block_of = blocks.slots // blocks.points.shape[1]
    kept = keep[block_of][:, cluster_of]
    terms = _dense_terms(x, centres, log_weights, variance)
    row_max = terms.max(1, keepdim=True).values
    assert kept[terms >= row_max - gap].all()  # every term within the gap survives, the largest included
    dropped = torch.where(kept, 0.0, torch.exp(terms - row_max)).sum(1)
    total = torch.exp(terms - row_max).sum(1)
    assert (dropped <= tolerance * total).all()  # the bound K e^{-gap} = tolerance, relative to the row's mass


@settings(max_examples=25, deadline=None)
@given(cloud=clouds, variance=st.floats(1e-4, 2.0), weighted=st.booleans())
def test_screened_kernel_equals_the_dense_kernel_to_rounding(cloud, variance, weighted):
    """At the kernel's own tolerance (2^-64, under float64's rounding) the screened mean and log density equal
    the dense ones to a few ulps of their scale (the summation order differs); with a loose tolerance they
    differ by at most that tolerance times the spread of the values."""
    seed, dim, clustered = cloud
    centres = _cloud(seed, 700, dim, clustered)
    x = _cloud(seed + 1, 900, dim, clustered)
    generator = torch.Generator().manual_seed(seed + 3)
    values = torch.randn(700, 3, generator=generator, dtype=torch.float64)
    log_weights = torch.log_softmax(torch.randn(700, generator=generator, dtype=torch.float64), 0) if weighted else None
    dense = _dense(x, centres, values, variance, log_weights)
    for tolerance in (posterior.SCREEN_TOLERANCE, 1e-6):
        screened = _screened(x, centres, values, variance, log_weights, tolerance)
        if screened is None:  # the screen found nothing to drop: the dense kernel runs (nothing to compare)
            continue
        spread = (values.max(0).values - values.min(0).values).max()
        # both kernels form the logits b_k + x·c_k/V, of size up to |c|²/2V + |x||c|/V, in another order:
        # each carries a rounding of a few ulps of that size, which moves a weight by as much, relatively
        rounding = 16 * torch.finfo(torch.float64).eps * (1 + float(
            (centres**2).sum(1).max() / (2 * variance) + x.norm(dim=1).max() * centres.norm(dim=1).max() / variance))
        assert (screened.mean - dense.mean).abs().max() <= (tolerance + rounding) * spread
        assert (screened.log_density - dense.log_density).abs().max() <= tolerance + rounding


def _dense(x, centres, values, variance, log_weights):
    saved = posterior.SCREEN_MIN_COMPONENTS
    posterior.SCREEN_MIN_COMPONENTS = 10**12
    try:
        return posterior.posterior_average(x, centres, values, variance, log_weights)
    finally:
        posterior.SCREEN_MIN_COMPONENTS = saved


def _screened(x, centres, values, variance, log_weights, tolerance):
    n, d = x.shape
    if log_weights is None:
        log_weights = torch.full((len(centres),), -math.log(len(centres)), dtype=x.dtype)
    precision = 1 / variance
    bias = log_weights - 0.5 * (centres**2).sum(1) * precision - 0.5 * d * math.log(2 * math.pi * variance)
    saved = posterior.SCREEN_MAX_KEPT
    posterior.SCREEN_MAX_KEPT = 1.0  # screen whatever it keeps, to test the screened path itself
    try:
        result = posterior._screened_softmax(x, centres, bias, values, precision, log_weights, 1 << 20, tolerance)
    finally:
        posterior.SCREEN_MAX_KEPT = saved
    if result is None:  # the kernel's reach spans every component: nothing to screen
        return None
    running_max, running_sum, running_mean = result
    log_density = running_max + torch.log(running_sum) - 0.5 * (x**2).sum(1) * precision
    return posterior.PosteriorAverage(running_mean / running_sum[:, None], log_density)


def test_the_screen_is_used_where_it_drops_terms_and_a_far_point_gets_its_nearest_component():
    """Narrow kernels on a clustered cloud go through the screen (most pairs dropped); a query far from every
    component still gets a finite log density and the value of its nearest component."""
    generator = torch.Generator().manual_seed(8)
    angle = torch.arange(20, dtype=torch.float64) * (2 * math.pi / 20)  # 20 tight blobs on a circle of radius 10
    blob = 10 * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    centres = blob.repeat_interleave(200, 0) + 0.05 * torch.randn(4000, 2, generator=generator, dtype=torch.float64)
    values = centres.clone()
    near = centres + 0.02 * torch.randn(4000, 2, generator=generator, dtype=torch.float64)
    x = torch.cat([near, torch.tensor([[40.0, -40.0]], dtype=torch.float64)])
    calls = []
    original = posterior._screened_softmax

    def spy(*args):
        result = original(*args)
        calls.append(result is not None)
        return result

    posterior._screened_softmax = spy
    try:
        average = posterior.posterior_average(x, centres, values, 1e-3)
    finally:
        posterior._screened_softmax = original
    assert calls == [True]
    nearest = centres[torch.cdist(x[-1:], centres).argmin()]
    torch.testing.assert_close(average.mean[-1], nearest, rtol=0, atol=1e-9)
    assert torch.isfinite(average.log_density).all()
    torch.testing.assert_close(average.mean, _dense(x, centres, values, 1e-3, None).mean, rtol=0, atol=1e-13)


def test_morton_runs_partition_the_points_into_small_cells():
    """Every point in exactly one slot, and a run of 32 of 1000 points is a small piece of the cloud."""
    points = _cloud(4, 1000, 2, False)
    order = morton_order(points)
    assert torch.equal(order.sort().values, torch.arange(1000))
    boxes = Boxes.of(points, 32)
    assert len(boxes.slots.unique()) == 1000
    assert torch.equal(boxes.pad(points, 0.0).flatten(0, 1)[boxes.slots], points)
    whole = (points.max(0).values - points.min(0).values).prod()
    assert (boxes.high - boxes.low).prod(1).mean() < 0.1 * whole


def test_morton_order_of_a_lattice_is_the_z_curve():
    """On a 32 × 32 lattice the order is exactly the Z-curve: every run of 4 points is a 2 × 2 square and every
    run of 16 a 4 × 4 one (a coarser quantisation, or a lost top bit, breaks the squares)."""
    axis = torch.arange(32, dtype=torch.float64)
    lattice = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    ordered = lattice[morton_order(lattice)]
    for run, side in ((4, 1.0), (16, 3.0)):
        groups = ordered.view(-1, run, 2)
        assert torch.equal(groups.max(1).values - groups.min(1).values, torch.full((len(groups), 2), side))


def test_box_distances_are_the_tight_bounds_between_boxes():
    """The squared nearest and farthest distances between axis-aligned boxes equal the extremes over their
    points (dense samples of both boxes, corners included): the screen's bounds are tight, not merely safe (a
    loose bound keeps clusters it could drop)."""
    generator = torch.Generator().manual_seed(11)
    for dim in (1, 2, 3):
        low = 3 * torch.randn(6, dim, generator=generator, dtype=torch.float64)
        high = low + 2 * torch.rand(6, dim, generator=generator, dtype=torch.float64)
        boxes = Boxes(torch.zeros(6, 1, dim, dtype=torch.float64), low, high, torch.arange(6))
        nearest, farthest = box_distances(boxes, boxes)
        grid = torch.linspace(0, 1, 9, dtype=torch.float64)
        unit = torch.stack(torch.meshgrid(*[grid] * dim, indexing="ij"), -1).reshape(-1, dim)
        samples = low[:, None] + unit[None] * (high - low)[:, None]  # (6, 9^dim, dim), faces and corners
        for a in range(6):
            for b in range(6):
                squared = torch.cdist(samples[a], samples[b]) ** 2
                torch.testing.assert_close(farthest[a, b], squared.max(), rtol=1e-12, atol=1e-12)
                assert nearest[a, b] <= squared.min() + 1e-12
                # the sampled minimum lies within one sample spacing of the boxes' true one
                assert squared.min() - nearest[a, b] <= 4 * dim * float((high - low).max() / 8) ** 2 + 2 * dim * float(
                    (high - low).max() / 8) * float(nearest[a, b].sqrt()) + 1e-12


def test_the_screen_keeps_only_the_neighbouring_blobs():
    """Twenty tight blobs 3.1 apart on a circle, queried near themselves with a narrow kernel: each block of
    queries keeps the clusters of its own blob (and a neighbour where a run straddles two), well under a fifth
    of all pairs — a screen that kept more would still be exact but would not pay."""
    generator = torch.Generator().manual_seed(8)
    angle = torch.arange(20, dtype=torch.float64) * (2 * math.pi / 20)
    blob = 10 * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    centres = blob.repeat_interleave(200, 0) + 0.05 * torch.randn(4000, 2, generator=generator, dtype=torch.float64)
    near = centres + 0.02 * torch.randn(4000, 2, generator=generator, dtype=torch.float64)
    clusters, blocks = Boxes.of(centres, 32), Boxes.of(near, 64)
    weights = torch.zeros(len(clusters.low), dtype=torch.float64)
    keep = kept_clusters(blocks, clusters, (weights, weights), 1e3, math.log(4000) + 64 * math.log(2))
    assert float(keep.float().mean()) < 0.2
