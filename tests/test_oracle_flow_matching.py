"""Independent oracle, opt-in: the built-in cosine, cond-OT and linear-β VP schedules and their derivatives
against Meta's ``flow_matching`` schedulers, to float64 rounding.

flow_matching is licensed CC-BY-NC 4.0, so it is not part of the README's test command (which every user
runs); install it by hand to run these tests (``pip install --no-deps flow-matching==1.0.10``: the schedulers
need nothing beyond torch), and ``.ci/run`` runs them in a separate, non-commercial CI step. Its convention
runs time the other way, data at t = 1 and noise at t = 0: ``alpha_t = m(1 - t)``, ``sigma_t = σ(1 - t)``, and
the t-derivatives are minus the s-derivatives."""

import pytest
import torch

from stochthermo.engine._registry import default_registry

scheduler = pytest.importorskip("flow_matching.path.scheduler")

#: s in [0.01, 1]: flow_matching's VP σ = sqrt(1 - exp(-B)) loses relative digits ~ 1e-16 / B as B -> 0 (ours
#: uses expm1), and its dσ/dt is infinite at s = 0
S = torch.linspace(0.01, 1.0, 397, dtype=torch.float64)


@pytest.mark.parametrize("ours, theirs", [
    ({"name": "cosine"}, scheduler.CosineScheduler()),
    ({"name": "cond_ot"}, scheduler.CondOTScheduler()),
    ({"name": "vp_linear"}, scheduler.VPScheduler()),
    ({"name": "vp_linear", "beta_min": 0.5, "beta_max": 7.0}, scheduler.VPScheduler(beta_min=0.5, beta_max=7.0)),
], ids=["cosine", "cond_ot", "vp_linear", "vp_linear(0.5, 7)"])
def test_schedule_and_derivatives_match_flow_matching(ours, theirs):
    schedule = default_registry().create("schedule", ours, "schedule")
    out = theirs(1 - S)
    pairs = {"m": (schedule.m(S), out.alpha_t), "sigma": (schedule.sigma(S), out.sigma_t),
             "dm": (schedule.dm(S), -out.d_alpha_t), "dsigma": (schedule.dsigma(S), -out.d_sigma_t)}
    for what, (mine, oracle) in pairs.items():
        torch.testing.assert_close(mine, oracle, rtol=1e-12, atol=1e-14, msg=lambda m, w=what: f"{w}: {m}")
