r"""Variance-exploding schedules: :math:`m \equiv 1`, no force, :math:`x_t = y + \sigma(t)\,\varepsilon`, temperature
:math:`\tau T = \sigma\,\partial_s\sigma = \tfrac12\partial_s\sigma^2` (docs/theory.md §1, VE and EDM).

All three start exactly at the data (σ(0) = 0, as every schedule must) and end at :math:`P_\tau = q *
\mathcal N(0, \sigma(1)^2 I)`, so the prior :math:`\mathcal N(0, \sigma_{max}^2 I)` differs from it by the
data's own spread (the ``prior_error`` observer measures that gap):

- ``ve``: :math:`\sigma = \sigma_{max}\,s` — EDM's σ(t) = t on [0, σ_max], stretched to [0, τ].
- ``ve_geometric`` (Song et al. 2021, the VE SDE): :math:`\sigma^2 = \sigma_{min}^2\big[(\sigma_{max}/\sigma_{min})^{2s}
  - 1\big]`, the variance of the SDE :math:`dx = \sqrt{d\sigma_g^2/dt}\,dW` with the geometric noise level
  :math:`\sigma_g(s) = \sigma_{min}(\sigma_{max}/\sigma_{min})^s` started from the data at s = 0. A network
  trained on it is conditioned on :math:`\sigma_g = (\sigma^2 + \sigma_{min}^2)^{1/2}`, not on the σ that
  ``time: sigma`` hands a model (the two differ by less than :math:`\sigma_{min}^2/2\sigma` relative).
- ``edm`` (Karras et al. 2022): :math:`\sigma = \sigma_{max}\,s^\rho`. EDM's sampler levels
  :math:`\sigma_i = (\sigma_{max}^{1/\rho} + \tfrac{i}{N-1}(\sigma_{min}^{1/\rho} - \sigma_{max}^{1/\rho}))^\rho`
  are linear in :math:`\sigma^{1/\rho}`, i.e. equally spaced in s on this curve between
  :math:`s_{min} = (\sigma_{min}/\sigma_{max})^{1/\rho}` and 1; below :math:`s_{min}` the same curve ramps
  exactly down to σ = 0 (the data), so the process is continuous in t from the data to the prior and the
  sampler's grid is a subset of its times (:meth:`Edm.sampler_times`).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from stochthermo import ScenarioError, Schedule, hookimpl

from ._scheduler_config import load_scheduler_config

#: diffusers' schedulers of EDM's noise levels
EDM_SCHEDULERS = ("EDMEulerScheduler", "EDMDPMSolverMultistepScheduler")


def _positive(value: float, key: str) -> float:
    if not math.isfinite(value) or value <= 0:
        raise ScenarioError(f"must be a finite number > 0, got {value}", key=key)
    return float(value)


class VE(Schedule):
    r"""Variance-exploding schedule (EDM's σ(t) = t, stretched): :math:`m = 1`, :math:`\sigma = \sigma_{max} s`;
    :math:`\tau T = \sigma_{max}^2 s`. :math:`P_\tau = q * \mathcal N(0, \sigma_{max}^2 I)`."""

    name = "ve"

    def __init__(self, sigma_max: float = 10.0):
        self.sigma_max = _positive(sigma_max, "sigma_max")

    def m(self, s):
        return torch.ones_like(s)

    def sigma(self, s):
        return self.sigma_max * s

    def dm(self, s):
        return torch.zeros_like(s)

    def dsigma(self, s):
        return torch.full_like(s, self.sigma_max)


class GeometricVE(Schedule):
    r"""Song et al.'s VE SDE from the data: :math:`m = 1`, :math:`\sigma^2 = \sigma_{min}^2(r^{2s} - 1)` with
    :math:`r = \sigma_{max}/\sigma_{min}`, :math:`\tau T = \tfrac12\partial_s\sigma^2 = \sigma_{min}^2 \ln r\; r^{2s}`
    (finite at s = 0, where ∂_sσ is infinite, as for variance-preserving schedules)."""

    name = "ve_geometric"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        self.sigma_min, self.sigma_max = _positive(sigma_min, "sigma_min"), _positive(sigma_max, "sigma_max")
        if self.sigma_max <= self.sigma_min:
            raise ScenarioError(f"must be > sigma_min = {self.sigma_min:g}, got {self.sigma_max:g}", key="sigma_max")
        self.log_ratio = math.log(self.sigma_max / self.sigma_min)

    def m(self, s):
        return torch.ones_like(s)

    def dm(self, s):
        return torch.zeros_like(s)

    def sigma(self, s):
        return self.sigma_min * torch.sqrt(torch.expm1(2 * self.log_ratio * s))

    def dsigma2(self, s):
        return 2 * self.log_ratio * self.sigma_min**2 * torch.exp(2 * self.log_ratio * s)

    def dsigma(self, s):
        return self.dsigma2(s) / (2 * self.sigma(s))


class Edm(Schedule):
    r"""Karras et al.'s noise levels, continuous in t with an exact ramp from the data: :math:`m = 1`,
    :math:`\sigma = \sigma_{max}s^\rho`, :math:`\tau T = \rho\,\sigma_{max}^2 s^{2\rho - 1}` (ρ ≥ 1/2 keeps it finite at
    s = 0). ``sigma_min`` fixes where EDM's sampler grid starts (:meth:`sampler_times`); the process itself
    runs from σ = 0."""

    name = "edm"

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0, path: Path | None = None):
        if path is not None:  # a diffusers EDM scheduler config: its sigma_min, sigma_max and rho
            sigma_min, sigma_max, rho = read_edm_config(path)
        self.sigma_min, self.sigma_max = _positive(sigma_min, "sigma_min"), _positive(sigma_max, "sigma_max")
        if self.sigma_max <= self.sigma_min:
            raise ScenarioError(f"must be > sigma_min = {self.sigma_min:g}, got {self.sigma_max:g}", key="sigma_max")
        self.rho = _positive(rho, "rho")
        if self.rho < 0.5:
            raise ScenarioError(f"must be >= 0.5 (below, the temperature rho sigma_max^2 s^(2 rho - 1) diverges at "
                                f"t = 0), got {rho:g}", key="rho")

    def m(self, s):
        return torch.ones_like(s)

    def dm(self, s):
        return torch.zeros_like(s)

    def sigma(self, s):
        return self.sigma_max * s**self.rho

    def dsigma(self, s):
        return self.rho * self.sigma_max * s ** (self.rho - 1)

    def dsigma2(self, s):
        return 2 * self.rho * self.sigma_max**2 * s ** (2 * self.rho - 1)

    def sampler_times(self, steps: int) -> torch.Tensor:
        """The s of EDM's N = ``steps`` sampler levels σ_max ... σ_min (descending σ), equally spaced in
        s from 1 to (σ_min/σ_max)^(1/ρ)."""
        start = (self.sigma_min / self.sigma_max) ** (1 / self.rho)
        return torch.linspace(1.0, start, steps, dtype=torch.float64)


def read_edm_config(path: Path) -> tuple[float, float, float]:
    """sigma_min, sigma_max and rho of a diffusers EDM scheduler config (Karras sigmas), or a one-line
    :class:`ScenarioError` naming the file."""
    found, config = load_scheduler_config(path)
    cls = config.get("_class_name")
    if cls not in EDM_SCHEDULERS:
        raise ScenarioError(f"{found}: scheduler class '{cls}' is not an EDM scheduler (one of "
                            f"{', '.join(EDM_SCHEDULERS)})", key="path")
    if config.get("sigma_schedule", "karras") != "karras":
        raise ScenarioError(f"{found}: sigma_schedule '{config['sigma_schedule']}' is not EDM's (karras)", key="path")
    try:
        return tuple(float(config[key]) for key in ("sigma_min", "sigma_max", "rho"))
    except (KeyError, TypeError, ValueError):
        raise ScenarioError(f"{found}: sigma_min, sigma_max and rho must be numbers", key="path") from None


@hookimpl
def stochthermo_register_schedules():
    return [VE, GeometricVE, Edm]
