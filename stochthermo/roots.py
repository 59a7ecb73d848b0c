"""Vectorised root finding for monotone equations (quantile functions, preimages of monotone maps):
bisection, and bisection to a narrow bracket followed by a safeguarded Newton polish."""

from __future__ import annotations

from collections.abc import Callable

import torch

#: halvings of the bracket: its width / 2⁶⁴ lies below float64 resolution
BISECTION_STEPS = 64


def bisect(root_is_above: Callable[[torch.Tensor], torch.Tensor], low: torch.Tensor,
           high: torch.Tensor) -> torch.Tensor:
    """Elementwise root in [low, high] of a monotone equation, given ``root_is_above(mid)``: a boolean
    tensor, True where the root lies above ``mid``."""
    low, high = narrow_bracket(root_is_above, low, high, BISECTION_STEPS)
    return 0.5 * (low + high)


def narrow_bracket(root_is_above: Callable[[torch.Tensor], torch.Tensor], low: torch.Tensor, high: torch.Tensor,
                   steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The bracket [low, high] halved ``steps`` times around the root."""
    for _ in range(steps):
        mid = 0.5 * (low + high)
        above = root_is_above(mid)
        low, high = torch.where(above, mid, low), torch.where(above, high, mid)
    return low, high


def safeguarded_newton(residual_and_slope: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                       low: torch.Tensor, high: torch.Tensor, iterations: int) -> torch.Tensor:
    """Newton's iteration for an increasing equation from the middle of a bracket that holds the root, each
    iterate kept inside the bracket (a non-finite step stays put): quadratic convergence once the bracket
    has isolated the root."""
    y = 0.5 * (low + high)
    for _ in range(iterations):
        residual, slope = residual_and_slope(y)
        step = residual / slope
        y = torch.where(torch.isfinite(step), torch.minimum(torch.maximum(y - step, low), high), y)
    return y
