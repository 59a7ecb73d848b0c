"""Property tests (hypothesis): the speed-accuracy relations of docs/theory.md §4 over random Gaussian
mixtures in 1-D and 2-D, every registered schedule, and random Gaussian perturbations."""

import functools
import math

import numpy as np
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_dict, scenario_dict
from stochthermo.engine._build import parse_scenario
from stochthermo.engine._registry import default_registry
from stochthermo.measures._ensemble import Ensemble, make_ensemble
from stochthermo.roles._equation import process_equation
from stochthermo.roles._trajectory import run_flows
from stochthermo_plugins.solvers import RungeKutta4

#: every built-in schedule; ornstein_uhlenbeck's end law N(., e^-2 s^2 + (1 - e^-2)/2) is narrower than N(0, 1),
#: so some perturbations have D_0 = ∞ against it: the loss relations then say nothing (n/a), never FAIL
SCHEDULES = default_registry().names("schedule")
PROPERTY = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: the relations of the loss, which say nothing (not applicable) where D_0 is infinite
LOSS_RELATIONS = ["dissipation_rate", "wasserstein_speed", "response", "dissipation", "kinetic_cost"]
RELATIONS = ["dissipation_rate", "wasserstein_speed", "response", "dissipation", "kinetic_cost", "path_length",
             "geodesic"]


@st.composite
def mixtures(draw, dim: int):
    k = draw(st.integers(1, 4))
    raw = [draw(st.floats(0.2, 1.0).map(lambda v: round(v, 3))) for _ in range(k)]
    weights = [w / sum(raw) for w in raw]
    weights[-1] = 1 - sum(weights[:-1])
    coordinate = st.floats(-2.0, 2.0).map(lambda v: round(v, 3))
    means = [draw(coordinate) if dim == 1 else [draw(coordinate) for _ in range(dim)] for _ in range(k)]
    stds = [draw(st.floats(0.1, 1.0).map(lambda v: round(v, 3))) for _ in range(k)]
    return {"name": "gaussian_mixture", "weights": weights, "means": means, "stds": stds}


@st.composite
def gaussian_perturbations(draw, dim: int, max_std: float = 1.3):
    shift = [draw(st.floats(-1.5, 1.5)) for _ in range(dim)]
    if max(abs(v) for v in shift) < 0.1:  # keep D_0 away from 0, where v_loss is 0/0 up to quadrature
        shift[0] = 0.1
    return {"name": "gaussian", "mean": shift[0] if dim == 1 else shift, "std": draw(st.floats(0.6, max_std))}


def _assert_all_relations_hold(ds):
    """Every relation holds; η ≤ c_1, where η is a sampled measurement (d ≥ 2), holds or is unresolved (its
    interval straddles c_1, docs/theory.md §4.3) and then holds for the point η."""
    infinite = not np.isfinite(ds.chi_square.values).all()
    for name in RELATIONS:
        status = ds[f"holds_{name}"].values
        if infinite and name in LOSS_RELATIONS:  # D_0 = ∞ (a perturbation heavier-tailed than P_τ): n/a, never FAIL
            assert (status == -1).all(), name
            continue
        if name == "response" and (status == 2).any():
            # where both sides vanish (cosine on q = N(0, 1) is static) they are rounding-level squares:
            # |ΔW_1| ≲ 64 ε W_1, so η = ΔW_1²/(τ D_0) ≲ (64 ε W_1)²/(τ D_0)
            floor = (64 * np.finfo(float).eps * float(ds.wasserstein_1.max())) ** 2 / (
                float(ds.attrs["tau"]) * float(np.min(ds.chi_square.values)))
            assert (ds.slack_response.values[status == 2]
                    >= -1e-6 * np.abs(ds.loss_cost.values[status == 2]) - floor).all()
            status = np.where(status == 2, 1, status)
        assert (status == 1).all(), (name, ds[f"slack_{name}"].values.min())


@PROPERTY
@given(data=mixtures(1), perturbation=gaussian_perturbations(1), schedule=st.sampled_from(SCHEDULES))
def test_relations_hold_1d(data, perturbation, schedule):
    ds = run_dict(scenario_dict(data=data, time_steps=128 if schedule == "ve" else 64, particles=1024,
                                protocols={schedule: {"process": {"name": "scheduled", "schedule": schedule}}},
                                perturbations={"p": perturbation}))
    _assert_all_relations_hold(ds)
    assert (ds.temperature.values[..., :-1] >= 0).all()


@PROPERTY
@given(data=mixtures(2), perturbation=gaussian_perturbations(2), schedule=st.sampled_from(SCHEDULES))
def test_relations_hold_2d(data, perturbation, schedule):
    """In 2-D W_1 comes from exact plans between particle clouds (its finite-sample bias is common to both
    sides of ΔW_1 and of the rate); the bounds hold with room to spare for these laws. A single isotropic
    Gaussian under a schedule is scaled along a W_2 geodesic, so (92) holds with equality and only the
    time quadrature separates its sides: 32 steps keep that error (4th order; 1.2e-6 relative at 16 steps,
    7e-8 at 32) below the relations' 1e-6 tolerance."""
    ds = run_dict(scenario_dict(data=data, prior={"name": "gaussian", "mean": [0.0, 0.0]},
                                time_steps=64 if schedule == "ve" else 32,
                                particles=300,
                                protocols={schedule: {"process": {"name": "scheduled", "schedule": schedule}}},
                                perturbations={"p": perturbation}))
    _assert_all_relations_hold(ds)


@PROPERTY
@given(data=mixtures(1), perturbation=gaussian_perturbations(1))
def test_response_is_schedule_independent_in_1d(data, perturbation):
    """Every exact flow from N(0, 1) to q has the same end-to-end map, so η is the same for cosine, cond-OT
    and OT; c_2 is not: both schedules cost strictly more than the geodesic. (They need not differ from
    each other: for a centred Gaussian q both run along the geodesic N(0, s_t²) at different speeds, and
    their costs can agree to 3e-4, as for q = N(0, 0.281²).) For OT, v_2 is constant, c_2 = W_2²/τ and
    c_1 = η. q = N(0, 1) makes cosine static: its relations compare zeros at rounding level."""
    ds = run_dict(scenario_dict(data=data, time_steps=128, particles=2048, perturbations={"p": perturbation},
                                protocols={"cosine": {"process": {"name": "scheduled", "schedule": "cosine"}},
                                           "cond_ot": {"process": {"name": "scheduled", "schedule": "cond_ot"}},
                                           "ot": {"process": "optimal_transport"}}))
    assert list(ds.protocol.values) == ["cosine", "cond_ot", "ot"]
    # η = ΔW_1²/(τ D_0): the same end-to-end map gives the same ΔW_1 and D_0. ΔW_1 is compared on the
    # scale of W_1 itself (RK4 error at 128 steps ~1e-9 of it): η alone loses relative accuracy when the
    # two W_1 nearly cancel.
    change = ds.wasserstein_1_change.values.ravel()
    scale = ds.wasserstein_1.values.max()
    np.testing.assert_allclose(change, change[-1], rtol=0, atol=1e-7 * scale)
    # D_0 against OT's P_τ = N(0, 1) is closed form; cosine's P_τ is a mixture (cos(π/2) = 6e-17, not 0) whose
    # χ² comes from tanh-sinh quadrature, whose error estimate is heuristic: 7e-10 was seen for rtol 1e-12
    np.testing.assert_allclose(ds.chi_square.values.ravel(), ds.chi_square.values.ravel()[-1], rtol=1e-8)
    eta = ds.response.values.ravel()
    if abs(change[-1]) > 1e-2 * scale:
        np.testing.assert_allclose(eta, eta[-1], rtol=1e-5)
    c2 = ds.kinetic_cost.values.ravel()
    is_prior = len(data["weights"]) == 1 and data["means"] == [0.0] and data["stds"] == [1.0]
    if not is_prior:  # for q = N(0, 1) cosine is static and cond-OT is not: both claims need q ≠ prior
        assert c2[0] > c2[2] * 1.01 and c2[1] > c2[2] * 1.01  # strictly above the geodesic's
    ot = ds.sel(protocol="ot")
    speed = ot.wasserstein_speed_squared.values
    assert np.ptp(speed) <= 1e-12 * speed.max()
    assert math.isclose(float(ot.kinetic_cost.item()), float(ot.geodesic_cost.item()), rel_tol=1e-12, abs_tol=1e-15)
    assert math.isclose(float(ot.loss_cost.item()), float(ot.response.item()), rel_tol=1e-9, abs_tol=1e-15)
    _assert_all_relations_hold(ds)


@PROPERTY
@given(data=mixtures(1), perturbation=gaussian_perturbations(1, max_std=1.1),
       schedule=st.sampled_from(["cosine", "cond_ot", "vp_linear"]))
def test_chi_square_is_constant_along_the_flow(data, perturbation, schedule):
    """D_t = ∫ P̃_t²/P_t − 1 stays equal to D_0 (docs/theory.md §4, (E1)): P_t in closed form, P̃_t(x_t(z)) =
    φ(z)/∂_z x_t(z) from the flowed quantile ensemble, with ∂_z x_t by central differences between two extra
    ensembles started at scores z ± h (a local tangent, exact to O(h²); finite differences across neighbouring
    particles fail where the flow opens a gap between well-separated narrow modes). The sum over the ensemble
    truncates at |z| = 8.5; for starts wider than 1.1 against N(0, 1) the ratio P̃/P grows fast enough there
    to bias it, so they are left out here; the engine's D_0 itself comes from tanh-sinh quadrature."""
    spec = scenario_dict(data=data, time_steps=64, particles=2048, perturbations={"p": perturbation},
                         protocols={schedule: {"process": {"name": "scheduled", "schedule": schedule}}})
    scenario = parse_scenario(yaml.safe_dump(spec))
    process, start = scenario.protocols[schedule].process, scenario.perturbations["p"]
    ensemble = make_ensemble(start, 2048, 0, device="cpu")
    z, h = ensemble.normal_scores, 1e-5
    shifted = {sign: Ensemble(start.from_normal_score(z + sign * h), ensemble.weights, z) for sign in (-1, 1)}
    flow = functools.partial(RungeKutta4().solve, process_equation(process))
    flows = run_flows(flow, {"centre": ensemble, "minus": shifted[-1], "plus": shifted[1]}, scenario.times)
    values = []
    for k in (64, 48, 32, 16, 0):
        t = float(scenario.times[k])
        tangent = (flows["plus"].positions[k, :, 0] - flows["minus"].positions[k, :, 0]) / (2 * h)
        density = torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi) / tangent
        ratio = density / process.marginal(t).log_prob(flows["centre"].positions[k]).exp()
        values.append(float(ensemble.weights @ ratio) - 1)
    ds = run_dict(spec)
    np.testing.assert_allclose(values, float(ds.chi_square.item()), rtol=1e-3)
