r"""The ``diffusers`` schedule: the forward process of a model trained with a diffusers noise scheduler.

A diffusers scheduler (DDPM, DDIM, Euler-discrete, ... all share it) noises with betas
:math:`\beta_0, \dots, \beta_{N-1}` (``num_train_timesteps`` = N) and
:math:`\bar\alpha_k = \prod_{j \le k}(1 - \beta_j)`, :math:`x_k = \sqrt{\bar\alpha_k}\,y + \sqrt{1 - \bar\alpha_k}\,
\varepsilon` (Euler-discrete writes the same process as :math:`x/\sqrt{\bar\alpha}` with
:math:`\sigma_k = \sqrt{(1 - \bar\alpha_k)/\bar\alpha_k}`). Convention: timestep k sits at
:math:`s_k = (k + 1)/N` (after k + 1 noising steps; s = 0 is the data), and the schedule is variance
preserving, :math:`m = \sqrt{\bar\alpha(s)}`, :math:`\sigma^2 = 1 - \bar\alpha(s)`, so that
:math:`\tau T = -\tfrac12\,\partial_s\log\bar\alpha \ge 0` (Eq. (22)). The continuous :math:`\bar\alpha(s)` is

* ``continuous: closed_form`` — the continuous limit of the beta schedule, where it has one:
  ``linear`` is the VP schedule :math:`\log\bar\alpha = -\int_0^s\beta`,
  :math:`\beta(s) = N\beta_{start} + sN(\beta_{end} - \beta_{start})` (the ``vp_linear`` schedule with
  :math:`\beta_{min} = N\beta_{start}`, :math:`\beta_{max} = N\beta_{end}`); ``scaled_linear`` the same with
  :math:`\beta(s) = N(\sqrt{\beta_{start}} + s(\sqrt{\beta_{end}} - \sqrt{\beta_{start}}))^2`;
  ``squaredcos_cap_v2`` :math:`\bar\alpha = f(s)/f(0)`, :math:`f(s) = \cos^2(\tfrac\pi2 (s + 0.008)/1.008)`,
  which the discrete product equals exactly wherever the 0.999 cap on beta is inactive;
* ``continuous: interpolated`` — the monotone (PCHIP) interpolation of :math:`m_k = \sqrt{\bar\alpha_k}`
  through (0, 1) and every :math:`(s_k, m_k)`: exact at every timestep, and m stays decreasing, so T ≥ 0;
  needed for ``trained_betas`` and ``rescale_betas_zero_snr`` (whose last :math:`\bar\alpha` is 0: m = 0 at
  s = 1, as for cosine and cond-OT);
* ``auto`` (the default): the closed form where there is one, else the interpolation.

The difference between the continuous :math:`\bar\alpha(s_k)` and the discrete :math:`\bar\alpha_k`, over the
timesteps, is recorded as ``discrete_error`` (largest :math:`|\sqrt{\bar\alpha(s_k)} - \sqrt{\bar\alpha_k}|`,
which is what moves the particles). Measured (tests/test_diffusers.py, against diffusers' DDPMScheduler): for
DDPM's linear betas 1e-4 → 0.02 the closed form is off by at most 9.9e-4 in m over 1000 steps and 1.6e-3
over 500 (mostly the −Σβ²/2 by which :math:`\sum\log(1-\beta)` differs from −Σβ); for Stable Diffusion's
``scaled_linear`` 0.00085 → 0.012 by 8.5e-4; for ``squaredcos_cap_v2`` by 6e-16 except at the last
timestep, 4.9e-5, where the 0.999 cap on beta acts; the interpolation is exact at the timesteps.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from stochthermo import ScenarioError, Schedule, hookimpl

from ._scheduler_config import load_scheduler_config

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
CONTINUOUS = ("auto", "closed_form", "interpolated")
#: the scheduler classes whose training noise is the DDPM betas (the samplers differ, the forward process not)
SCHEDULER_CLASSES = ("DDPMScheduler", "DDIMScheduler", "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler",
                     "PNDMScheduler", "DPMSolverMultistepScheduler", "HeunDiscreteScheduler", "LMSDiscreteScheduler",
                     "UniPCMultistepScheduler", "DEISMultistepScheduler")
#: the keys of a scheduler config that fix the forward process
CONFIG_KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas",
               "rescale_betas_zero_snr")
COSINE_OFFSET, BETA_CAP = 0.008, 0.999


class Diffusers(Schedule):
    """The forward process of a diffusers noise scheduler (module docstring): from ``path`` (a pipeline or
    scheduler directory, or a ``scheduler_config.json``) or from the parameters given inline."""

    name = "diffusers"

    def __init__(self, path: Path | None = None, num_train_timesteps: int = 1000, beta_start: float = 1e-4,
                 beta_end: float = 0.02, beta_schedule: str = "linear", trained_betas: list[float] | None = None,
                 rescale_betas_zero_snr: bool = False, continuous: str = "auto"):
        config = {"num_train_timesteps": num_train_timesteps, "beta_start": beta_start, "beta_end": beta_end,
                  "beta_schedule": beta_schedule, "trained_betas": trained_betas,
                  "rescale_betas_zero_snr": rescale_betas_zero_snr}
        if path is not None:
            config.update(read_scheduler_config(path))
        if continuous not in CONTINUOUS:
            raise ScenarioError(f"must be one of {', '.join(CONTINUOUS)}, got '{continuous}'", key="continuous")
        self.config = config
        self.steps = _positive_int(config["num_train_timesteps"], "num_train_timesteps")
        self.alphas_cumprod = discrete_alphas_cumprod(config)
        closed = config["beta_schedule"] in BETA_SCHEDULES and not config["trained_betas"] \
            and not config["rescale_betas_zero_snr"]
        if continuous == "closed_form" and not closed:
            raise ScenarioError("no closed-form continuous limit for trained or rescaled betas: use interpolated "
                                "or auto", key="continuous")
        self.continuous = "closed_form" if continuous == "auto" and closed else (
            "interpolated" if continuous == "auto" else continuous)
        #: breakpoints and cubic coefficients (4, intervals) of the monotone interpolation of m, or None
        self._interpolant: tuple[torch.Tensor, torch.Tensor] | None = None
        if self.continuous == "interpolated":
            from scipy.interpolate import PchipInterpolator  # imported on use

            grid = np.concatenate([[0.0], np.arange(1, self.steps + 1) / self.steps])
            pchip = PchipInterpolator(grid, np.sqrt(np.concatenate([[1.0], self.alphas_cumprod])))
            self._interpolant = (torch.from_numpy(pchip.x), torch.from_numpy(pchip.c))
        timesteps = torch.arange(1, self.steps + 1, dtype=torch.float64) / self.steps
        #: largest |m(s_k) − sqrt(ᾱ_k)| over the timesteps
        self.discrete_error = float((self.m(timesteps) - torch.from_numpy(np.sqrt(self.alphas_cumprod))).abs().max())

    # ---- the continuous ᾱ(s) ---------------------------------------------------------------------
    def _closed_form(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """m, ∂_s m and σ² = 1 − m² of the closed forms, σ² without cancellation near s = 0."""
        c, n = self.config, self.steps
        if c["beta_schedule"] == "squaredcos_cap_v2":
            angle = 0.5 * math.pi * (s + COSINE_OFFSET) / (1 + COSINE_OFFSET)
            start = 0.5 * math.pi * COSINE_OFFSET / (1 + COSINE_OFFSET)
            m = torch.cos(angle) / math.cos(start)
            dm = -0.5 * math.pi / (1 + COSINE_OFFSET) * torch.sin(angle) / math.cos(start)
            # 1 − cos²a / cos²a₀ = sin(a − a₀) sin(a + a₀) / cos²a₀
            return m, dm, torch.sin(angle - start) * torch.sin(angle + start) / math.cos(start) ** 2
        if c["beta_schedule"] == "linear":
            low, high = n * c["beta_start"], n * c["beta_end"]
            integral, beta = low * s + 0.5 * (high - low) * s**2, low + (high - low) * s
        else:  # scaled_linear: β(s) = N (√β_start + s (√β_end − √β_start))²
            root_start, slope = math.sqrt(c["beta_start"]), math.sqrt(c["beta_end"]) - math.sqrt(c["beta_start"])
            beta = n * (root_start + slope * s) ** 2
            integral = (n * ((root_start + slope * s) ** 3 - root_start**3) / (3 * slope) if slope
                        else n * root_start**2 * s)
        m = torch.exp(-0.5 * integral)
        return m, -0.5 * beta * m, -torch.expm1(-integral)

    def _interpolated(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The piecewise cubic m(s) and its slope, in torch (differentiable, on s's device)."""
        breaks, coefficients = (v.to(s) for v in self._interpolant)
        index = (torch.searchsorted(breaks, s.detach().contiguous(), right=True) - 1).clamp(0, len(breaks) - 2)
        h = s - breaks[index]
        c3, c2, c1, c0 = (coefficients[k][index] for k in range(4))
        return ((c3 * h + c2) * h + c1) * h + c0, (3 * c3 * h + 2 * c2) * h + c1

    def m(self, s):
        if self._interpolant is None:
            return self._closed_form(s)[0]
        return self._interpolated(s)[0].clamp(0.0, 1.0)

    def dm(self, s):
        if self._interpolant is None:
            return self._closed_form(s)[1]
        return self._interpolated(s)[1]

    def sigma(self, s):
        return torch.sqrt(self._sigma2(s).clamp(min=0.0))

    def _sigma2(self, s):
        if self._interpolant is None:
            return self._closed_form(s)[2]
        return 1 - self.m(s) ** 2

    def dsigma2(self, s):
        return -2 * self.m(s) * self.dm(s)

    def dsigma(self, s):
        return self.dsigma2(s) / (2 * self.sigma(s))


def read_scheduler_config(path: Path) -> dict:
    """The forward-process keys of a diffusers scheduler config: ``path`` is a ``scheduler_config.json``, a
    scheduler directory holding one, or a pipeline directory (``model_index.json``) with a ``scheduler/``
    folder; a :class:`ScenarioError` naming the path and what is missing otherwise."""
    found, config = load_scheduler_config(path)
    cls = config.get("_class_name")
    if cls is not None and cls not in SCHEDULER_CLASSES:
        hint = " (an EDM scheduler: use the schedule {name: edm, path: ...})" if cls.startswith("EDM") else ""
        raise ScenarioError(f"{found}: scheduler class '{cls}' is not a DDPM-betas scheduler (one of "
                            f"{', '.join(SCHEDULER_CLASSES)}){hint}", key="path")
    if "num_train_timesteps" not in config or ("trained_betas" not in config and "beta_schedule" not in config):
        raise ScenarioError(f"{found}: the config lacks num_train_timesteps or beta_schedule/trained_betas",
                            key="path")
    return {key: config[key] for key in CONFIG_KEYS if key in config}


def discrete_alphas_cumprod(config: dict) -> np.ndarray:
    """ᾱ_k, k = 0 … N − 1, from a scheduler config, in float64 (diffusers' own recipes, written anew)."""
    n = config["num_train_timesteps"]
    if config.get("trained_betas"):
        betas = np.asarray(config["trained_betas"], dtype=np.float64)
        if betas.shape != (n,):
            raise ScenarioError(f"{len(betas)} trained betas for num_train_timesteps = {n}", key="trained_betas")
    else:
        schedule, start, end = config["beta_schedule"], config["beta_start"], config["beta_end"]
        if schedule not in BETA_SCHEDULES:
            raise ScenarioError(f"must be one of {', '.join(BETA_SCHEDULES)} (or give trained_betas), got "
                                f"'{schedule}'", key="beta_schedule")
        if schedule == "linear":
            betas = np.linspace(start, end, n)
        elif schedule == "scaled_linear":
            betas = np.linspace(math.sqrt(start), math.sqrt(end), n) ** 2
        else:
            f = np.cos(0.5 * np.pi * (np.arange(n + 1) / n + COSINE_OFFSET) / (1 + COSINE_OFFSET)) ** 2
            betas = np.minimum(1 - f[1:] / f[:-1], BETA_CAP)
    if not ((betas > 0).all() and (betas < 1).all()):
        raise ScenarioError("every beta must lie in (0, 1)", key="beta_schedule")
    alphas_cumprod = np.cumprod(1 - betas)
    if config.get("rescale_betas_zero_snr"):  # shift and scale sqrt(ᾱ) so that the last is 0, the first kept
        root = np.sqrt(alphas_cumprod)
        first, last = root[0], root[-1]
        root = (root - last) * first / (first - last)
        alphas_cumprod = root**2
    return alphas_cumprod


def _positive_int(value, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ScenarioError(f"must be an integer >= 2, got {value!r}", key=key)
    return value


@hookimpl
def stochthermo_register_schedules():
    return [Diffusers]
