"""The posterior kernel on a tensor-product grid, factorised by axis (issue 32): the grid layout is recognised
exactly, the factorised sums equal the point-by-point kernel to rounding, and where the exponent floor may
change a sum, the point is handed to the point-by-point kernel — with the change below the stated tolerance
wherever it is not, property-tested over random point clouds, variances, weights and tolerances."""

import math
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import stochthermo.numerics._posterior as posterior
import stochthermo.numerics._product_grid as product_grid
from stochthermo.numerics import Grid2D


def _grid(u, w):
    return torch.stack(torch.meshgrid(u, w, indexing="ij"), -1).reshape(-1, 2)


def _mixture(seed: int, count: int, clustered: bool, per_component: bool):
    generator = torch.Generator().manual_seed(seed)
    if clustered:  # a few tight blobs, far apart: most grid points lie far from every blob
        blobs = 3 * torch.randn(4, 2, generator=generator, dtype=torch.float64)
        centres = blobs[torch.randint(0, 4, (count,), generator=generator)]
        centres = centres + 0.05 * torch.randn(count, 2, generator=generator, dtype=torch.float64)
    else:
        centres = 1.5 * torch.randn(count, 2, generator=generator, dtype=torch.float64)
    spread = torch.exp(0.5 * torch.randn(count, generator=generator, dtype=torch.float64))
    log_weights = torch.log_softmax(torch.randn(count, generator=generator, dtype=torch.float64), 0)
    values = torch.randn(count, 3, generator=generator, dtype=torch.float64)
    return centres, spread if per_component else None, log_weights, values


def _direct(x, centres, variances, log_weights, values):
    """log Z and the posterior mean from the terms a_k − log(2πV_k) − |x − c_k|²/2V_k, formed one by one."""
    variances = torch.as_tensor(variances, dtype=x.dtype).expand(len(centres))
    distances = torch.cdist(x, centres, compute_mode="donot_use_mm_for_euclid_dist")  # exact differences
    terms = log_weights - torch.log(2 * math.pi * variances) - distances**2 / (2 * variances)
    return torch.logsumexp(terms, 1), torch.softmax(terms, 1) @ values


def _through_the_grid(*args, **kwargs):
    """posterior_average, asserting that it took the factorised path (and that the path returned its sums)."""
    returned = []

    def recorded(*inner, **options):
        returned.append(product_grid.grid_sums(*inner, **options))
        return returned[-1]

    with mock.patch.object(posterior, "grid_sums", recorded):
        average = posterior.posterior_average(*args, **kwargs)
    assert len(returned) == 1 and returned[0] is not None
    return average


def _pointwise(x, centres, values, variances, log_weights):
    variances = torch.as_tensor(variances, dtype=x.dtype)
    return posterior._pointwise_average(x, centres, values, variances, log_weights, False, posterior.DEFAULT_BUDGET)


def test_the_grid_layout_is_recognised_exactly():
    """Row-major u × w (the split's faces, meshgrid "ij") is a grid; the "xy" layout, a shuffled or perturbed
    grid, a small one, a float32 one and 3-D points are not (they take the point-by-point kernel)."""
    u, w = torch.linspace(-2, 2, 40, dtype=torch.float64), torch.linspace(0, 1, 30, dtype=torch.float64)
    found = product_grid.product_axes(_grid(u, w))
    assert found is not None and torch.equal(found[0], u) and torch.equal(found[1], w)
    faces = Grid2D(np.linspace(0, 1, 41), np.linspace(-1, 1, 33)).faces()
    for points, (n1, n2) in zip(faces, ((40, 33), (41, 32)), strict=True):
        axes = product_grid.product_axes(torch.from_numpy(points))
        assert axes is not None and (len(axes[0]), len(axes[1])) == (n1, n2)
    xy = torch.stack(torch.meshgrid(u, w, indexing="xy"), -1).reshape(-1, 2)
    perturbed = _grid(u, w)
    perturbed[517, 1] += 1e-12
    shuffled = _grid(u, w)[torch.randperm(1200, generator=torch.Generator().manual_seed(0))]
    small = _grid(u[:20], w[:20])
    for points in (xy, perturbed, shuffled, small, _grid(u, w).float(), torch.zeros(1200, 3, dtype=torch.float64),
                   u.repeat(30)[:, None].expand(1200, 2).contiguous()):
        assert product_grid.product_axes(points) is None


clouds = st.tuples(st.integers(0, 10_000), st.booleans(), st.booleans())


@settings(max_examples=30, deadline=None)
@given(cloud=clouds, variance=st.floats(1e-4, 4.0), sizes=st.tuples(st.integers(32, 90), st.integers(32, 90)))
def test_the_factorised_kernel_equals_the_point_by_point_kernel_to_rounding(cloud, variance, sizes):
    """Shared and per-component variances, unequal weights, grids covering the cloud and beyond it: mean and
    log density equal the point-by-point kernel's to a few ulps of the logits' size (both round the logits,
    of size up to |x − c|²/2V, differently)."""
    seed, clustered, per_component = cloud
    centres, spread, log_weights, values = _mixture(seed, 400, clustered, per_component)
    variances = variance if spread is None else variance * spread
    x = _grid(torch.linspace(-7, 6, sizes[0], dtype=torch.float64), torch.linspace(-6, 7, sizes[1],
                                                                                      dtype=torch.float64))
    grid = _through_the_grid(x, centres, values, variances, log_weights)
    pointwise = _pointwise(x, centres, values, variances, log_weights)
    smallest = float(torch.as_tensor(variances).min())
    size = 1 + float(((x.norm(dim=1).max() + centres.norm(dim=1).max()) ** 2) / (2 * smallest))
    rounding = 64 * torch.finfo(torch.float64).eps * size
    assert (grid.log_density - pointwise.log_density).abs().max() <= rounding
    assert (grid.mean - pointwise.mean).abs().max() <= rounding * (values.max(0).values - values.min(0).values).max()


@settings(max_examples=30, deadline=None)
@given(cloud=clouds, variance=st.floats(1e-3, 1.0), margin=st.floats(8.0, 40.0),
       tolerance=st.sampled_from([1e-2, 1e-6, 1e-12]))
def test_where_a_point_is_resolved_the_floor_changes_its_sums_by_less_than_the_tolerance(cloud, variance, margin,
                                                                                         tolerance):
    """With the exponent floor lowered from 350 to ln(1/tolerance) + 8..40, flooring does change terms: at every
    point the factorised kernel calls resolved (there are some: those near a component), log Z and the mean
    stay within the tolerance of the direct sums (the bound K e^{-floor} / Z of the module docstring); the rest
    are the ones the kernel recomputes."""
    floor = math.log(1 / tolerance) + margin
    seed, clustered, per_component = cloud
    centres, spread, log_weights, values = _mixture(seed, 300, clustered, per_component)
    variances = torch.as_tensor(variance if spread is None else variance * spread, dtype=torch.float64)
    u, w = torch.linspace(-6, 6, 50, dtype=torch.float64), torch.linspace(-6, 6, 45, dtype=torch.float64)
    with mock.patch.object(product_grid, "FACTOR_FLOOR", floor):
        sums = product_grid.grid_sums(u, w, centres, values, variances, log_weights, budget=1 << 16,
                                      tolerance=tolerance)
    log_sum, mean = _direct(_grid(u, w), centres, variances, log_weights, values)
    resolved = sums.resolved
    assert resolved.any()
    # beside the tolerance, the rounding of terms the size of log Z itself (a few ulps)
    rounding = 64 * torch.finfo(torch.float64).eps * (1 + log_sum[resolved].abs())
    assert ((sums.log_sum[resolved] - log_sum[resolved]).abs() <= 1.01 * tolerance + rounding).all()
    error = (sums.mean[resolved] - mean[resolved]).abs().max(1).values
    assert (error <= (2.01 * tolerance + rounding) * float(values.abs().max())).all()


def test_points_far_from_every_component_are_recomputed_and_the_result_stays_exact():
    """Narrow kernels around tight blobs on a wide grid: far from the blobs in both coordinates the factorised
    sums underflow (not resolved); posterior_average recomputes those points one by one, and every point's
    log density and mean equal the direct sums'."""
    centres, _, log_weights, values = _mixture(3, 500, clustered=True, per_component=False)
    u, w = torch.linspace(-9, 9, 120, dtype=torch.float64), torch.linspace(-9, 9, 110, dtype=torch.float64)
    variance = torch.tensor(2e-3, dtype=torch.float64)
    sums = product_grid.grid_sums(u, w, centres, values, variance, log_weights, budget=1 << 20,
                                  tolerance=posterior.SCREEN_TOLERANCE)
    assert 0 < int((~sums.resolved).sum()) < len(sums.resolved)
    average = _through_the_grid(_grid(u, w), centres, values, variance, log_weights)
    log_sum, mean = _direct(_grid(u, w), centres, variance, log_weights, values)
    assert torch.isfinite(average.log_density).all()
    # both round terms of size up to |x − c|²/2V ~ 1e5 (a few ulps of it: 1e-11 absolute)
    largest = float(torch.cdist(_grid(u, w), centres).max() ** 2 / (2 * variance))
    rounding = 64 * torch.finfo(torch.float64).eps * largest
    assert (average.log_density - log_sum).abs().max() <= rounding
    assert (average.mean - mean).abs().max() <= rounding * float(values.abs().max())


def test_the_factor_tables_are_split_into_blocks_within_the_budget():
    """A budget of a few rows gives the same sums as one block (each row of u is independent; the matrix
    products may round differently for other shapes); below one row beside the second table, no grid path."""
    centres, spread, log_weights, values = _mixture(5, 200, clustered=False, per_component=True)
    u, w = torch.linspace(-4, 4, 37, dtype=torch.float64), torch.linspace(-4, 4, 41, dtype=torch.float64)
    whole, blocked = (product_grid.grid_sums(u, w, centres, values, 0.3 * spread, log_weights, budget=budget,
                                             tolerance=1e-16) for budget in (1 << 24, 41 * 200 + 5 * 4 * 200))
    assert product_grid.grid_sums(u, w, centres, values, 0.3 * spread, log_weights, budget=41 * 200 + 4 * 199,
                                  tolerance=1e-16) is None  # not one row of the first table beside the second
    assert torch.equal(whole.resolved, blocked.resolved)
    assert torch.allclose(whole.log_sum, blocked.log_sum, rtol=1e-14, atol=0)
    assert torch.allclose(whole.mean, blocked.mean, rtol=0, atol=1e-14 * float(values.abs().max()))


@pytest.mark.parametrize("requires_grad", [True, False])
def test_a_grid_under_autograd_takes_the_recorded_kernel(requires_grad):
    """Gradients flow through the point-by-point kernel (the factorised one is for measurements only)."""
    centres, _, log_weights, values = _mixture(2, 300, clustered=False, per_component=False)
    x = _grid(torch.linspace(-3, 3, 40, dtype=torch.float64), torch.linspace(-3, 3, 40, dtype=torch.float64))
    x.requires_grad_(requires_grad)
    with mock.patch.object(posterior, "grid_sums", wraps=product_grid.grid_sums) as spy:
        average = posterior.posterior_average(x, centres, values, 0.5, log_weights)
    assert average.log_density.requires_grad == requires_grad
    assert spy.call_count == (0 if requires_grad else 1)
    if requires_grad:  # and gradients reach the query points
        average.log_density.sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()


def test_a_density_alone_has_no_values_to_average():
    """The snapshots' densities average nothing (values of width 0): the log density is the direct one."""
    centres, _, log_weights, _ = _mixture(6, 300, clustered=False, per_component=False)
    x = _grid(torch.linspace(-4, 4, 40, dtype=torch.float64), torch.linspace(-4, 4, 45, dtype=torch.float64))
    average = _through_the_grid(x, centres, centres.new_zeros(300, 0), 0.2, log_weights)
    log_sum, _ = _direct(x, centres, 0.2, log_weights, centres.new_zeros(300, 0))
    assert average.mean.shape == (1800, 0)
    assert torch.allclose(average.log_density, log_sum, rtol=1e-13, atol=0)
