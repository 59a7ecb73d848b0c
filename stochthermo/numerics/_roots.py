"""Vectorised root finding for monotone equations (quantile functions, preimages of monotone maps):
bisection, and Newton's method safeguarded by a shrinking bracket."""

from __future__ import annotations

from collections.abc import Callable

import torch

#: halvings of the bracket: its width / 2⁶⁴ lies below float64 resolution
BISECTION_STEPS = 64
#: a Newton step this small (relative) leaves an error of its square: the iteration has converged
NEWTON_SETTLED = 1e-9
#: a step this small (relative) is at float64 resolution, where the residual's sign is rounding
RESOLUTION = 1e-14


def bisect(root_is_above: Callable[[torch.Tensor], torch.Tensor], low: torch.Tensor,
           high: torch.Tensor) -> torch.Tensor:
    """Elementwise root in [low, high] of a monotone equation, given ``root_is_above(mid)``: a boolean
    tensor, True where the root lies above ``mid``; the bracket is halved ``BISECTION_STEPS`` times."""
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (low + high)
        above = root_is_above(mid)
        low, high = torch.where(above, mid, low), torch.where(above, high, mid)
    return 0.5 * (low + high)


def safeguarded_newton(residual_and_slope: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                       low: torch.Tensor, high: torch.Tensor, iterations: int, *,
                       start: torch.Tensor | None = None) -> torch.Tensor:
    """Elementwise root of an increasing equation inside a bracket [low, high] that holds it, from ``start``
    (clamped into the bracket; its middle by default and where ``start`` is NaN): Newton's step where it lands
    inside the bracket and is at most half the step before last, bisection otherwise (the bracket at least
    halves every second iteration, so Newton cannot cycle), the bracket shrunk to the side of the root after
    every evaluation. Stops after ``iterations``, or once every element has taken a Newton step below
    ``NEWTON_SETTLED`` (relative; convergence is then quadratic, so the iterate is within float64 resolution of
    the root) or any step below ``RESOLUTION``."""
    middle = 0.5 * (low + high)
    y = middle if start is None else torch.where(torch.isnan(start), middle, torch.clamp(start, low, high))
    last = before_last = (high - low).abs()
    for _ in range(iterations):
        residual, slope = residual_and_slope(y)
        low = torch.where(residual < 0, y, low)
        high = torch.where(residual > 0, y, high)
        newton = y - residual / slope
        inside = (torch.isfinite(newton) & (newton >= low) & (newton <= high)
                  & (2 * (newton - y).abs() <= before_last))
        step = torch.where(residual == 0, 0.0, torch.where(inside, newton, 0.5 * (low + high)) - y)
        y = y + step
        before_last, last = last, step.abs()
        size = step.abs() / (1 + y.abs())
        if bool(((inside & (size <= NEWTON_SETTLED)) | (size <= RESOLUTION)).all()):
            break
    return y
