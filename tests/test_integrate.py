"""The RK4 integrator is fourth order, with or without substeps between saved times; Simpson's rule and its
cumulative form for quadratics. (The substep and cumulative tests were written for the survivors of
mutation testing, tests/mutation/integrate.toml.)"""

import math

import numpy as np
import pytest
import torch

from stochthermo.numerics._integrate import cumulative_integral, rk4, time_integral


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


def test_one_rk4_step_is_the_fourth_order_taylor_polynomial():
    """dx/dt = x: one classical RK4 step of size h multiplies x by 1 + h + h²/2 + h³/6 + h⁴/24 exactly (up to
    rounding), so the default is one step per saved interval."""
    h = 0.3
    positions, _ = rk4(lambda t, x: x, torch.ones(1, 1, dtype=torch.float64), torch.tensor([0.0, h],
                                                                                           dtype=torch.float64))
    assert float(positions[-1, 0, 0]) == pytest.approx(1 + h + h**2 / 2 + h**3 / 6 + h**4 / 24, rel=1e-15)


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_substeps_are_the_same_steps_on_a_finer_grid(direction):
    """``substeps = k`` takes k equal RK4 steps between saved times (forwards or backwards in time, with a
    time-dependent velocity): the saved points of the fine grid's integration, and fourth order in the steps."""
    def velocity(t, x):
        return x * math.cos(t)

    times = direction * torch.linspace(0.0, 2.0, 5, dtype=torch.float64)
    fine = direction * torch.linspace(0.0, 2.0, 17, dtype=torch.float64)
    x0 = torch.ones(2, 1, dtype=torch.float64)
    coarse_positions, coarse_velocities = rk4(velocity, x0, times, substeps=4)
    fine_positions, fine_velocities = rk4(velocity, x0, fine)
    torch.testing.assert_close(coarse_positions, fine_positions[::4], rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(coarse_velocities, fine_velocities[::4], rtol=1e-14, atol=1e-14)


def test_time_integral_runs_along_the_last_axis_by_default():
    t = np.linspace(0, 2, 9)
    values = np.stack([t**3 - t, 2 * t**2])  # (2, 9): two integrands over the grid
    np.testing.assert_allclose(time_integral(values, t), [2.0, 16 / 3], rtol=1e-13)


def test_cumulative_integral_starts_at_zero_and_is_exact_for_quadratics():
    """Each interval is integrated under the parabola through its neighbourhood's three points: exact for
    quadratics at every grid point (for cubics only at the even ones, where pairs of intervals close)."""
    t = np.linspace(0, 2, 9)
    np.testing.assert_allclose(cumulative_integral(3 * t**2 - t, t), t**3 - t**2 / 2, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(cumulative_integral(t**3, t)[::2], t[::2] ** 4 / 4, rtol=1e-12, atol=1e-15)
