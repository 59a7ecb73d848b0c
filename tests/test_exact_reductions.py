"""The exact reductions of issue 32 leave the shipped two-dimensional studies' Datasets unchanged: each scenario
(at fewer particles and times) runs with every reduction switched off — no exponent floor, no box screen, no
factorised grid kernel, the common-support W_1 over all n × n pairs — and on, and every variable agrees to
1e-10 of its largest magnitude."""

from pathlib import Path

import numpy as np
import pytest
import yaml

import stochthermo.measures._wasserstein as wasserstein
import stochthermo.numerics._posterior as posterior
import stochthermo.numerics._product_grid as product_grid
from conftest import run_dict

ROOT = Path(__file__).parents[1]
#: variables that are zero up to rounding: compared in absolute terms (they are already relative quantities)
ROUNDING_LEVEL = {"orthogonality_residual": 1e-12}
#: W_1's time derivative is Σ π e·Δv at the optimal plan (envelope theorem); where two plans are optimal to
#: within rounding (a near-tie: their W_1 differ by 5e-15 in the anisotropic run), the simplex over all n × n
#: pairs and the one over the net flow may return either, and the derivative differs by up to ~1e-8 of its
#: scale (tests/test_common_support.py certifies the net-flow plan optimal); so do v_loss², c_1 and the slacks of
#: the relations (80)-(83) that compare them
PLAN_SENSITIVE = dict.fromkeys(["wasserstein_1_rate", "loss_speed_squared", "loss_cost", "slack_dissipation_rate",
                                "slack_wasserstein_speed", "slack_response", "slack_dissipation",
                                "slack_kinetic_cost"], 1e-7)


def _shipped(name: str, **changes) -> dict:
    spec = yaml.safe_load((ROOT / "scenarios" / f"{name}.yaml").read_text())
    for key in ("output", "reference", "sweep"):
        spec.pop(key, None)
    spec.update(changes)
    return spec


def _without_reductions(monkeypatch):
    monkeypatch.setattr(posterior, "EXP_FLOOR", -np.inf)
    monkeypatch.setattr(posterior, "SCREEN_MIN_COMPONENTS", 1 << 62)
    monkeypatch.setattr(product_grid, "MIN_GRID_POINTS", 1 << 62)
    monkeypatch.setattr(wasserstein, "common_support_coupling",
                        lambda x, wx, wy: wasserstein._simplex_coupling(x, wx, x, wy, "euclidean"))


SCENARIOS = {
    "swiss_roll": {"particles": 256, "time_steps": 12},
    "anisotropic": {"particles": 256, "time_steps": 12},
    "prior_error": {"particles": 256, "time_steps": 16},
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_exact_reductions_leave_the_dataset_unchanged(name, monkeypatch):
    spec = _shipped(name, **SCENARIOS[name])
    today = run_dict(spec)
    with monkeypatch.context() as former_paths:
        _without_reductions(former_paths)
        former = run_dict(spec)
    compared = 0
    for variable in today.data_vars:
        a, b = np.asarray(today[variable].values), np.asarray(former[variable].values)
        if a.dtype.kind != "f":
            continue
        assert np.array_equal(np.isfinite(a), np.isfinite(b)), variable
        finite = np.isfinite(a)
        if not finite.any():
            continue
        gap = float(np.abs(a[finite] - b[finite]).max())
        scale = ROUNDING_LEVEL.get(variable, PLAN_SENSITIVE.get(variable, 1e-10) * float(np.abs(b[finite]).max()))
        assert gap <= scale, f"{variable}: {gap:.3g} beyond {scale:.3g}"
        compared += 1
    assert compared >= 20
