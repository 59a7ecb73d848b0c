"""Learned estimators (issue: neural flow and score matching, minibatch-OT couplings, Eq. (100)): a short
seeded training lowers loss and residual, checkpoints round-trip, resume and refuse mismatches, the
log-density ODE against a Gaussian pushed by a linear flow, the exact estimator through the estimation
observer, and Eq. (100) as a property over random mixtures and known velocity errors."""

import copy
import math
import types

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_properties import gaussian_perturbations, mixtures

from conftest import run_dict, scenario_dict
from stochthermo import Estimator, ScenarioError, hookimpl
from stochthermo.engine._build import parse_scenario
from stochthermo.engine._registry import Registry
from stochthermo.numerics._log_density import autograd_velocity_and_divergence, log_density_flow
from stochthermo.numerics._training import TrainingKey, TrainingSettings, train

CPU = torch.device("cpu")
GMM = scenario_dict()["data"]


def _neural(process_spec, tmp_path, **settings):
    spec = scenario_dict(protocols={"p": {"process": process_spec,
                                          "estimator": {"name": "neural", "cache": str(tmp_path), **settings}}})
    return parse_scenario(yaml.safe_dump(spec)).protocols["p"]


def _residual(estimator, process, n=2048):
    """E|ν − ν̂|² over P_t samples at a few times."""
    generator = torch.Generator().manual_seed(3)
    total = 0.0
    for t in (0.1, 0.4, 0.7, 0.95):
        x = process.sample_marginal(t, n, generator)
        total += float(((estimator.velocity(t, x) - process.velocity(t, x)) ** 2).sum(1).mean())
    return total / 4


@pytest.mark.parametrize("process_spec, objective", [
    ({"name": "scheduled", "schedule": "cond_ot"}, {}),
    ("optimal_transport", {}),
    ({"name": "scheduled", "schedule": "vp_linear"}, {"objective": "score_matching"}),
    ({"name": "scheduled", "schedule": {"name": "ve", "sigma_max": 3.0}},
     {"objective": "score_matching", "weighting": "velocity"}),
])
def test_short_training_lowers_loss_and_residual(tmp_path, process_spec, objective):
    short = dict(steps=300, batch=256, width=32, depth=2, warmup=20, record_every=20, ema=None, **objective)
    untrained = _neural(process_spec, tmp_path / "a", **{**short, "steps": 1, "warmup": 0, "record_every": 1})
    trained = _neural(process_spec, tmp_path / "b", **short)
    process = trained.process
    before, after = _residual(untrained.estimator, process), _residual(trained.estimator, process)
    losses = trained.estimator.result.losses
    assert after < 0.5 * before
    assert losses[-3:].mean() < 0.9 * losses[:2].mean()


def test_checkpoint_round_trip_and_mismatch(tmp_path):
    settings = dict(steps=40, batch=128, width=16, depth=1, warmup=5, record_every=10)
    first = _neural({"name": "scheduled", "schedule": "cosine"}, tmp_path, **settings).estimator
    x = torch.linspace(-2, 2, 50, dtype=torch.float64)[:, None]
    v = first.velocity(0.3, x)
    assert not first.result.reused and len(list(tmp_path.glob("*.pt"))) == 1
    again = _neural({"name": "scheduled", "schedule": "cosine"}, tmp_path, **settings).estimator
    assert torch.equal(again.velocity(0.3, x), v) and again.result.reused
    path = next(tmp_path.glob("*.pt"))
    other = _neural({"name": "scheduled", "schedule": "cond_ot"}, tmp_path, **settings, checkpoint=str(path))
    with pytest.raises(ScenarioError, match="trained on a different process than this scenario asks for"):
        other.estimator.velocity(0.3, x)
    wider = _neural({"name": "scheduled", "schedule": "cosine"}, tmp_path, **{**settings, "width": 32},
                    checkpoint=str(path))
    with pytest.raises(ScenarioError, match="different model"):
        wider.estimator.velocity(0.3, x)


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    """Kill the loop after 45 of 60 steps (checkpoints every 20): the resumed run continues from step 40 and
    ends with exactly the weights and loss curve of an uninterrupted run."""
    settings = TrainingSettings(steps=60, batch=32, learning_rate=1e-2, weight_decay=0.0, warmup=5, ema=0.9, seed=1,
                                record_every=10, checkpoint_every=20)
    key = TrainingKey("d", "p", "m", "t")

    def model():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model()

        def forward(self, t, x):
            return self.net(torch.cat([t[:, None], x], 1))

    calls = {"n": 0}

    def batch(generator, fail_at=None):
        calls["n"] += 1
        if fail_at is not None and calls["n"] > fail_at:
            raise KeyboardInterrupt
        t = torch.rand(32, generator=generator, dtype=torch.float64)
        x = torch.randn(32, 1, generator=generator, dtype=torch.float64)
        return t, x, torch.sin(3 * x) * t[:, None]

    reference = train(Net(), batch, settings, key=key, path=tmp_path / "ref.pt", device=CPU, progress=False)
    calls["n"] = 0
    with pytest.raises(KeyboardInterrupt):
        train(Net(), lambda g: batch(g, fail_at=45), settings, key=key, path=tmp_path / "cut.pt", device=CPU,
              progress=False)
    assert torch.load(tmp_path / "cut.pt", weights_only=True)["step"] == 40
    resumed = train(Net(), batch, settings, key=key, path=tmp_path / "cut.pt", device=CPU, progress=False)
    for a, b in zip(reference.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(reference.losses, resumed.losses)


def test_bad_training_settings_are_refused(tmp_path):
    with pytest.raises(ScenarioError, match="warmup: must be in"):
        _neural("optimal_transport", tmp_path, steps=10, warmup=10)
    spec = scenario_dict(protocols={"p": {"process": {"name": "rotational"}, "estimator": "neural"}})
    spec["data"] = {"name": "gaussian_mixture", "weights": [1.0], "means": [[0.0, 0.0]],
                    "covariances": [[[1.0, 0.5], [0.5, 1.0]]]}
    spec["prior"] = {"name": "gaussian", "mean": [0.0, 0.0]}
    spec["perturbations"] = {"p": {"name": "gaussian", "mean": [0.0, 0.0], "std": 0.9}}
    with pytest.raises(ScenarioError, match="isotropic mixture components or a point cloud"):
        parse_scenario(yaml.safe_dump(spec))
    spec["protocols"]["p"]["estimator"] = {"name": "neural", "objective": "score_matching"}
    parse_scenario(yaml.safe_dump(spec))  # a score model needs no conditional velocity per component
    with pytest.raises(ScenarioError, match=r"objective: score matching needs a finite force .* t = 1 "):
        _neural({"name": "scheduled", "schedule": "cosine"}, tmp_path, objective="score_matching")
    with pytest.raises(ScenarioError, match="score matching needs Gaussian conditional laws"):
        _neural("optimal_transport", tmp_path, objective="score_matching")
    with pytest.raises(ScenarioError, match="weighting: must be one of noise, velocity"):
        _neural({"name": "scheduled", "schedule": "ve"}, tmp_path, objective="score_matching", weighting="snr")
    with pytest.raises(ScenarioError, match="precision: must be one of float32, float64"):
        _neural("optimal_transport", tmp_path, precision="float16")
    with pytest.raises(ScenarioError, match="coupling_batch: process .scheduled. does not couple minibatches"):
        _neural({"name": "scheduled", "schedule": "ve"}, tmp_path, coupling_batch=4096)


class OracleNoise(torch.nn.Module):
    """ε̄_t(x) = −√v_t ∇ln P_t(x) for data N(0, c I) under a linear process: P_t = N(0, (a_t²c + v_t) I)."""

    def __init__(self, process, c):
        super().__init__()
        self.process, self.c = process, c

    def forward(self, t, x):
        mom = [self.process.moments(float(ti)) for ti in t]
        variance = torch.stack([m.variance for m in mom])[:, None]
        total = torch.stack([m.scale**2 for m in mom])[:, None] * self.c + variance
        return variance.sqrt() * x / total


@pytest.mark.parametrize("process_spec, dim", [({"name": "scheduled", "schedule": "vp_linear"}, 1),
                                               ({"name": "scheduled", "schedule": "ve"}, 1),
                                               ({"name": "rotational", "g": 3.0}, 2)])
def test_score_parameterisation_with_the_exact_score_gives_the_exact_velocity(process_spec, dim):
    """ν̂ = (H + GJ)x + (T/√v) ε̄ with the true noise ε̄ is ν (tabulated coefficients: interpolation error only),
    and for a scheduled process the velocity-weighted target f + Tε/σ is the flow-matching target ṁy + σ̇ε."""
    from stochthermo_plugins.estimators.neural import TABLE_INTERVALS
    from stochthermo_plugins.estimators.score_model import ScoreVelocity, score_coefficients, score_row

    c = 0.49
    spec = scenario_dict(data={"name": "gaussian", "mean": [0.0] * dim, "std": 0.7},
                         prior={"name": "gaussian", "mean": [0.0] * dim},
                         perturbations={"p": {"name": "gaussian", "mean": [0.0] * dim, "std": 0.9}},
                         protocols={"p": {"process": process_spec}})
    process = parse_scenario(yaml.safe_dump(spec)).protocols["p"].process
    model = ScoreVelocity(OracleNoise(process, c), score_coefficients(process, TABLE_INTERVALS), tau=process.tau,
                          weighting="velocity")
    x = torch.randn(64, dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1.3
    for t in (0.013, 0.3, 0.77, 1.0):
        exact, times = process.velocity(t, x), torch.full((64,), t, dtype=torch.float64)
        row = score_row(process, t, first=process.tau / TABLE_INTERVALS).expand(64, -1)
        torch.testing.assert_close(model.velocity(times, x, row), exact, rtol=1e-12, atol=1e-12)
        # the training table, linearly interpolated: O((Δt/t)²) where T/√v ~ t^(-1/2) (VP near t = 0)
        torch.testing.assert_close(model.velocity(times, x), exact, rtol=2e-5, atol=1e-8)
    if process_spec["name"] == "scheduled":
        schedule = process.schedule
        for t in (0.25, 0.5):  # table nodes: no interpolation
            row = model.coefficients(torch.tensor([t], dtype=torch.float64))[0]
            s = torch.tensor(t, dtype=torch.float64)
            y, eps = torch.tensor(0.8, dtype=torch.float64), torch.tensor(-1.1, dtype=torch.float64)
            x_t = schedule.m(s) * y + schedule.sigma(s) * eps
            torch.testing.assert_close(row[0] * x_t + row[2] * eps, schedule.dm(s) * y + schedule.dsigma(s) * eps,
                                       rtol=1e-12, atol=0)


# ---- the log-density ODE ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dim, probes", [(2, 1), (6, 16)])
def test_log_density_ode_against_a_gaussian_pushed_by_a_linear_flow(dim, probes):
    """ν = A x pushes N(0, I) to N(0, e^{At} e^{Aᵀt}); log p_t(x_t) = log p_0(x_0) − t tr A exactly. In 6-D the
    divergence is Hutchinson's (unbiased, here 16 probes): compare within its standard error."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(dim, dim, generator=generator, dtype=torch.float64) * 0.5
    x0 = torch.randn(200, dim, generator=generator, dtype=torch.float64)
    log_p0 = -0.5 * (x0**2).sum(1) - 0.5 * dim * math.log(2 * math.pi)
    times = torch.linspace(0, 1, 33, dtype=torch.float64)

    def velocity(t, x):
        return x @ a.T

    def field(t, x):
        return autograd_velocity_and_divergence(velocity, t, x, probes=probes, generator=generator)

    positions, log_p = log_density_flow(field, x0, log_p0, times)
    flow = torch.linalg.matrix_exp(a)
    np.testing.assert_allclose(positions[-1], x0 @ flow.T, rtol=0, atol=1e-6)  # RK4, 32 steps
    covariance = flow @ flow.T
    exact = torch.distributions.MultivariateNormal(torch.zeros(dim, dtype=torch.float64), covariance)
    error = (log_p[-1] - exact.log_prob(positions[-1])).abs()
    if dim <= 3:
        assert float(error.max()) < 1e-6
    else:  # Hutchinson noise: per-particle, averaging out over the particles
        assert float((log_p[-1] - exact.log_prob(positions[-1])).mean().abs()) < 4 * float(error.std()) / math.sqrt(200)


# ---- the estimation observer -------------------------------------------------------------------------------
def test_exact_estimator_has_zero_residual_and_constant_divergence():
    spec = scenario_dict(observers=["thermodynamics", "response", "bounds", "estimation"],
                         protocols={"cosine": {"process": {"name": "scheduled", "schedule": "cosine"}},
                                    "cond_ot": {"process": {"name": "scheduled", "schedule": "cond_ot"}},
                                    "ot": {"process": "optimal_transport"}},
                         perturbations={"shifted": {"name": "gaussian", "mean": 1.0, "std": 1.0},
                                        "narrow": {"name": "gaussian", "mean": 0.0, "std": 0.8}})
    spec["particles"] = 512  # the quantile quadrature of D_t converges exponentially; RK4 needs the 64 steps
    ds = run_dict(spec).isel(seed=0)
    assert float(np.abs(ds.estimation_residual).max()) <= 1e-6 * float(ds.kinetic_cost.min())
    np.testing.assert_allclose(ds.estimated_divergence, ds.chi_square.broadcast_like(ds.estimated_divergence),
                               rtol=1e-6)
    assert (ds.holds_imperfect_estimation == 1).all()
    np.testing.assert_allclose(ds.heldout_log_likelihood, ds.heldout_log_likelihood[0], rtol=1e-6)


def test_exact_estimator_from_the_prior_keeps_the_divergence_against_the_true_path():
    """reverse_start: prior with P_τ ≠ prior (the rotational force): the reference law is the prior carried by the exact
    flow, whose density comes from the exact log-density ODE; the exact estimator keeps D_t = D_0 and L = 0."""
    spec = scenario_dict(data={"name": "gaussian_mixture", "weights": [0.4, 0.6], "means": [[1.0, 0.0], [-0.5, 0.8]],
                               "stds": [0.5, 0.4]},
                         prior={"name": "gaussian", "mean": [0.0, 0.0]}, time_steps=24, particles=128,
                         observers=["thermodynamics", "response", "bounds", {"name": "estimation", "heldout": 64}],
                         protocols={"r": {"process": {"name": "rotational"}}},
                         perturbations={"narrow": {"name": "gaussian", "mean": [0.0, 0.0], "std": 0.9}})
    spec["reverse_start"] = "prior"
    ds = run_dict(spec).isel(seed=0, protocol=0, perturbation=0)
    assert float(ds.estimation_residual) == 0
    # in 2-D the ensembles are random draws: D_t is a Monte Carlo average, constant along the flow (its value
    # at the start is the draws' estimate of D_0, not the closed form)
    divergence = ds.estimated_divergence.values
    np.testing.assert_allclose(divergence, divergence[-1], rtol=1e-5)
    assert (ds.holds_imperfect_estimation == 1).all()
    # the forward costs (over P_t) differ from the true path's own kinetic energy, which bounds the loss
    assert abs(float(ds.dissipation) / float(ds.reference_dissipation) - 1) > 1e-3


class Offset(Estimator):
    """ν̂ = ν + c: a known, constant velocity error, so L = |c|² exactly."""

    name = "offset"

    def __init__(self, *, process, offset: list[float]):
        super().__init__(process=process)
        self.offset = torch.tensor(offset, dtype=torch.float64)

    def velocity(self, t, x):
        return self.process.velocity(t, x) + self.offset.to(x)

    def velocity_and_divergence(self, t, x, *, probes=16, generator=None):
        velocity, divergence = self.process.velocity_and_divergence(t, x, probes=probes, generator=generator)
        return velocity + self.offset.to(x), divergence


OFFSET_REGISTRY = Registry(entry_points=False, extra={"offset": types.SimpleNamespace(
    stochthermo_register_estimators=hookimpl(lambda: [Offset]))})


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mixtures(1), perturbation=gaussian_perturbations(1), offset=st.floats(-0.5, 0.5),
       schedule=st.sampled_from(["cosine", "cond_ot"]))
def test_imperfect_estimation_bound_over_known_errors(data, perturbation, offset, schedule):
    spec = scenario_dict(data=data, time_steps=48, particles=256, perturbations={"p": perturbation},
                         observers=["thermodynamics", "response", "bounds", "estimation"],
                         protocols={"p": {"process": {"name": "scheduled", "schedule": schedule},
                                          "estimator": {"name": "offset", "offset": [offset]}}})
    ds = run_dict(spec, registry=OFFSET_REGISTRY).isel(seed=0, protocol=0)
    assert math.isclose(float(ds.estimation_residual), offset**2, rel_tol=1e-9, abs_tol=1e-15)
    if np.isfinite(ds.chi_square).all():
        assert (ds.holds_imperfect_estimation == 1).all(), float(ds.slack_imperfect_estimation.min())
    assert (ds.holds_dissipation_rate == -1).all()  # (80) assumes exact estimation


def test_sample_based_transport_is_keyed_and_trains(tmp_path):
    """The process fingerprint realises a sample-based process's plan first, so its key is defined and stable."""
    spec = scenario_dict(data={"name": "moons", "size": 200, "noise": 0.1},
                         prior={"name": "gaussian", "mean": [0.0, 0.0]},
                         perturbations={"p": {"name": "gaussian", "mean": [0.0, 0.0], "std": 0.9}},
                         protocols={"p": {"process": "optimal_transport",
                                          "estimator": {"name": "neural", "steps": 20, "batch": 64, "warmup": 2,
                                                        "record_every": 5, "cache": str(tmp_path)}}})
    estimator = parse_scenario(yaml.safe_dump(spec)).protocols["p"].estimator
    # the key is defined before training and stable across builds of the same scenario...
    assert estimator._key() == parse_scenario(yaml.safe_dump(spec)).protocols["p"].estimator._key()
    # ...and tells another data sample (the plan is drawn from it) apart
    other = copy.deepcopy(spec)
    other["data"]["size"] = 201
    assert estimator._key() != parse_scenario(yaml.safe_dump(other)).protocols["p"].estimator._key()
    x = torch.zeros(3, 2, dtype=torch.float64)
    assert estimator.velocity(0.5, x).shape == (3, 2)
    losses = np.asarray(estimator.result.losses)
    assert len(losses) == 4 and np.isfinite(losses).all()  # recorded every 5 of 20 steps


def test_exponent_floats_are_numbers_in_scenarios_and_overrides(tmp_path):
    """YAML 1.2 floats: ``learning_rate: 5e-3`` (a string to PyYAML's YAML 1.1 resolver) and ``--set`` alike."""
    spec = scenario_dict(protocols={"p": {"process": "optimal_transport", "estimator": {
        "name": "neural", "learning_rate": "LR", "cache": str(tmp_path)}}})
    text = yaml.safe_dump(spec).replace("learning_rate: LR", "learning_rate: 5e-3")
    assert parse_scenario(text).protocols["p"].estimator.settings.learning_rate == 0.005
    overridden = parse_scenario(text, overrides=["protocols.p.estimator.learning_rate=1E-2"])
    assert overridden.protocols["p"].estimator.settings.learning_rate == 0.01
