r"""Noise schedules :math:`(m_s, \sigma_s)` of the isotropic forward process
:math:`x_t = m_t y + \sigma_t \varepsilon` (paper Eqs. (21)-(24)).

Schedules are written in the dimensionless time :math:`s = t/\tau \in [0, 1]`, derivatives are with respect
to :math:`s`; the forward process divides by τ. They must satisfy :math:`m_0 = 1`, :math:`\sigma_0 = 0`
and :math:`\partial_s(\sigma/m) \ge 0` (Eq. (24)), i.e. a non-negative temperature

.. math:: \tau\,T = m\,\sigma\,\partial_s(\sigma/m) = \tfrac12 \partial_s(\sigma^2) - \sigma^2\, m'/m
   \qquad\text{(Eq. (22))}.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import torch

from stochthermo.roles._component import Component


class Schedule(Component):
    """Abstract schedule. All methods take and return tensors of ``s`` of any shape."""

    kind: ClassVar[str] = "schedule"

    @abstractmethod
    def m(self, s: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @abstractmethod
    def sigma(self, s: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @abstractmethod
    def dm(self, s: torch.Tensor) -> torch.Tensor:
        """∂m/∂s."""
        raise NotImplementedError

    @abstractmethod
    def dsigma(self, s: torch.Tensor) -> torch.Tensor:
        """∂σ/∂s (may be infinite at s = 0, e.g. variance-preserving schedules)."""
        raise NotImplementedError

    def dsigma2(self, s: torch.Tensor) -> torch.Tensor:
        """∂(σ²)/∂s = 2σσ'. Override where σ' is singular but σ² is smooth."""
        return 2 * self.sigma(s) * self.dsigma(s)

    def temperature(self, s: torch.Tensor) -> torch.Tensor:
        """τ·T at s (Eq. (22)): ½ ∂_s σ² − σ² m'/m. Infinite where m = 0 and m' ≠ 0."""
        m = self.m(s)
        sigma2 = self.sigma(s) ** 2
        drift = torch.where(sigma2 == 0, torch.zeros_like(m), sigma2 * self.dm(s) / m)
        return 0.5 * self.dsigma2(s) - drift


#: resolution of the check that T_t >= 0 (Eq. (24)) on s in [0, 1]
TEMPERATURE_CHECK_POINTS = 2001


def schedule_problem(schedule: Schedule) -> str | None:
    """What makes ``schedule`` invalid, or ``None``: the boundary values m_0 = 1, σ_0 = 0; m, σ, ∂m and ∂σ²
    finite on [0, 1] and m > 0 before the end (parameters float64 represents: no overflow, no underflow); and a
    non-negative, defined temperature on [0, 1] (Eq. (24)). The one statement of that rule: the ``scheduled`` process
    refuses such a schedule with it, and :func:`stochthermo.testing.check_schedule` fails with it."""
    s = torch.linspace(0, 1, TEMPERATURE_CHECK_POINTS, dtype=torch.float64)
    zero = s[:1]
    m0, sigma0 = float(schedule.m(zero)), float(schedule.sigma(zero))
    if abs(m0 - 1) > 1e-12 or abs(sigma0) > 1e-12:
        return (f"schedule '{schedule.name}' must start at m = 1, sigma = 0 (got m(0) = {m0:.6g}, "
                f"sigma(0) = {sigma0:.6g})")
    for name in ("m", "sigma", "dm", "dsigma2"):
        values = getattr(schedule, name)(s)
        bad = torch.nonzero(~torch.isfinite(values))
        if len(bad):
            at = float(s[bad[0, 0]])
            return (f"schedule '{schedule.name}' has {name}(t/tau = {at:.4g}) = {float(values[bad[0, 0]])}: its "
                    f"parameters are outside the range float64 represents")
    vanished = torch.nonzero((schedule.m(s) == 0) & (s < 1))
    if len(vanished):
        at = float(s[vanished[0, 0]])
        return (f"schedule '{schedule.name}' has m = 0 at t/tau = {at:.4g} < 1 (underflow): its parameters are "
                f"outside the range float64 represents")
    temperature = schedule.temperature(s)
    if torch.isnan(temperature).any():
        at = float(s[torch.nonzero(torch.isnan(temperature))[0, 0]])
        return f"schedule '{schedule.name}' has an undefined (NaN) temperature at t/tau = {at:.4g}"
    bad = torch.nonzero(temperature < -1e-12)
    if len(bad):
        at = float(s[bad[0, 0]])
        return (f"schedule '{schedule.name}' has negative temperature T_t = {float(temperature[bad[0, 0]]):.3g}/tau "
                f"at t/tau = {at:.4g}: sigma/m must not decrease (Eq. (24))")
    return None
