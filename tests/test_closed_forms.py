"""Gaussian data: velocities, Wasserstein speed, W_2, D_0 and η against closed forms; the exact velocity
solves the continuity equation (1) for mixtures in 1-D and 2-D under every schedule."""

import functools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from conftest import continuity_residual, run_dict, scenario_dict
from stochthermo.engine._registry import default_registry
from stochthermo_plugins.distributions import Gaussian, GaussianMixture
from stochthermo_plugins.processes.optimal_transport import OptimalTransport
from stochthermo_plugins.processes.scheduled import Scheduled

SCHEDULES = default_registry().names("schedule")
PRIOR = Gaussian(0.0, 1.0)


def gaussian_w1(a, sa, b, sb):
    """W_1(N(a, sa²), N(b, sb²)) = E|c + kZ| with c = a − b, k = sa − sb."""
    c, k = a - b, abs(sa - sb)
    if k == 0:
        return abs(c)
    return c * (1 - 2 * stats.norm.cdf(-c / k)) + 2 * k * stats.norm.pdf(c / k)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_velocity_of_gaussian_data(schedule):
    mu, s, tau = 0.7, 0.4, 2.0
    process = Scheduled(data=Gaussian(mu, s), prior=PRIOR, tau=tau,
                        schedule=default_registry().get("schedule", schedule)())
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)[:, None]
    for t in (0.3, 1.1, 1.9):
        # quantile-preserving linear flow x(z) = m μ + sqrt(V) z  =>  ν = ṁ μ + (d sqrt V / dt)(x − m μ)/sqrt V
        h = 1e-5
        def moments(time):
            st = torch.tensor(time / tau, dtype=torch.float64)
            m, sig = float(process.schedule.m(st)), float(process.schedule.sigma(st))
            return m, math.sqrt(m**2 * s**2 + sig**2)
        (m, root), (m_hi, root_hi), (m_lo, root_lo) = moments(t), moments(t + h), moments(t - h)
        expected = (m_hi - m_lo) / (2 * h) * mu + (root_hi - root_lo) / (2 * h) * (x - m * mu) / root
        assert torch.allclose(process.velocity(t, x), expected, rtol=1e-6, atol=1e-6), (schedule, t)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_velocity_at_start_is_force_minus_temperature_score(schedule):
    """At t = 0 the definition (1) applies directly: ν_0 = f_0 − T_0 ∇ln q, f_0(x) = (ṁ_0/m_0) x."""
    data = GaussianMixture([0.3, 0.7], [-1.0, 0.5], [0.2, 0.6])
    sched = default_registry().get("schedule", schedule)()
    tau = 2.0
    process = Scheduled(data=data, prior=PRIOR, tau=tau, schedule=sched)
    x = torch.linspace(-2, 2, 21, dtype=torch.float64)[:, None].requires_grad_(True)
    score = torch.autograd.grad(data.log_prob(x).sum(), x)[0]
    zero = torch.zeros((), dtype=torch.float64)
    force = float(sched.dm(zero) / sched.m(zero)) / tau * x
    expected = force - float(sched.temperature(zero)) / tau * score
    assert torch.allclose(process.velocity(0.0, x.detach()), expected.detach(), atol=1e-12)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("dim", [1, 2])
def test_continuity_equation(schedule, dim):
    """∂_t log P + ν·∇log P + ∇·ν = 0 with P_t the closed-form marginal: checks ν independently of its formula."""
    if dim == 1:
        data = GaussianMixture([0.3, 0.7], [-1.0, 0.5], [0.2, 0.6])
    else:
        data = GaussianMixture([0.4, 0.6], [[1.0, 0.0], [-0.5, 0.8]],
                               covariances=[[[0.3, 0.1], [0.1, 0.2]], [[0.5, 0.0], [0.0, 0.1]]])
    process = Scheduled(data=data, prior=Gaussian([0.0] * dim, 1.0), tau=1.0,
                        schedule=default_registry().get("schedule", schedule)())
    x = torch.randn(64, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for t in (0.1, 0.5, 0.9):
        residual, scale, _ = continuity_residual(process, t, x)
        assert float(residual.abs().max()) < 1e-5 * scale, (schedule, dim, t)


@pytest.mark.parametrize("protocol", ["cosine", "cond_ot", "ot"])
def test_gaussian_data_costs_and_response(protocol):
    mu, s, delta, r = 0.5, 0.6, 0.8, 0.9
    process = ({"name": "scheduled", "schedule": protocol} if protocol != "ot" else "optimal_transport")
    ds = run_dict(scenario_dict(
        data={"name": "gaussian", "mean": mu, "std": s}, time_steps=96, particles=4096,
        protocols={protocol: {"process": process}},
        perturbations={"p": {"name": "gaussian", "mean": delta, "std": r}})).isel(protocol=0, seed=0, perturbation=0)
    times = ds.time.values
    # v_2² = ṁ² μ² + (d sqrt V/dt)², V = m² s² + σ² (or constant W_2²/τ² for OT)
    w2_squared = mu**2 + (s - 1) ** 2
    if protocol == "ot":
        expected_speed = np.full_like(times, w2_squared)
    else:
        schedule = default_registry().get("schedule", protocol)()
        st = torch.tensor(times)
        m, dm = schedule.m(st).numpy(), schedule.dm(st).numpy()
        V = m**2 * s**2 + schedule.sigma(st).numpy() ** 2
        dV = 2 * m * dm * s**2 + schedule.dsigma2(st).numpy()
        expected_speed = dm**2 * mu**2 + dV**2 / (4 * V)
    np.testing.assert_allclose(ds.wasserstein_speed_squared.values, expected_speed, rtol=1e-6, atol=1e-9)
    assert math.isclose(float(ds.geodesic_cost), w2_squared, rel_tol=1e-6)
    # exact flows map N(0,1) onto q by z -> μ + s z, so p = N(μ + s δ, s² r²)
    d0 = math.exp(delta**2 / (2 - r**2)) / (r * math.sqrt(2 - r**2)) - 1
    change = gaussian_w1(mu, s, mu + s * delta, s * r) - gaussian_w1(0, 1, delta, r)
    assert math.isclose(float(ds.chi_square), d0, rel_tol=1e-10)
    assert math.isclose(float(ds.wasserstein_1_change), change, rel_tol=1e-6)
    assert math.isclose(float(ds.response), change**2 / d0, rel_tol=1e-6)


def test_ot_process_gaussian_2d_is_the_bures_geodesic():
    a = [0.5, -1.0]
    A = [[0.5, 0.2], [0.2, 0.3]]
    ds = run_dict(scenario_dict(
        data={"name": "gaussian", "mean": a, "covariance": A}, prior={"name": "gaussian", "mean": [0.0, 0.0]},
        particles=2000, time_steps=16, protocols={"ot": {"process": "optimal_transport"}},
        perturbations={"p": {"name": "gaussian", "mean": [0.3, 0.0], "std": 0.9}},
        observers=["thermodynamics"])).isel(protocol=0, seed=0)
    root = torch.linalg.eigh(torch.tensor(A))
    trace_root = float(root.eigenvalues.sqrt().sum())
    bures = float(np.dot(a, a) + np.trace(A) + 2 - 2 * trace_root)
    speed = ds.wasserstein_speed_squared.values
    # particles move on straight lines at constant speed; their mean kinetic energy estimates W_2² (MC error)
    assert np.ptp(speed) < 1e-12
    assert math.isclose(float(ds.kinetic_cost), bures, rel_tol=0.05)
    # the exact-plan W_2 of the two end clouds equals the particles' kinetic cost (the plan is the map)
    assert math.isclose(float(ds.geodesic_cost), float(ds.kinetic_cost), rel_tol=1e-6)


def test_ot_velocity_matches_particle_velocity_1d():
    data = GaussianMixture([0.5, 0.5], [-0.6, 0.6], [0.3, 0.3])
    process = OptimalTransport(data=data, prior=PRIOR, tau=1.0)
    y = torch.linspace(-1.5, 1.5, 31, dtype=torch.float64)[:, None]
    target = process.transport_map(y)
    for s in (0.0, 0.25, 0.75, 1.0):
        x = (1 - s) * y + s * target
        assert torch.allclose(process.velocity(s, x), target - y, atol=1e-10)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_transported_quantiles_are_marginal_quantiles(schedule):
    """RK4 transport of P_τ's quantile ensemble reproduces the closed-form quantiles of every P_t."""
    ds_times = torch.linspace(0, 1, 257, dtype=torch.float64)
    data = GaussianMixture([0.5, 0.5], [-0.6, 0.6], [0.3, 0.3])
    process = Scheduled(data=data, prior=PRIOR, tau=1.0, schedule=default_registry().get("schedule", schedule)())
    from stochthermo.measures._ensemble import make_ensemble
    from stochthermo.roles._equation import process_equation
    from stochthermo.roles._trajectory import run_flows
    from stochthermo_plugins.solvers import RungeKutta4

    ensemble = make_ensemble(process.end_distribution(), 257, 0, device="cpu")
    flow = functools.partial(RungeKutta4().solve, process_equation(process))
    trajectory = run_flows(flow, {"end": ensemble}, ds_times)["end"]
    for k in (0, 64, 160, 256):
        exact = process.marginal(float(ds_times[k])).from_normal_score(ensemble.normal_scores)
        inner = ensemble.normal_scores.abs() < 6
        assert torch.allclose(trajectory.positions[k][inner], exact[inner], atol=1e-6), (schedule, k)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_isotropic_fast_path_equals_general_formula(schedule):
    """The scheduled process evaluates isotropic mixtures without a basis change; both paths agree."""
    data = GaussianMixture([0.2, 0.5, 0.3], [[1.0, 0.0], [-0.5, 0.8], [0.0, -1.0]], [0.3, 0.7, 0.5])
    process = Scheduled(data=data, prior=Gaussian([0.0, 0.0], 1.0), tau=1.5,
                        schedule=default_registry().get("schedule", schedule)())
    assert process.isotropic
    x = torch.randn(200, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 2
    for t in (0.0, 0.4, 1.1, 1.5):
        fast = process.velocity(t, x)
        process.isotropic = False
        general = process.velocity(t, x)
        process.isotropic = True
        assert torch.allclose(fast, general, rtol=1e-12, atol=1e-12), (schedule, t)


def test_chi_square_of_a_mixture_whose_components_coincide_is_the_gaussian_closed_form():
    """Cosine's P_τ is a mixture whose means are m_τ μ_k with m_τ = cos(π/2) = 6e-17: numerically one Gaussian.
    In 64-D (the gmm mixture in coordinate 1, N(0, 0.3²) in the others) D_0 of the shifted and narrow starts must
    be the 1-D values e − 1 and the narrow start's closed form, not the isotropic-KL proxy (which gave 1 and
    0.0010 against 1.7183 and 0.0719)."""
    import math

    from stochthermo.measures import GaussianMixture, chi_square
    from stochthermo.numerics import chi_square_gaussians

    d, m = 64, math.cos(math.pi / 2)
    means = [[m * -0.6] + [0.0] * (d - 1), [m * 0.6] + [0.0] * (d - 1)]
    cov = [[[((m * 0.3) ** 2 + 1.0 - m**2) if i == j else 0.0 for j in range(d)] for i in range(d)]] * 2
    end = GaussianMixture([0.5, 0.5], means, covariances=cov)
    shifted = GaussianMixture([1.0], [[1.0] + [0.0] * (d - 1)], stds=[1.0])
    narrow_cov = torch.eye(d, dtype=torch.float64)
    narrow_cov[0, 0] = 0.64
    narrow = GaussianMixture([1.0], [[0.0] * d], covariances=[narrow_cov.tolist()])
    found = chi_square(shifted, end)
    assert "coincide to rounding" in found.method
    assert found.value == pytest.approx(math.e - 1, rel=1e-12)
    exact = chi_square_gaussians(torch.zeros(1, dtype=torch.float64), torch.full((1, 1), 0.64, dtype=torch.float64),
                                 torch.zeros(1, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64))
    assert chi_square(narrow, end).value == pytest.approx(exact, rel=1e-12) and exact == pytest.approx(0.0718658, 1e-5)
    apart = GaussianMixture([0.5, 0.5], [[-0.6] + [0.0] * (d - 1), [0.6] + [0.0] * (d - 1)], stds=[1.0, 1.0])
    assert "coincide" not in chi_square(shifted, apart).method  # components that differ are not merged


@pytest.mark.parametrize("dim", [3, 64, 784])
def test_monte_carlo_chi_square_is_a_measurement_with_its_error_bar(dim):
    """Where no exact method applies, D_0 = E_P~[P~/P] − 1 by Monte Carlo with its standard error. The laws are
    the gmm mixture in coordinate 1 and N(0, 0.3²) in the others, against N(0.2, 0.35²) × the same: for product
    laws χ² + 1 factorises, so D_0 is the 1-D value (tanh-sinh quadrature); the estimate lies within 4 of its
    standard errors of it (a 6e-5 chance for a Gaussian error), in 3, 64 and 784 dimensions (2-D mixtures have the
    grid quadrature). A perturbed start of std 0.39 in coordinate 1 keeps D_0 finite (0.39² < 2 · 0.3²) but not the
    ratio's variance (0.39² > 1.5 · 0.3²): its standard error is reported infinite."""
    import math

    from stochthermo.measures import GaussianMixture, chi_square

    def embedded(weights, means, std_first):
        covariance = torch.eye(dim, dtype=torch.float64) * 0.09
        covariance[0, 0] = std_first**2
        return GaussianMixture(weights, [[m] + [0.0] * (dim - 1) for m in means],
                               covariances=[covariance.tolist()] * len(weights))

    reference = embedded([0.5, 0.5], [-0.6, 0.6], 0.3)
    perturbed = embedded([1.0], [0.2], 0.35)
    exact = chi_square(GaussianMixture([1.0], [0.2], stds=[0.35]),
                       GaussianMixture([0.5, 0.5], [-0.6, 0.6], stds=[0.3, 0.3])).value
    found = chi_square(perturbed, reference, samples=2**14)
    assert found.method.startswith("Monte Carlo") and 0 < found.stderr < 0.1 * exact
    assert abs(found.value - exact) < 4 * found.stderr, (found.value, exact, found.stderr)
    heavy = chi_square(embedded([1.0], [0.0], 0.39), reference, samples=2**12)
    assert math.isfinite(heavy.value) and math.isinf(heavy.stderr) and "variance is infinite" in heavy.method
