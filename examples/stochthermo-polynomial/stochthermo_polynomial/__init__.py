r"""A third-party schedule plugin for stochthermo, registered through the ``stochthermo.plugins`` entry point.

``polynomial``: :math:`m = 1 - s^p`, :math:`\sigma = s^q` with p, q ≥ 1. Since :math:`\sigma/m` increases,
the temperature :math:`\tau T = m\sigma\,\partial_s(\sigma/m)` is non-negative (paper Eq. (24)); p = q = 1 is
the conditional-OT schedule.
"""

from __future__ import annotations

import torch

from stochthermo import ScenarioError, Schedule, hookimpl


class Polynomial(Schedule):
    """m = 1 − s^power_m, σ = s^power_sigma (both powers ≥ 1)."""

    name = "polynomial"

    def __init__(self, power_m: float = 2.0, power_sigma: float = 1.0):
        for key, value in (("power_m", power_m), ("power_sigma", power_sigma)):
            if value < 1:
                raise ScenarioError(f"must be >= 1, got {value}", key=key)
        self.power_m, self.power_sigma = power_m, power_sigma

    def m(self, s):
        return 1 - s**self.power_m

    def sigma(self, s):
        return s**self.power_sigma

    def dm(self, s):
        return -self.power_m * s ** (self.power_m - 1)

    def dsigma(self, s):
        return self.power_sigma * s ** (self.power_sigma - 1) * torch.ones_like(s)


@hookimpl
def stochthermo_register_schedules():
    return [Polynomial]
