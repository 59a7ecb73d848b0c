"""Variance-exploding processes (issue 30 §2): Song's geometric VE and Karras's EDM noise levels as schedules
from the data (σ(0) = 0), their Gaussian closed forms (P_t, the affine flow map, v_2², W_2, D_0, ΔW_1, η),
EDM's sampler grid against diffusers' own sigmas, a diffusers EDM config read as the process, and bad input."""

import json
import math

import numpy as np
import pytest
import torch
from test_closed_forms import gaussian_w1

from conftest import run_dict, scenario_dict
from stochthermo import ScenarioError
from stochthermo.roles._schedule import schedule_problem
from stochthermo.testing import check_schedule
from stochthermo_plugins.schedules import Edm, GeometricVE

SCHEDULES = [("ve_geometric", {"sigma_min": 0.01, "sigma_max": 3.0}), ("edm", {"sigma_max": 3.0, "rho": 7.0}),
             ("edm", {"sigma_max": 80.0}), ("ve_geometric", {"sigma_max": 50.0})]


@pytest.mark.parametrize("name, parameters", SCHEDULES)
def test_gaussian_closed_forms(name, parameters):
    """Data N(μ, s²) under x_t = y + σ(t) z: P_t = N(μ, V), V = s² + σ², the flow is affine, v_2² = V̇²/4V,
    W_2(P_0, P_τ) = √V_τ − s; with the prior N(μ, V_τ) = P_τ, the exact reverse flow maps the perturbed start
    N(a, b²) to N(μ + k(a − μ), (kb)²), k = s/√V_τ, so D_0 and ΔW_1 (hence η) are closed forms."""
    mu, s, tau = 0.4, 0.5, 2.0
    schedule = {"name": name, **parameters}
    sched = Edm(**parameters) if name == "edm" else GeometricVE(**parameters)
    end_std = math.sqrt(s**2 + float(sched.sigma(torch.tensor(1.0, dtype=torch.float64))) ** 2)
    a, b = mu + 0.3 * end_std, 0.8 * end_std
    ds = run_dict(scenario_dict(
        data={"name": "gaussian", "mean": mu, "std": s}, prior={"name": "gaussian", "mean": mu, "std": end_std},
        tau=tau, time_steps=96, particles=4096,
        protocols={name: {"process": {"name": "scheduled", "schedule": schedule}}},
        perturbations={"p": {"name": "gaussian", "mean": a, "std": b}})).isel(protocol=0, seed=0, perturbation=0)
    st = torch.tensor(ds.time.values / tau)
    variance = s**2 + sched.sigma(st).numpy() ** 2
    speed = (sched.dsigma2(st).numpy() / tau) ** 2 / (4 * variance)
    np.testing.assert_allclose(ds.wasserstein_speed_squared.values, speed, rtol=1e-6, atol=1e-9 * speed.max())
    np.testing.assert_allclose(ds.temperature.values, sched.dsigma2(st).numpy() / (2 * tau), rtol=1e-12)
    assert math.isclose(float(ds.geodesic_cost), (end_std - s) ** 2 / tau, rel_tol=1e-6)
    delta, r = (a - mu) / end_std, b / end_std
    d0 = math.exp(delta**2 / (2 - r**2)) / (r * math.sqrt(2 - r**2)) - 1
    k = s / end_std
    change = gaussian_w1(mu, s, mu + k * (a - mu), k * b) - gaussian_w1(mu, end_std, a, b)
    assert math.isclose(float(ds.chi_square), d0, rel_tol=1e-10)
    assert math.isclose(float(ds.wasserstein_1_change), change, rel_tol=1e-6)
    assert math.isclose(float(ds.response), change**2 / (tau * d0), rel_tol=1e-6)  # η = ΔW_1²/(τ D_0), Eq. (81)


@pytest.mark.parametrize("name, parameters", SCHEDULES)
def test_schedules_pass_the_conformance_check(name, parameters):
    schedule = Edm(**parameters) if name == "edm" else GeometricVE(**parameters)
    check_schedule(schedule)
    assert schedule_problem(schedule) is None
    s = torch.linspace(0, 1, 11, dtype=torch.float64)
    assert torch.equal(schedule.m(s), torch.ones_like(s)) and float(schedule.sigma(s[:1])) == 0.0


def test_geometric_ve_is_songs_sde_variance():
    """σ² = σ_min²[(σ_max/σ_min)^{2s} − 1]: the variance of dx = sqrt(dσ_g²/ds) dW from the data, σ_g geometric."""
    schedule = GeometricVE(sigma_min=0.01, sigma_max=50.0)
    s = torch.linspace(0, 1, 101, dtype=torch.float64)
    geometric = 0.01 * (50.0 / 0.01) ** s
    torch.testing.assert_close(schedule.sigma(s) ** 2, geometric**2 - 0.01**2, rtol=1e-12, atol=1e-18)
    h = 1e-6
    numeric = (schedule.sigma(s[1:-1] + h) ** 2 - schedule.sigma(s[1:-1] - h) ** 2) / (2 * h)
    torch.testing.assert_close(schedule.dsigma2(s[1:-1]), numeric, rtol=1e-6, atol=0)


def test_edm_sampler_grid_is_diffusers_karras_sigmas():
    """EDM's N sampler levels (diffusers' EDMEulerScheduler, Karras sigmas) lie on the continuous σ = σ_max s^ρ
    at s equally spaced from 1 down to (σ_min/σ_max)^{1/ρ}."""
    diffusers = pytest.importorskip("diffusers")
    for sigma_min, sigma_max, rho, steps in ((0.002, 80.0, 7.0, 18), (0.02, 10.0, 3.0, 40)):
        scheduler = diffusers.EDMEulerScheduler(sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
        scheduler.set_timesteps(steps)
        theirs = scheduler.sigmas[:steps].double()  # the last is the appended 0
        schedule = Edm(sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
        ours = schedule.sigma(schedule.sampler_times(steps))
        torch.testing.assert_close(ours, theirs, rtol=2e-6, atol=0)  # diffusers keeps them in float32


def test_a_diffusers_edm_config_reads_as_the_edm_process(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    diffusers.EDMEulerScheduler(sigma_min=0.01, sigma_max=20.0, rho=5.0).save_config(tmp_path)
    schedule = Edm(path=tmp_path)
    assert (schedule.sigma_min, schedule.sigma_max, schedule.rho) == (0.01, 20.0, 5.0)
    ds = run_dict(scenario_dict(protocols={"edm": {"process": {"name": "scheduled", "schedule": {
        "name": "edm", "path": str(tmp_path)}}}}, time_steps=16, particles=256))
    assert np.isfinite(ds.kinetic_cost.values).all()


@pytest.mark.parametrize("parameters, message", [
    ({"sigma_min": 1.0, "sigma_max": 1.0}, "sigma_max: must be > sigma_min = 1"),
    ({"sigma_min": 0.5, "sigma_max": 0.1}, "sigma_max: must be > sigma_min = 0.5"),
    ({"rho": 0.0}, "rho: must be a finite number > 0"),
    ({"rho": -2.0}, "rho: must be a finite number > 0"),
    ({"rho": 0.3}, "rho: must be >= 0.5"),
    ({"sigma_min": float("nan")}, "sigma_min: must be a finite number > 0"),
])
def test_bad_noise_levels_are_refused_with_the_key(parameters, message):
    with pytest.raises(ScenarioError) as error:
        Edm(**parameters)
    assert message in f"{error.value.key}: {error.value}"
    if "rho" not in parameters:
        with pytest.raises(ScenarioError):
            GeometricVE(**parameters)


def test_a_config_that_is_not_edm_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "scheduler_config.json"
    path.write_text(json.dumps({"_class_name": "DDPMScheduler", "num_train_timesteps": 1000}))
    with pytest.raises(ScenarioError, match="scheduler_config.json: scheduler class 'DDPMScheduler' is not an EDM"):
        Edm(path=path)
    path.write_text(json.dumps({"_class_name": "EDMEulerScheduler", "sigma_schedule": "exponential"}))
    with pytest.raises(ScenarioError, match="sigma_schedule 'exponential' is not EDM's"):
        Edm(path=path)
    from stochthermo_plugins.schedules import Diffusers

    path.write_text(json.dumps({"_class_name": "EDMEulerScheduler", "sigma_min": 0.002}))
    with pytest.raises(ScenarioError, match=r"use the schedule \{name: edm"):
        Diffusers(path=path)
