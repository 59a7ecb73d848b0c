"""The exact 1-D flow map of Gaussian-mixture marginals (stochthermo.quantile_flow): it agrees with RK4 on the
process's own velocity to RK4's error, converges onto it as the step shrinks, keeps every particle's
cumulative probability to float64 resolution, and follows perturbed starts far in the tails."""

import torch

from stochthermo.integrate import rk4
from stochthermo.scenario import parse_scenario

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
