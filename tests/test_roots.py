"""Root finding for monotone equations: the safeguarded Newton iteration cannot cycle, and the OT preimage
that depends on it inverts the map on every particle of a quantile ensemble."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from conftest import scenario_dict
from stochthermo.engine._build import parse_scenario
from stochthermo.measures._ensemble import normal_score_grid
from stochthermo.numerics._roots import bisect, safeguarded_newton


def signed_sqrt(y):
    """sign(y)·√|y|: increasing, root 0, and Newton's step maps y to −y exactly (a 2-cycle from anywhere)."""
    root = y.abs().sqrt()
    return torch.sign(y) * root, 0.5 / root


def test_newton_two_cycle_is_broken_by_bisection():
    start = torch.tensor([1.0, 0.75, -0.3], dtype=torch.float64)
    low, high = torch.full_like(start, -2.0), torch.full_like(start, 2.0)
    root = safeguarded_newton(signed_sqrt, low, high, 200, start=start)
    np.testing.assert_allclose(root.numpy(), 0.0, atol=1e-12)


@pytest.mark.parametrize("power", [1.0, 3.0])
def test_newton_agrees_with_bisection(power):
    target = torch.linspace(-5, 5, 41, dtype=torch.float64)

    def equation(y):
        return torch.sign(y) * y.abs() ** power + y - target, power * y.abs() ** (power - 1) + 1

    low, high = torch.full_like(target, -10.0), torch.full_like(target, 10.0)
    newton = safeguarded_newton(equation, low, high, 100)
    bisection = bisect(lambda y: equation(y)[0] < 0, low, high)
    np.testing.assert_allclose(newton.numpy(), bisection.numpy(), rtol=0, atol=1e-13)


def test_optimal_transport_preimage_inverts_the_map_on_a_quantile_grid():
    """Regression: for this mixture Newton cycled between −1.53 and 0.37 on the particle at x = −1.856 (the
    monotone map's slope changes fast between the two components), and the cycle left a residual of 1.8."""
    data = {"name": "gaussian_mixture", "weights": [0.4666666666666667, 0.5333333333333333],
            "means": [0.0, 2.0], "stds": [0.312, 1.0]}
    scenario = parse_scenario(yaml.safe_dump(scenario_dict(data=data, protocols={
        "ot": {"process": "optimal_transport"}})), source="<test>")
    process = scenario.protocols["ot"].process
    z, _ = normal_score_grid(2048, device="cpu", dtype=torch.float64)
    for s in (1.0, 0.5, 0.01):
        for shift in (0.0, 0.5):
            x = (z + shift)[:, None]
            y = process.preimage(x, s)
            moved = (1 - s) * y + s * process.transport_map(y)
            assert float((moved - x).abs().max()) < 1e-12 * (1 + float(x.abs().max()))
