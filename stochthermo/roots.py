"""Vectorised bisection for monotone equations (quantile functions, preimages of monotone maps)."""

from __future__ import annotations

from collections.abc import Callable

import torch

#: halvings of the bracket: its width / 2⁶⁴ lies below float64 resolution
BISECTION_STEPS = 64


def bisect(root_is_above: Callable[[torch.Tensor], torch.Tensor], low: torch.Tensor,
           high: torch.Tensor) -> torch.Tensor:
    """Elementwise root in [low, high] of a monotone equation, given ``root_is_above(mid)``: a boolean
    tensor, True where the root lies above ``mid``."""
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (low + high)
        above = root_is_above(mid)
        low, high = torch.where(above, mid, low), torch.where(above, high, mid)
    return 0.5 * (low + high)
