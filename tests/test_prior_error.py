"""Prior error and semi-discrete optimal transport (docs/theory.md §9): Laguerre cells and their exact
Gaussian masses, the two semi-discrete solvers, the long-time flow map against its closed forms (one atom,
two atoms with unequal weights, Gaussian data), the prior-error bounds, weighted point clouds, the two
observers end to end, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml
from scipy.stats import norm

from conftest import run_dict, scenario_dict
from stochthermo.engine._build import parse_scenario
from stochthermo.engine._registry import default_registry
from stochthermo.errors import ScenarioError
from stochthermo.measures._laguerre import cell_masses, laguerre_cells
from stochthermo.measures._long_time import (
    gaussian_posterior_mean,
    jacobian_asymmetry,
    point_basins,
    probability_flow,
    signal_level,
    two_point_thresholds,
)
from stochthermo.measures._prior_error import prior_error_bounds
from stochthermo.measures._semidiscrete import check_weighted_points, solve_semidiscrete
from stochthermo.numerics._gaussian import sqrtm_psd

POINTS = torch.tensor([[-1.6, 0.4], [0.2, 1.3], [1.1, -0.9], [2.0, 0.8], [-0.5, -1.4], [0.6, 0.1]],
                      dtype=torch.float64)
WEIGHTS = torch.tensor([0.35, 0.2, 0.15, 0.12, 0.1, 0.08], dtype=torch.float64)


def gaussian(mean, std):
    return default_registry().create("distribution", {"name": "gaussian", "mean": mean, "std": std}, "prior")


def normal(n, seed, dim=2):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def assign(points, dual, z):
    return (torch.cdist(z, points) ** 2 - dual).argmin(1)


# ---- Laguerre cells and the exact solver --------------------------------------------------------------
@pytest.mark.parametrize("centre, std", [((0.0, 0.0), 1.0), ((0.5, -0.3), 2.0)])
def test_exact_cell_masses_match_monte_carlo(centre, std):
    """Voronoi cells (g = 0): the closed-form masses sum to one and agree with 10⁶ draws within 4 s.e."""
    centre = np.array(centre)
    cells = laguerre_cells(POINTS.numpy(), np.zeros(6), centre, std)
    exact = cell_masses(cells, centre, std)
    assert abs(exact.sum() - 1) < 1e-13
    z = torch.from_numpy(centre) + std * normal(10**6, 0)
    counted = torch.bincount(assign(POINTS, torch.zeros(6, dtype=torch.float64), z), minlength=6).numpy() / 10**6
    np.testing.assert_allclose(counted, exact, atol=4 * np.sqrt(exact * (1 - exact) / 10**6).max())


def test_a_repeated_vertex_changes_no_mass():
    """Clipping can repeat a vertex; the zero-length edge must contribute nothing (it once gave NaN)."""
    from stochthermo.measures._laguerre import polygon_mass

    square = np.array([[0.2, -0.1], [1.5, -0.1], [1.5, 0.9], [0.2, 0.9]])
    repeated = np.insert(square, 2, square[2], axis=0)
    centre = np.zeros(2)
    assert polygon_mass(repeated, centre, 1.0) == pytest.approx(polygon_mass(square, centre, 1.0), abs=1e-16)
    expected = (norm.cdf(1.5) - norm.cdf(0.2)) * (norm.cdf(0.9) - norm.cdf(-0.1))
    assert polygon_mass(square, centre, 1.0) == pytest.approx(expected, rel=1e-12)


def test_newton_solver_reaches_the_weights_and_pot_agrees():
    prior = gaussian([0.0, 0.0], 1.0)
    exact = solve_semidiscrete(prior, POINTS, WEIGHTS, method="newton")
    assert exact.converged and exact.mass_error < 1e-12 and exact.empty_cells == 0
    z = normal(2**18, 3)
    counted = torch.bincount(exact.map.assign(z), minlength=6).double() / len(z)
    assert float((counted - WEIGHTS).abs().max()) < 4 * math.sqrt(0.25 / len(z))
    stochastic = solve_semidiscrete(prior, POINTS, WEIGHTS, method="pot", iterations=4000)
    assert stochastic.converged and stochastic.mass_standard_error > 0
    disagreement = float((stochastic.map.assign(z) != exact.map.assign(z)).double().mean())
    assert disagreement < 0.01


def test_unconverged_stochastic_solution_is_flagged():
    far = POINTS * 3
    solution = solve_semidiscrete(gaussian([0.0, 0.0], 1.0), far, WEIGHTS, method="pot", iterations=5, batch=4)
    assert not solution.converged
    assert solution.mass_error > 0.01


def test_brenier_map_is_the_gradient_of_its_potential():
    solution = solve_semidiscrete(gaussian([0.0, 0.0], 1.0), POINTS, WEIGHTS, method="newton")
    z = normal(64, 5).requires_grad_(True)
    gradient, = torch.autograd.grad(solution.map.potential(z).sum(), z)
    torch.testing.assert_close(gradient, solution.map(z.detach()), rtol=0, atol=1e-12)
    soft, = torch.autograd.grad(solution.map.soft_potential(z, 0.05).sum(), z)
    torch.testing.assert_close(soft, solution.map.soft(z.detach(), 0.05), rtol=0, atol=1e-12)
    # away from the cell boundaries (a score gap of 40 ε) the soft map is the hard one to e^-40
    z = z.detach()
    top = solution.map.affine_scores(z).topk(2, dim=1).values
    clear = (top[:, 0] - top[:, 1]) > 40 * 1e-4
    assert clear.sum() > 50
    torch.testing.assert_close(solution.map.soft(z, 1e-4)[clear], solution.map(z)[clear], rtol=0, atol=1e-15)


# ---- closed forms -------------------------------------------------------------------------------------
@pytest.mark.parametrize("horizon", [0.5, 2.0, math.inf])
def test_two_atoms_split_at_the_closed_form_thresholds(horizon):
    """Both maps split space by a hyperplane normal to y₂ − y₁: Φ_T at the w₁-quantile of the projected P_T,
    the Brenier map at √c Φ⁻¹(w₁); the flow computed from the ODE and the Newton dual weights must agree."""
    points = torch.tensor([[-1.0, 0.5], [1.5, -0.2]], dtype=torch.float64)
    weights = torch.tensor([0.7, 0.3], dtype=torch.float64)
    c = 0.5
    flow_threshold, brenier_threshold = two_point_thresholds(points, weights, c, horizon)
    assert brenier_threshold == pytest.approx(math.sqrt(c) * norm.ppf(0.7), rel=1e-14)
    z = math.sqrt(c) * normal(4000, 1)
    along = z @ (points[1] - points[0]) / torch.linalg.norm(points[1] - points[0])
    basins, confidence = point_basins(points, weights, c, z, horizon)
    assert bool((basins == (along >= flow_threshold).long()).all())
    assert float(confidence.min()) > 1 - 1e-9
    solution = solve_semidiscrete(gaussian([0.0, 0.0], math.sqrt(c)), points, weights, method="newton")
    clear = (along - brenier_threshold).abs() > 1e-9
    assert bool((solution.map.assign(z)[clear] == (along[clear] >= brenier_threshold).long()).all())
    if math.isinf(horizon):
        assert flow_threshold == pytest.approx(brenier_threshold, abs=1e-12)
    else:
        assert abs(flow_threshold - brenier_threshold) > 1e-3


def test_one_atom():
    point, weight = torch.tensor([[0.7, -0.2]], dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    z = normal(100, 2)
    assert bool((point_basins(point, weight, 1.0, z, 1.0)[0] == 0).all())
    solution = solve_semidiscrete(gaussian([0.0, 0.0], 1.0), point, weight)
    assert solution.converged and bool((solution.map(z) == point).all())


@pytest.mark.parametrize("horizon", [1.0, math.inf])
def test_gaussian_data_flow_is_the_closed_form_linear_map(horizon):
    """For N(m, S) the flow from a_T to a is x = a m + Σ_a^{1/2} Σ_T^{-1/2} (z − a_T m), Σ_a = a²S + c(1 − a²)I
    (commuting symmetric matrices: a symmetric Jacobian); at T = ∞ and a → 1 it is the Brenier map
    m + S^{1/2} z/√c."""
    m = torch.tensor([0.5, -1.0], dtype=torch.float64)
    s = torch.tensor([[0.5, 0.2], [0.2, 0.3]], dtype=torch.float64)
    c = 1.0
    z = normal(200, 4)
    x, level = probability_flow(gaussian_posterior_mean(m, s, c), z, horizon)
    a_t, eye = signal_level(horizon), torch.eye(2, dtype=torch.float64)
    start, end = a_t**2 * s + c * (1 - a_t**2) * eye, level**2 * s + c * (1 - level**2) * eye
    exact = level * m + (z - a_t * m) @ (sqrtm_psd(end) @ torch.linalg.inv(sqrtm_psd(start))).T
    torch.testing.assert_close(x, exact, rtol=0, atol=1e-9)
    assert float(jacobian_asymmetry(gaussian_posterior_mean(m, s, c), z[:20], horizon, 0.9).max()) < 1e-8


def test_flow_basins_converge_in_the_step_count():
    """The basins of Φ_∞ at 128 and at 512 RK4 steps differ on less than 0.1 % of the prior mass."""
    z = normal(4096, 6)
    coarse = point_basins(POINTS, WEIGHTS, 1.0, z, math.inf, steps=128)[0]
    fine = point_basins(POINTS, WEIGHTS, 1.0, z, math.inf, steps=512)[0]
    assert float((coarse != fine).double().mean()) < 1e-3


def test_prior_error_bounds_bracket_the_gaussian_distance():
    """For Gaussian data the lower bound is W_2(P_τ, N(0, cI)) (Bures formula, computed independently); the
    upper bound lies above it; both vanish like a."""
    m = torch.tensor([0.4, -0.3], dtype=torch.float64)
    s = torch.tensor([[0.5, 0.2], [0.2, 0.3]], dtype=torch.float64)
    c = 0.5
    for a in (0.9, 0.3, 1e-3):
        end = a * a * s + c * (1 - a * a) * torch.eye(2, dtype=torch.float64)
        prior = c * torch.eye(2, dtype=torch.float64)
        root = sqrtm_psd(prior)
        bures = float(torch.trace(end + prior - 2 * sqrtm_psd(root @ end @ root)))
        exact = math.sqrt(a * a * float(m @ m) + bures)
        lower, upper = prior_error_bounds(m, s, float(m @ m + torch.trace(s)), a, c)
        assert lower == pytest.approx(exact, rel=1e-10)
        assert upper >= exact
    assert lower / a == pytest.approx(float(m.norm()), rel=1e-2)


# ---- weighted point clouds ----------------------------------------------------------------------------
def test_weights_act_like_repeated_points():
    """A point of weight 2/3 is the same law as that point listed twice among three: same velocity, density
    and moments."""
    from stochthermo_plugins.distributions import PointCloud
    from stochthermo_plugins.processes.scheduled import Scheduled
    from stochthermo_plugins.schedules import Cosine

    a, b = [0.3, -0.4], [-1.0, 0.8]
    weighted = PointCloud.from_points(torch.tensor([a, b], dtype=torch.float64),
                                      weights=torch.tensor([2 / 3, 1 / 3], dtype=torch.float64))
    repeated = PointCloud.from_points(torch.tensor([a, a, b], dtype=torch.float64))
    prior = gaussian([0.0, 0.0], 1.0)
    x = normal(50, 7)
    processes = [Scheduled(data=law, prior=prior, tau=1.0, schedule=Cosine()) for law in (weighted, repeated)]
    for t in (0.2, 0.7):
        torch.testing.assert_close(processes[0].velocity(t, x), processes[1].velocity(t, x), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(processes[0].marginal(t).log_prob(x), processes[1].marginal(t).log_prob(x))
    torch.testing.assert_close(weighted.covariance(), repeated.covariance())
    assert weighted.second_moment() == pytest.approx(repeated.second_moment(), rel=1e-14)


@pytest.mark.parametrize("change, key, message", [
    ({"weights": [0.5, 0.6]}, "data.weights", "sum to 1"),
    ({"weights": [1.5, -0.5]}, "data.weights", "must be > 0"),
    ({"weights": [0.5]}, "data.weights", "one weight per point"),
    ({"points": [[0.0, 1.0], [0.0, 1.0]]}, "data.points", "coincide"),
    ({"points": [[0.0, 1.0], [2.0]]}, "data.points", "same number of coordinates"),
])
def test_bad_weighted_points(change, key, message):
    data = {"name": "weighted_points", "points": [[0.0, 1.0], [1.0, 0.0]], "weights": [0.5, 0.5], **change}
    with pytest.raises(ScenarioError, match=message) as error:
        parse_scenario(yaml.safe_dump(scenario_dict(data=data, prior={"name": "gaussian", "mean": [0.0, 0.0]})),
                       source="<test>")
    assert error.value.key == key


def test_check_weighted_points_names_the_offender():
    with pytest.raises(ValueError, match="points 1 and 3 coincide"):
        check_weighted_points(torch.tensor([[0.0], [1.0], [2.0], [1.0]]), torch.full((4,), 0.25))


# ---- the observers end to end -------------------------------------------------------------------------
def prior_error_scenario(**changes):
    spec = scenario_dict(
        data={"name": "weighted_points", "points": POINTS.tolist(), "weights": WEIGHTS.tolist()},
        prior={"name": "gaussian", "mean": [0.0, 0.0], "std": 1.0}, time_steps=32, particles=512,
        reverse_start="prior", perturbations={"narrow": {"name": "gaussian", "mean": [0.0, 0.0], "std": 0.9}},
        protocols={"vp": {"process": {"name": "scheduled", "schedule": {"name": "cosine", "end": 0.6}}}},
        observers=[{"name": "prior_error", "samples": 512},
                   {"name": "long_time_limit", "horizons": [0.5, 2.0], "samples": 2048, "steps": 128,
                    "jacobian_samples": 32, "grid": 9, "compare_solvers": False}])
    spec.update(changes)
    return spec


def test_observers_measure_the_prior_error_and_the_limit():
    ds = run_dict(prior_error_scenario())
    first = {"protocol": "vp", "seed": 0}
    w2 = float(ds.prior_error_w2.sel(first))
    lower, upper = float(ds.prior_error_lower_bound.sel(first)), float(ds.prior_error_upper_bound.sel(first))
    bias = float(ds.prior_error_w2_bias.sel(first))
    assert lower - bias <= w2 <= upper + bias  # the sample estimate carries its bias above the true value
    assert float(ds.generated_w2_from_prior.sel(first)) > float(ds.generated_w2_from_end.sel(first))
    limit = ds.sel(first).sel(horizon=math.inf)
    # Φ_∞ carries the prior onto the weights (sampling level), and Φ_T → Φ_∞ as T grows
    assert float(limit.basin_mass_error) < 4 * math.sqrt(0.25 / 2048)
    mismatch = ds.basin_mismatch_limit.sel(first).values
    assert mismatch[0] > mismatch[1] > mismatch[2] == 0
    assert float(ds.limit_convergence_rate.sel(first)) > 0
    # the finding recorded in the README: for this asymmetric weighted set Φ_∞ is not the Brenier map
    assert float(limit.basin_mismatch_brenier) > 5 * float(limit.basin_mismatch_brenier_error)
    assert float(limit.flow_jacobian_asymmetry) > 1e-3
    assert ds.flow_basins.shape[-2:] == (9, 9)


@pytest.mark.parametrize("change, key", [
    ({"reverse_start": "end_distribution"}, "reverse_start"),
    ({"protocols": {"ot": {"process": {"name": "scheduled", "schedule": "cond_ot"}}}}, "protocols"),
    ({"prior": {"name": "gaussian", "mean": [0.0, 0.0], "std": 2.0}}, "prior"),
])
def test_observers_refuse_what_they_cannot_measure(change, key):
    with pytest.raises(ScenarioError) as error:
        parse_scenario(yaml.safe_dump(prior_error_scenario(**change)), source="<test>")
    assert key in error.value.key


def test_ot_bridge_against_the_plain_sampler():
    """At one RK4 step the bridge from T′ is far closer to the data than the plain sampler from the prior;
    with enough steps both end on the points (the exact empirical velocity memorises), and the bridge, which
    starts from the exact P_T′, carries the weights to the sampling level while the plain sampler keeps the
    prior error of this short schedule (cosine to end 0.6)."""
    spec = prior_error_scenario(observers=[{"name": "ot_bridge", "bridge_time": 0.4, "steps": [1, 16],
                                            "particles": 1024}])
    ds = run_dict(spec).sel(protocol="vp", seed=0)
    assert float(ds.bridge_w1_data[0]) < 0.5 * float(ds.plain_w1_data[0])
    assert float(ds.bridge_memorisation[-1]) == 1.0 and float(ds.plain_memorisation[-1]) == 1.0
    assert float(ds.bridge_memorisation[0]) > float(ds.plain_memorisation[0])
    assert float(ds.bridge_w2_data[-1]) < float(ds.plain_w2_data[-1])
    assert float(ds.bridge_w2_data[-1]) < 1.5 * float(ds.bridge_w2_sampling)


@pytest.mark.parametrize("bridge_time", [0.0, -0.2, 1.5])
def test_bridge_time_outside_the_process_is_refused(bridge_time):
    spec = prior_error_scenario(observers=[{"name": "ot_bridge", "bridge_time": bridge_time}])
    with pytest.raises(ScenarioError, match=r"must lie in \(0, tau\]") as error:
        parse_scenario(yaml.safe_dump(spec), source="<test>")
    assert error.value.key == "observers[0].bridge_time"


def test_ot_bridge_with_a_reverse_sde():
    """The bridge with the stochastic Heun sampler: seeded (a rerun is identical) and still at the sampling
    level at 16 steps."""
    spec = prior_error_scenario(observers=[{"name": "ot_bridge", "bridge_time": 0.4, "steps": [16], "particles": 512,
                                            "sampler": {"name": "stochastic_heun", "gamma": 1.0}}])
    first, second = (run_dict(spec).sel(protocol="vp", seed=0) for _ in range(2))
    assert float(first.bridge_w2_data[0]) == float(second.bridge_w2_data[0])
    assert float(first.bridge_w2_data[0]) < 1.5 * float(first.bridge_w2_sampling)


def test_prior_error_scenario_validates():
    from pathlib import Path

    from stochthermo.cli import main

    assert main(["validate", str(Path(__file__).parents[1] / "scenarios" / "prior_error.yaml")]) == 0


def test_limit_and_bridge_use_the_prior_whatever_the_reverse_start():
    """long_time_limit and ot_bridge map the prior, also when the true reverse process starts from P_τ."""
    observers = [{"name": "long_time_limit", "horizons": [1.0], "samples": 512, "steps": 64, "jacobian_samples": 4,
                  "grid": 3, "compare_solvers": False},
                 {"name": "ot_bridge", "bridge_time": 0.4, "steps": [4], "particles": 256}]
    first, second = (run_dict(prior_error_scenario(observers=observers, reverse_start=start)).sel(protocol="vp", seed=0)
                     for start in ("prior", "end_distribution"))
    for name in ("basin_mismatch_brenier", "bridge_w2_data", "plain_w2_data"):
        np.testing.assert_array_equal(first[name].values, second[name].values)
