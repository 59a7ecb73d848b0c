"""Worked examples of the README's plugin guide: one plugin of every role, each checked with the role's
conformance helper and used in a scenario through the same hooks a third-party package implements.

* ``Triangular`` — a Distribution (a perturbed reverse start of one's own);
* ``GaussianInterpolation`` — a ForwardProcess with a closed-form marginal and a conditional training target;
* ``Damped`` — an Estimator ν̂ = (1 − ε)ν, whose residual is known exactly: L(t) = ε² T_tṠ_t;
* ``Heun`` — a Solver (second order), with its order measured;
* ``MeanPosition`` — an Observer with declared inputs, a summary column and a figure.
"""

import math

import numpy as np
import pytest
import torch
import yaml

from conftest import scenario_dict
from stochthermo import (
    Column,
    Distribution,
    Estimator,
    ForwardProcess,
    Observer,
    ScenarioError,
    Solver,
    Variable,
    hookimpl,
    parse_scenario,
    simulate,
)
from stochthermo.engine._registry import Registry
from stochthermo.present._summary import format_summary
from stochthermo.testing import (
    check_distribution,
    check_estimator,
    check_observer,
    check_process,
    check_solver,
    linear_test_equation,
)
from stochthermo_plugins.distributions import Gaussian


class Triangular(Distribution):
    """Symmetric triangular law on [−width, width] (1-D): density (w − |x|)/w²."""

    name = "triangular"

    def __init__(self, width: float = 1.5):
        if width <= 0:
            raise ScenarioError(f"must be > 0, got {width}", key="width")
        self.width = torch.tensor(width, dtype=torch.float64)

    @property
    def dim(self):
        return 1

    def sample(self, n, generator):
        u = torch.rand(n, 2, generator=generator, device=generator.device, dtype=self.width.dtype)
        return self.width.to(u.device) * (u.sum(1, keepdim=True) - 1)

    def log_prob(self, x):
        w = self.width
        return torch.log((w - x[:, 0].abs()).clamp(min=0)) - 2 * torch.log(w)

    def mean(self):
        return torch.zeros(1, dtype=self.width.dtype, device=self.width.device)

    def covariance(self):
        return (self.width**2 / 6).reshape(1, 1)

    def tail_precisions(self):
        return None  # bounded support: the chi-square against a Gaussian is finite

    def log_cdf(self, x):
        w, y = self.width, x[:, 0].clamp(-self.width, self.width)
        return torch.where(y < 0, 2 * torch.log(w + y) - math.log(2) - 2 * torch.log(w),
                           torch.log1p(-((w - y) ** 2) / (2 * w**2)))

    def log_sf(self, x):
        return self.log_cdf(-x)

    def from_normal_score(self, z):
        w = self.width.to(z)
        lower = -w + w * torch.sqrt(2 * torch.special.ndtr(z))
        upper = w - w * torch.sqrt(2 * torch.special.ndtr(-z))
        return torch.where(z <= 0, lower, upper)[:, None]


class GaussianInterpolation(ForwardProcess):
    r"""x_t = (1 − s) y + s z with y ~ N(μ, c²) (1-D data), z ~ N(0, 1), s = t/τ. P_t = N((1 − s)μ, V),
    V = (1 − s)²c² + s², and ν_t(x) = [−μ + (s − (1 − s)c²)(x − (1 − s)μ)/V]/τ (the conditional mean of
    (z − y)/τ given x). No temperature. It declares the conditional-target capability by implementing it."""

    name = "gaussian_interpolation"

    def __init__(self, *, data, prior, tau):
        super().__init__(data=data, prior=prior, tau=tau)
        if data.dim != 1:
            raise ScenarioError("this example process is one-dimensional", key="data")
        self.mu, self.c2 = float(data.mean()[0]), float(data.covariance()[0, 0])

    @property
    def conservative(self):
        return True

    def _moments(self, t):
        s = t / self.tau
        return (1 - s) * self.mu, (1 - s) ** 2 * self.c2 + s**2, s

    def velocity(self, t, x):
        mean, variance, s = self._moments(t)
        return (-self.mu + (s - (1 - s) * self.c2) * (x - mean) / variance) / self.tau

    def temperature(self, t):
        return torch.full_like(t, math.nan)

    def marginal(self, t):
        mean, variance, _ = self._moments(t)
        return Gaussian(mean, math.sqrt(variance))

    def end_distribution(self):
        return self.marginal(self.tau)

    # capability ConditionalTarget (stochthermo.capabilities)
    def conditional_target_problem(self):
        return None

    def conditional_target_sampler(self, batch, *, device, dtype):
        data = self.data.to(device, dtype)

        def sample(generator):
            y = data.sample(batch, generator)
            z = torch.randn(y.shape, generator=generator, device=device, dtype=dtype)
            t = self.tau * torch.rand(batch, generator=generator, device=device, dtype=dtype)
            s = (t / self.tau)[:, None]
            return t, (1 - s) * y + s * z, (z - y) / self.tau

        return sample


class Damped(Estimator):
    """ν̂ = (1 − damping)·ν: a deliberately mis-specified velocity with a known residual."""

    name = "damped"

    def __init__(self, *, process, damping: float = 0.1):
        super().__init__(process=process)
        if not 0 <= damping < 1:
            raise ScenarioError(f"must be in [0, 1), got {damping}", key="damping")
        self.damping = damping

    def velocity(self, t, x):
        return (1 - self.damping) * self.process.velocity(t, x)


class Heun(Solver):
    """Heun's method (explicit trapezoid), ``steps_per_save`` steps between saved times; second order."""

    name = "heun"

    def __init__(self, steps_per_save: int = 1):
        if steps_per_save < 1:
            raise ScenarioError(f"must be >= 1, got {steps_per_save}", key="steps_per_save")
        self.steps_per_save = steps_per_save

    def solve(self, equation, x0, save_times, *, generator=None):
        grid = save_times.tolist()
        positions = [x0]
        x = x0
        for a, b in zip(grid[:-1], grid[1:], strict=True):
            h = (b - a) / self.steps_per_save
            for j in range(self.steps_per_save):
                t = a + j * h
                k1 = equation.velocity(t, x)
                k2 = equation.velocity(t + h, x + h * k1)
                x = x + 0.5 * h * (k1 + k2)
            positions.append(x)
        positions = torch.stack(positions)
        velocities = torch.stack([equation.velocity(t, p) for t, p in zip(grid, positions, strict=True)])
        return positions, velocities


class MeanPosition(Observer):
    """E[x] of the true reverse process over time, and its end value relative to the data mean; reads
    the response observer's ΔW_1 to report it beside (a declared input)."""

    name = "mean_position"
    consumes = {"response": ("wasserstein_1_change",)}

    def variables(self):
        return {
            "mean_position": Variable(("time",), "mean of the true reverse process", "1", "E[x_t]", "-"),
            "mean_error": Variable((), "generated mean minus the data mean", "1", "E_p[x] - E_q[x]", "-"),
            "largest_change": Variable((), "largest change of W_1", "1", "max |Delta W_1|", "(81)",
                                       description="largest |Delta W_1| over the perturbations"),
        }

    def observe(self, run, measured):
        means = run.true.expectation(run.true.positions[..., 0]).cpu().numpy()
        return {"mean_position": means, "mean_error": float(means[0] - float(run.process.data.mean()[0])),
                "largest_change": float(np.abs(measured["response"]["wasserstein_1_change"]).max())}

    @classmethod
    def summary_columns(cls, ds):
        return [Column("mean err", "mean_error", 90)] if "mean_error" in ds else []

    @classmethod
    def figures(cls, ds):
        return {"mean_position": _mean_figure} if "mean_position" in ds else {}


def _mean_figure(ds):
    from stochthermo.present._pyplot import label, pyplot

    fig, ax = pyplot().subplots(figsize=(4, 3))
    for protocol in ds.protocol.values:
        ax.plot(ds.time, ds.mean_position.sel(protocol=protocol).mean("seed"), label=str(protocol))
    ax.set_xlabel("t")
    ax.set_ylabel(label(ds.mean_position))
    ax.legend()
    return fig


class GuidePlugin:
    """What a package exposes through the ``stochthermo.plugins`` entry point (here passed directly)."""

    @hookimpl
    def stochthermo_register_distributions(self):
        return [Triangular]

    @hookimpl
    def stochthermo_register_processes(self):
        return [GaussianInterpolation]

    @hookimpl
    def stochthermo_register_estimators(self):
        return [Damped]

    @hookimpl
    def stochthermo_register_solvers(self):
        return [Heun]

    @hookimpl
    def stochthermo_register_observers(self):
        return [MeanPosition]


@pytest.fixture(scope="module")
def registry():
    registry = Registry(entry_points=False, extra={"guide": GuidePlugin()})
    assert not registry.failures and registry.plugins["guide"].provides == {
        "distribution": ["triangular"], "process": ["gaussian_interpolation"], "estimator": ["damped"],
        "observer": ["mean_position"], "solver": ["heun"]}
    return registry


def test_distribution_example():
    check_distribution(Triangular(1.5))


def test_process_example():
    check_process(GaussianInterpolation(data=Gaussian(0.5, 0.4), prior=Gaussian(0.0, 1.0), tau=1.0))


def test_solver_example_is_second_order():
    check_solver(Heun(8), atol=1e-5)
    equation, x0 = linear_test_equation(), torch.ones(1, 1, dtype=torch.float64)
    times = torch.tensor([1.0, 0.0], dtype=torch.float64)
    errors = [float((Heun(n).solve(equation, x0, times)[0][-1] - math.exp(0.7)).abs()) for n in (8, 16)]
    assert errors[0] / errors[1] == pytest.approx(4, rel=0.05)


def test_examples_in_a_scenario(registry):
    spec = scenario_dict(
        data={"name": "gaussian", "mean": 0.5, "std": 0.4}, time_steps=32, particles=1024,
        perturbations={"tri": {"name": "triangular", "width": 1.5}},
        protocols={"interp": {"process": "gaussian_interpolation", "solver": {"name": "heun", "steps_per_save": 4}},
                   "damped": {"process": {"name": "scheduled", "schedule": "cond_ot"},
                              "estimator": {"name": "damped", "damping": 0.1}}},
        observers=["thermodynamics", "response", "bounds", "estimation", "mean_position"])
    scenario = parse_scenario(yaml.safe_dump(spec), registry=registry)
    check_estimator(scenario.protocols["damped"].estimator)
    check_observer(scenario, "mean_position")
    ds = simulate(scenario, device="cpu")
    # the interpolation generates the data law from P_τ: mean 0.5 and η = c_1 (straight lines in 1-D)
    assert float(ds.mean_error.sel(protocol="interp", seed=0)) == pytest.approx(0.0, abs=1e-6)
    # the damped estimator's residual is known exactly: L(t) = ε² E|ν|² = ε² T Ṡ over P_t
    residual = ds.estimation_residual_rate.sel(protocol="damped", seed=0)
    np.testing.assert_allclose(residual, 0.01 * ds.dissipation_rate.sel(protocol="damped", seed=0), rtol=1e-9)
    assert (ds.holds_imperfect_estimation.sel(protocol="damped", seed=0) == 1).all()
    assert "mean err" in format_summary(ds, registry).splitlines()[0]
