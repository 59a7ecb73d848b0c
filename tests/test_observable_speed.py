"""The observable speed limit (docs/theory.md §10): v_r = |d<r>/dt| / sqrt(<|grad r|^2>) <= v_2 against closed forms
for Gaussian data on the W_2 geodesic, equality along the Kantorovich potential, and bad observables refused."""

import math

import numpy as np
import pytest
import torch

from conftest import run_dict, scenario_dict
from stochthermo.cli import main

MEAN, STD, TAU = 0.4, 0.7, 1.0
# the W_2 geodesic from N(MEAN, STD²) to N(0, 1): mean a(t) = (1 - t/τ) MEAN, std S(t) = (1 - t/τ) STD + t/τ
A_DOT, S_DOT = -MEAN / TAU, (1 - STD) / TAU
T_STAR = 0.5


def _a(t):
    return (1 - t / TAU) * MEAN


def _s(t):
    return (1 - t / TAU) * STD + t / TAU


def kantorovich_potential(x):
    """φ at t* with ∇φ = ν_{t*}(x) = ȧ + (Ṡ/S)(x − a): the observable whose speed is v_2 at t*."""
    a, s = _a(T_STAR), _s(T_STAR)
    return A_DOT * x[:, 0] + 0.5 * S_DOT / s * (x[:, 0] - a) ** 2


def not_a_tensor(x):
    return 1.0


def _run(observables, **changes):
    spec = scenario_dict(time_steps=32, particles=2048, data={"name": "gaussian", "mean": MEAN, "std": STD},
                         protocols={"ot": {"process": "optimal_transport"}},
                         observers=["thermodynamics", {"name": "observable_speed", "observables": observables}],
                         **changes)
    return run_dict(spec)


def test_closed_forms_on_the_gaussian_geodesic():
    """coordinate: v_r = |ȧ|; |x|²: |a ȧ + S Ṡ| / sqrt(a² + S²); v_2² = ȧ² + Ṡ² (constant on the geodesic); the
    1-D quantile ensembles make these exact to the quadrature's error (the ensemble's moments to ~1e-9)."""
    ds = _run(["coordinate:0", "square_norm"]).isel(seed=0, protocol=0)
    times = ds.time.values
    a, s = _a(times), _s(times)
    np.testing.assert_allclose(ds.observable_speed.sel(observable="coordinate:0"), abs(A_DOT), rtol=1e-7)
    np.testing.assert_allclose(ds.observable_speed.sel(observable="square_norm"),
                               abs(a * A_DOT + s * S_DOT) / np.sqrt(a**2 + s**2), rtol=1e-7)
    np.testing.assert_allclose(ds.observable_mean.sel(observable="square_norm"), a**2 + s**2, rtol=1e-7)
    assert (ds.holds_observable_speed == 1).all() and (ds.holds_observable_cost == 1).all()
    assert float(ds.observable_cost.sel(observable="coordinate:0")) == pytest.approx(MEAN**2 / TAU, rel=1e-7)


def test_the_kantorovich_potential_reaches_the_wasserstein_speed():
    ds = _run(["test_observable_speed:kantorovich_potential", "coordinate:0"]).isel(seed=0, protocol=0)
    at = ds.sel(time=T_STAR)
    v_2 = math.sqrt(float(at.wasserstein_speed_squared))
    assert v_2 == pytest.approx(math.hypot(A_DOT, S_DOT), rel=1e-7)
    assert float(at.observable_speed.sel(observable="test_observable_speed:kantorovich_potential")) == pytest.approx(
        v_2, rel=1e-9)
    assert float(at.observable_speed.sel(observable="coordinate:0")) < 0.99 * v_2  # a cruder one stays below
    assert float(at.slack_observable_speed.min()) > -1e-9 * v_2


@pytest.mark.parametrize("observable, message", [
    ("coordinate:3", "observables[0]: coordinate 3 of 1-D data"),
    ("projection:1,2", "observables[0]: a projection of 1-D data needs 1 numbers"),
    ("coordinate:x", "expected coordinate:K"),
    ("test_observable_speed:not_a_tensor", "an observable must return a finite tensor (n,)"),
    ("test_observable_speed:missing", "module 'test_observable_speed' has no 'missing'"),
])
def test_bad_observables_are_one_line(observable, message, write_scenario, tmp_path, capsys):
    spec = scenario_dict(time_steps=8, particles=64,
                         observers=["thermodynamics", {"name": "observable_speed", "observables": [observable]}])
    assert main(["run", str(write_scenario(spec)), "-o", str(tmp_path / "o.nc")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_an_image_brightness_is_an_observable():
    """The mean over coordinates of 2-D data (an image's brightness) under the cosine schedule: its speed stays
    below v_2 at every time, and torch gives the gradient 1/d of every coordinate."""
    spec = scenario_dict(time_steps=16, particles=512,
                         data={"name": "gaussian_mixture", "weights": [0.5, 0.5], "means": [[-1.0, 0.0], [1.0, 0.5]],
                               "stds": [0.4, 0.4]}, prior={"name": "gaussian", "mean": 0.0, "std": 1.0, "dim": 2},
                         perturbations={"p": {"name": "gaussian", "mean": 0.5, "std": 1.0, "dim": 2}},
                         observers=["thermodynamics", {"name": "observable_speed", "observables": ["mean"]}])
    ds = run_dict(spec)
    assert (ds.holds_observable_speed == 1).all()
    assert torch.isfinite(torch.from_numpy(ds.observable_speed.values)).all()
