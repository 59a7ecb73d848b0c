"""Conformance checks for plugin authors (opt-in; import from your own tests).

Each check raises :class:`AssertionError` with a message naming the plugin and what is wrong::

    from stochthermo.testing import check_schedule
    def test_my_schedule():
        check_schedule(MySchedule(alpha=2.0))
"""

from __future__ import annotations

import math

import torch

from .distribution import Distribution
from .ensemble import normal_score_grid
from .schedule import Schedule

#: interior points where schedule derivatives are compared with autograd
INTERIOR = torch.linspace(0.02, 0.98, 49, dtype=torch.float64)


def check_schedule(schedule: Schedule, *, rtol: float = 1e-8) -> None:
    """m(0) = 1, σ(0) = 0; ∂m, ∂σ, ∂σ² match autograd on (0, 1); τT ≥ 0 on [0, 1] (Eq. (24));
    float64 in, float64 out, shapes kept."""
    label = f"schedule '{schedule.name}'"
    zero = torch.zeros(1, dtype=torch.float64)
    assert abs(float(schedule.m(zero)) - 1) < 1e-12, f"{label}: m(0) = {float(schedule.m(zero))}, must be 1"
    assert abs(float(schedule.sigma(zero))) < 1e-12, f"{label}: sigma(0) = {float(schedule.sigma(zero))}, must be 0"
    for name in ("m", "sigma", "dm", "dsigma", "dsigma2", "temperature"):
        out = getattr(schedule, name)(INTERIOR.reshape(7, 7))
        assert out.dtype == torch.float64, f"{label}: {name}() returned {out.dtype} for float64 input"
        assert out.shape == (7, 7), f"{label}: {name}() changed the shape (7, 7) to {tuple(out.shape)}"
    for derivative, function in (("dm", schedule.m), ("dsigma", schedule.sigma),
                                 ("dsigma2", lambda s: schedule.sigma(s) ** 2)):
        auto = _autograd_derivative(function, INTERIOR)
        analytic = getattr(schedule, derivative)(INTERIOR)
        assert torch.allclose(analytic, auto, rtol=rtol, atol=rtol), (
            f"{label}: {derivative} differs from autograd by {float((analytic - auto).abs().max()):.3g}")
    grid = torch.linspace(0, 1, 1001, dtype=torch.float64)
    temperature = schedule.temperature(grid)
    assert not torch.isnan(temperature).any(), f"{label}: temperature is NaN somewhere on [0, 1]"
    worst = float(temperature.min())
    assert worst >= -1e-12, f"{label}: negative temperature {worst:.3g} (sigma/m must not decrease, Eq. (24))"


def _autograd_derivative(function, s: torch.Tensor) -> torch.Tensor:
    s = s.clone().requires_grad_(True)
    out = function(s)
    if not out.requires_grad:  # constant in s
        return torch.zeros_like(s)
    return torch.autograd.grad(out.sum(), s)[0]


def check_distribution(distribution: Distribution, *, n: int = 4096, seed: int = 0) -> None:
    """Samples have shape (n, d), the parameters' dtype and the generator's device, and the same seed gives
    the same draws; the sample mean agrees with ``mean()`` to 6 standard errors; in 1-D the log-density
    integrates to 1 and ``from_normal_score`` inverts ``normal_score``."""
    label = f"distribution '{distribution.name}'"
    draw = distribution.sample(n, torch.Generator().manual_seed(seed))
    assert draw.shape == (n, distribution.dim), f"{label}: sample shape {tuple(draw.shape)}"
    assert draw.dtype == torch.float64, f"{label}: samples are {draw.dtype}"
    again = distribution.sample(n, torch.Generator().manual_seed(seed))
    assert torch.equal(draw, again), f"{label}: the same seed gave different samples"
    standard_error = (distribution.covariance().diagonal() / n).sqrt()
    gap = ((draw.mean(0) - distribution.mean()).abs() / standard_error).max()
    assert gap < 6, f"{label}: sample mean is {float(gap):.1f} standard errors from mean()"
    if distribution.dim != 1:
        return
    z, _ = normal_score_grid(801, device="cpu")
    x = distribution.from_normal_score(z)
    assert torch.all(x[1:] >= x[:-1]), f"{label}: from_normal_score is not monotone"
    inner = (z.abs() < 6)
    back = distribution.normal_score(x)[inner]
    assert torch.allclose(back, z[inner], atol=1e-6), f"{label}: normal_score does not invert from_normal_score"
    low, high = float(x[0]), float(x[-1])
    grid = torch.linspace(low, high, 200001, dtype=torch.float64)[:, None]
    mass = float(torch.trapezoid(distribution.log_prob(grid).exp(), grid[:, 0]))
    assert math.isclose(mass, 1, abs_tol=1e-3), f"{label}: density integrates to {mass:.6f}"
