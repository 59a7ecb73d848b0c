r"""Built-in schedules :math:`(m_s, \sigma_s)`, :math:`s = t/\tau`, with analytic derivatives (paper §III.B)."""

from __future__ import annotations

import math

import torch

from stochthermo import ScenarioError, Schedule, hookimpl


class Cosine(Schedule):
    r"""Cosine schedule: :math:`m = \cos(\pi e s/2)`, :math:`\sigma = \sin(\pi e s/2)`, e = ``end`` (1 by
    default: the full quarter turn, P_τ = N(0, I));
    :math:`\tau T = (\pi e/2)\tan(\pi e s/2)`.

    Variance preserving with constant angular speed; minimises :math:`\int(\dot m^2 + \dot\sigma^2)dt` under
    :math:`m^2 + \sigma^2 = 1` (Eqs. (93)-(95)). With e < 1 the process stops short of the prior at signal
    level :math:`m_\tau = \cos(\pi e/2)`, the equivalent Ornstein–Uhlenbeck time :math:`-\ln m_\tau`, with a
    finite noise speed at t = 0 (which empirical data need): the prior-error studies sweep it."""

    name = "cosine"

    def __init__(self, end: float = 1.0):
        if not 0 < end <= 1:
            raise ScenarioError(f"must be in (0, 1], got {end}", key="end")
        self.rate = 0.5 * math.pi * end

    def m(self, s):
        return torch.cos(self.rate * s)

    def sigma(self, s):
        return torch.sin(self.rate * s)

    def dm(self, s):
        return -self.rate * torch.sin(self.rate * s)

    def dsigma(self, s):
        return self.rate * torch.cos(self.rate * s)


class CondOT(Schedule):
    r"""Conditional optimal transport (rectified flow): :math:`m = 1 - s`, :math:`\sigma = s`;
    :math:`\tau T = s/(1-s)`. Straight conditional paths at constant speed."""

    name = "cond_ot"

    def m(self, s):
        return 1 - s

    def sigma(self, s):
        return s

    def dm(self, s):
        return -torch.ones_like(s)

    def dsigma(self, s):
        return torch.ones_like(s)


class VPLinear(Schedule):
    r"""Variance-preserving (continuous DDPM) schedule with linear :math:`\beta(s) = \beta_{min} +
    s(\beta_{max} - \beta_{min})`: :math:`m = e^{-B/2}`, :math:`\sigma^2 = 1 - e^{-B}`,
    :math:`B(s) = \int_0^s\beta`; :math:`\tau T = \beta/2`. :math:`\sigma'` is infinite at s = 0 but
    :math:`\partial_s\sigma^2 = \beta m^2` is not. :math:`P_\tau \ne \mathcal N(0, I)` exactly."""

    name = "vp_linear"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        if beta_min < 0:
            raise ScenarioError(f"must be >= 0, got {beta_min}", key="beta_min")
        if beta_max < beta_min:
            raise ScenarioError(f"must be >= beta_min = {beta_min}, got {beta_max}", key="beta_max")
        if beta_max == 0:
            raise ScenarioError("must be > 0 (no noise at all otherwise)", key="beta_max")
        self.beta_min = beta_min
        self.beta_max = beta_max

    def _beta(self, s):
        return self.beta_min + s * (self.beta_max - self.beta_min)

    def _integrated_beta(self, s):
        return self.beta_min * s + 0.5 * (self.beta_max - self.beta_min) * s**2

    def m(self, s):
        return torch.exp(-0.5 * self._integrated_beta(s))

    def sigma(self, s):
        return torch.sqrt(-torch.expm1(-self._integrated_beta(s)))

    def dm(self, s):
        return -0.5 * self._beta(s) * self.m(s)

    def dsigma(self, s):
        return self.dsigma2(s) / (2 * self.sigma(s))

    def dsigma2(self, s):
        return self._beta(s) * self.m(s) ** 2


class OrnsteinUhlenbeck(Schedule):
    r"""The Ornstein–Uhlenbeck process dx = −x dt + dB (f = −x, T = ½) over a horizon H in its own time units:
    :math:`m = e^{-Hs}`, :math:`\sigma^2 = (1 - e^{-2Hs})/2`, so :math:`\tau T = H/2` and, with τ = H, exactly
    f = −x and T = ½ (the forward process of arXiv:2311.15996 uses H = 10; P_τ → N(0, ½ I) as H grows).
    :math:`\sigma'` is infinite at s = 0; :math:`\partial_s\sigma^2 = H e^{-2Hs}` is not."""

    name = "ornstein_uhlenbeck"

    def __init__(self, horizon: float = 1.0):
        if horizon <= 0:
            raise ScenarioError(f"must be > 0, got {horizon}", key="horizon")
        self.horizon = horizon

    def m(self, s):
        return torch.exp(-self.horizon * s)

    def sigma(self, s):
        return torch.sqrt(-0.5 * torch.expm1(-2 * self.horizon * s))

    def dm(self, s):
        return -self.horizon * self.m(s)

    def dsigma(self, s):
        return self.dsigma2(s) / (2 * self.sigma(s))

    def dsigma2(self, s):
        return self.horizon * torch.exp(-2 * self.horizon * s)


@hookimpl
def stochthermo_register_schedules():
    return [Cosine, CondOT, VPLinear, OrnsteinUhlenbeck]
