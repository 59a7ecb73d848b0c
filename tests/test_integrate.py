"""The RK4 integrator is fourth order; Simpson's rule is exact for cubics."""

import math

import numpy as np
import torch

from stochthermo.numerics._integrate import rk4, time_integral


def _final_error(steps: int) -> float:
    # dx/dt = x cos t, x(0) = 1  ->  x(t) = exp(sin t); integrated backwards from t = 2 to 0 and forwards
    times = torch.linspace(0.0, 2.0, steps + 1, dtype=torch.float64)
    x0 = torch.ones(1, 1, dtype=torch.float64)
    positions, velocities = rk4(lambda t, x: x * math.cos(t), x0, times)
    assert torch.allclose(velocities[-1], positions[-1] * math.cos(2.0))
    return abs(float(positions[-1, 0, 0]) - math.exp(math.sin(2.0)))


def test_rk4_is_fourth_order():
    errors = [_final_error(n) for n in (10, 20, 40, 80)]
    orders = [math.log2(a / b) for a, b in zip(errors, errors[1:], strict=False)]
    assert all(3.8 < p < 4.3 for p in orders), orders


def test_rk4_backwards_recovers_start():
    times = torch.linspace(1.0, 0.0, 101, dtype=torch.float64)  # reverse-time grid
    x_end = torch.tensor([[math.exp(math.sin(1.0))]], dtype=torch.float64)
    positions, _ = rk4(lambda t, x: x * math.cos(t), x_end, times)
    assert abs(float(positions[-1, 0, 0]) - 1.0) < 1e-9


def test_simpson_exact_for_cubics():
    t = np.linspace(0, 2, 9)
    assert math.isclose(time_integral(t**3 - t, t), 4 - 2, rel_tol=1e-13)
