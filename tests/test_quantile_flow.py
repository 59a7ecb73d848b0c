"""The exact 1-D flow map of Gaussian-mixture marginals (stochthermo.quantile_flow): it agrees with RK4 on the
process's own velocity to RK4's error, converges onto it as the step shrinks, keeps every particle's
cumulative probability to float64 resolution, and follows perturbed starts far in the tails; the mixture
quantile it is built on agrees with bisection."""

import math

import torch

from stochthermo.engine._build import parse_scenario
from stochthermo.measures._ensemble import normal_score_grid
from stochthermo.numerics._integrate import rk4
from stochthermo.numerics._quantile_flow import mixture_quantile, solve_level
from stochthermo.numerics._roots import bisect
from stochthermo.roles._distribution import Distribution
from stochthermo_plugins.distributions import GaussianMixture

SCENARIO = """
name: quantile
tau: 1.0
time_steps: 8
particles: 64
data: {name: gaussian_mixture, weights: [0.2, 0.5, 0.3], means: [-1.5, 0.2, 1.1], stds: [0.2, 0.5, 0.3]}
prior: {name: gaussian, mean: 0.0, std: 1.0}
protocols:
  cosine: {process: {name: scheduled, schedule: cosine}}
  vp: {process: {name: scheduled, schedule: ornstein_uhlenbeck}}
perturbations: {shifted: {name: gaussian, mean: 1.0, std: 1.0}}
"""


def _processes():
    return [protocol.process for protocol in parse_scenario(SCENARIO, source="quantile.yaml").setup.protocols.values()]


def test_flow_map_agrees_with_rk4_and_rk4_converges_onto_it():
    # inside [0.1 τ, 0.9 τ]: the cosine velocity stiffens at τ and the Ornstein–Uhlenbeck one at 0 (σ ~ √t),
    # where RK4 on a few intervals would need far more steps (the exact map does not)
    times = torch.linspace(0.9, 0.1, 9, dtype=torch.float64)
    x0 = torch.linspace(-6.0, 7.0, 301, dtype=torch.float64)[:, None]  # starts well into both tails
    for process in _processes():
        exact, velocities = process.flow_map()(x0, times)
        errors = []
        for substeps in (8, 16, 32):
            integrated, _ = rk4(process.velocity, x0, times, substeps=substeps)
            errors.append(float((integrated - exact).abs().max()))
        assert errors[-1] < 2e-8, (process.name, errors)
        assert errors[0] / errors[1] > 10 and errors[1] / errors[2] > 10, errors  # fourth order: ratios near 16
        for k, t in enumerate(times):
            assert torch.allclose(velocities[k], process.velocity(float(t), exact[k]), rtol=1e-9, atol=1e-11)


def test_flow_map_conserves_the_cumulative_probability():
    times = torch.linspace(0.0, 1.0, 6, dtype=torch.float64)
    for process in _processes():
        x0 = process.marginal(0.0).sample(500, torch.Generator().manual_seed(1))
        positions, _ = process.flow_map()(x0, times)
        start = process.marginal(0.0)
        for k, t in enumerate(times):
            marginal = process.marginal(float(t))
            for function in ("log_cdf", "log_sf"):
                assert torch.allclose(getattr(marginal, function)(positions[k]), getattr(start, function)(x0),
                                      rtol=1e-10, atol=1e-12)


def test_forward_then_reverse_returns_to_the_start():
    forward_times = torch.linspace(0.0, 1.0, 5, dtype=torch.float64)
    x0 = torch.tensor([[-2.5], [-0.3], [0.0], [0.9], [2.0]], dtype=torch.float64)
    for process in _processes():
        flow = process.flow_map()
        there, _ = flow(x0, forward_times)
        back, _ = flow(there[-1], forward_times.flip(0))
        assert torch.allclose(back[-1], x0, rtol=0, atol=1e-11)


MIXTURES = [  # (weights, means, stds): the paper's data and bimodal start, separated and very unequal components
    ([0.5, 0.5], [-0.6, 0.6], [0.3, 0.3]),
    ([0.39, 0.22, 0.39], [-1.06, 0.0, 1.06], [0.34, 0.57, 0.34]),
    ([0.01, 0.99], [-30.0, 30.0], [0.01, 3.0]),
    ([0.3, 0.3, 0.4], [-3.0, 0.0, 3.0], [0.001, 10.0, 0.01]),
]


def _bisected_quantile(weights, means, stds, z):
    """F⁻¹(Φ(z)) by bisection on log F (lower half) and log(1 − F) (upper half) in a bracket wide enough for
    every component's quantile."""
    w, c, s = (torch.tensor(v, dtype=torch.float64) for v in (weights, means, stds))
    reach = float((c.abs() + s * z.abs().max()).max()) + 1
    lower = z <= 0
    sign = torch.where(lower, 1.0, -1.0).to(z)
    target = torch.special.log_ndtr(-z.abs())

    def above(y):
        scores = (y - sign * c[:, None]) / s[:, None]
        return torch.logsumexp(torch.special.log_ndtr(scores) + w.log()[:, None], dim=0) < target

    return sign * bisect(above, torch.full_like(z, -reach), torch.full_like(z, reach))


def test_mixture_quantile_agrees_with_bisection_to_float64_resolution():
    z = torch.cat([torch.linspace(-37.0, 37.0, 2001, dtype=torch.float64), normal_score_grid(4096, device="cpu")[0]])
    for weights, means, stds in MIXTURES:
        quantile = mixture_quantile(*(torch.tensor(v, dtype=torch.float64) for v in (weights, means, stds)), z)
        bisected = _bisected_quantile(weights, means, stds, z)
        error = ((quantile - bisected).abs() / (1 + bisected.abs())).max()
        assert error < 1e-13, (weights, float(error))


def test_solve_level_recovers_from_a_useless_start():
    """Halley's iteration from a start far outside the bracket does not settle; the bracketed Newton
    iteration then finds the root anyway."""
    weights, means, stds = (torch.tensor(v, dtype=torch.float64) for v in MIXTURES[1])
    z = normal_score_grid(257, device="cpu")[0]
    level, zeta = 0.5 * torch.special.erfc(z.abs() / math.sqrt(2)), -z.abs()
    sign = torch.where(z > 0, -1.0, 1.0).to(z)
    for start in (torch.full_like(z, 1e3), torch.full_like(z, -40.0), torch.full_like(z, math.nan)):
        root = sign * solve_level(level, zeta, weights, sign * means[:, None], stds, start=start)
        assert torch.allclose(root, _bisected_quantile(*MIXTURES[1], z), rtol=0, atol=1e-13)


def test_mixture_distribution_quantile_function_inverts_its_distribution_function():
    mixture = GaussianMixture(weights=[0.39, 0.22, 0.39], means=[-1.06, 0.0, 1.06], stds=[0.34, 0.57, 0.34])
    z = torch.linspace(-36.0, 36.0, 721, dtype=torch.float64)
    x = mixture.from_normal_score(z)
    assert torch.allclose(mixture.normal_score(x), z, rtol=1e-12, atol=1e-12)
    beyond = torch.tensor([-38.0, 38.0], dtype=torch.float64)  # Φ(z) subnormal: the bisection fallback
    assert torch.allclose(mixture.normal_score(mixture.from_normal_score(beyond)), beyond, rtol=1e-9)


def test_default_quantile_bisection_widens_its_bracket_to_hold_the_root():
    """The base class's bisection (third-party laws; Gaussian mixtures beyond |z| = 37) starts from ±60 standard
    deviations; for this mixture the quantiles at |z| = 36.9 lie ~368 from the mean, beyond 60 x 6.02."""
    weights, means, stds = MIXTURES[3]
    mixture = GaussianMixture(weights=weights, means=means, stds=stds)
    z = torch.tensor([-36.9, -20.0, 0.0, 20.0, 36.9], dtype=torch.float64)
    bisected = Distribution.from_normal_score(mixture, z)[:, 0]
    assert torch.allclose(bisected, _bisected_quantile(weights, means, stds, z), rtol=1e-13, atol=0)
    assert float(bisected.abs().max()) > 60 * float(mixture.covariance()[0, 0].sqrt())
