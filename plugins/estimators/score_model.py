r"""Denoising score matching for linear-force processes: a velocity parameterised through a learned score.

The network :math:`\epsilon_\theta(t, x)` predicts the noise of :math:`x = M_t y + \sqrt{v_t}\,\varepsilon`
(:math:`y \sim q`, :math:`\varepsilon \sim \mathcal N(0, I)`), with the score
:math:`\hat s_t(x) = -\epsilon_\theta(t, x)/\sqrt{v_t}` (docs/theory.md §4, "for a score model δν = −T δs"), and
the reverse process follows

.. math:: \hat\nu_t(x) = f_t(x) - T_t\hat s_t(x) = (H_t + G_tJ)\,x + \frac{T_t}{\sqrt{v_t}}\,\epsilon_\theta(t, x),

:math:`H_t = \dot a_t/a_t` (the force's isotropic part), :math:`G_t = \dot\theta_t` (its rotation).
:math:`T_t/\sqrt{v_t} \to d\sqrt{v}/dt|_0` as t → 0 (``initial_noise_speed``); where that limit is
infinite (``vp_linear``: σ ~ √s) the score form is singular at t = 0 and :math:`T_t/\sqrt{v_t}` is taken at
the first positive table time. Two loss weightings of the same minimiser (:math:`E[\varepsilon\mid x] =
-\sqrt{v_t}\,\nabla\ln P_t`):

* ``weighting: noise`` (the DDPM/diffusers loss): :math:`E|\epsilon_\theta - \varepsilon|^2`, λ(t) = v_t in
  score units;
* ``weighting: velocity``: :math:`E|\hat\nu_t(x) - (f_t(x) + T_t\varepsilon/\sqrt{v_t})|^2`, λ(t) = T_t²:
  the loss is then the residual L of Eq. (100) plus an irreducible variance. For a scheduled process the
  target equals the flow-matching target :math:`\dot m_ty + \dot\sigma_t\varepsilon` identically, so this
  weighting differs from flow matching only in the parameterisation.

The score form needs a finite force and temperature on [0, τ]: the cosine and cond-OT schedules reach
:math:`m_\tau = 0`, where :math:`f_t = (\dot m/m)x` diverges and the score no longer determines ν (a score
model does not know :math:`E[y]` there); they are refused (use flow matching). Coefficients are tabulated
on 4097 times and linearly interpolated in training; the trained velocity is evaluated with the exact
coefficients at its time.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from stochthermo import ScenarioError
from stochthermo.numerics import DIVERGENCE

WEIGHTINGS = ("noise", "velocity")


def _turn(x: torch.Tensor) -> torch.Tensor:
    """J x for J = [[0, −1], [1, 0]] on rows (2-D)."""
    return torch.cat([-x[:, 1:], x[:, :1]], dim=1)


def score_coefficients(process, intervals: int) -> torch.Tensor:
    """The (intervals + 1, 6) table of :func:`score_row` on a uniform grid of [0, τ]."""
    grid = torch.linspace(0, process.tau, intervals + 1, dtype=torch.float64)
    return torch.stack([score_row(process, float(t), first=float(grid[1])) for t in grid])


def score_row(process, t: float, *, first: float) -> torch.Tensor:
    """(H, G, T/√v, a, θ, √v) at time t, float64; at v = 0 (t = 0) T/√v is its limit d√v/dt, or, where that
    is infinite, its value at ``first``. A ScenarioError (key ``objective``) where the force or temperature
    diverges."""
    mom = process.moments(t)
    scale, variance = float(mom.scale), float(mom.variance)
    temperature = float(process.temperature(torch.tensor(t, dtype=torch.float64)))
    confinement = float(mom.dscale) / scale if scale != 0 else math.inf
    if not max(abs(confinement), temperature) * process.tau < DIVERGENCE:
        raise ScenarioError(
            f"score matching needs a finite force and temperature on [0, tau]; '{process.name}' has "
            f"H_t = {confinement:.3g}, T_t = {temperature:.3g} at t = {t:.4g} (m_t -> 0: f_t "
            "diverges and the score does not determine the velocity): use objective: flow_matching",
            key="objective")
    if variance > 0:
        gain = temperature / math.sqrt(variance)
    else:
        limit = process.initial_noise_speed()
        gain = limit if math.isfinite(limit) else float(score_row(process, first, first=first)[2])
    return torch.tensor([confinement, float(mom.dangle), gain, scale, float(mom.angle), math.sqrt(max(variance, 0))],
                        dtype=torch.float64)


class ScoreVelocity(nn.Module):
    r"""ν̂ = (H + GJ)x + (T/√v) ε_θ(t, x) around a noise-prediction network ``net``, with the coefficients
    of :func:`score_coefficients`; ``forward`` returns the quantity the chosen weighting regresses (ε_θ, or
    ν̂), :meth:`velocity` the velocity."""

    def __init__(self, net: nn.Module, table: torch.Tensor, *, tau: float, weighting: str):
        super().__init__()
        self.net, self.weighting, self.tau = net, weighting, tau
        self.register_buffer("table", table)
        self.step = tau / (len(table) - 1)

    def coefficients(self, t: torch.Tensor) -> torch.Tensor:
        """(n, 6) rows (H, G, T/√v, a, θ, √v) at the times t, linearly interpolated."""
        position = t / self.step
        index = position.floor().clamp(0, len(self.table) - 2).long()
        fraction = (position - index)[:, None]
        table = self.table.to(t.dtype)
        return table[index] * (1 - fraction) + table[index + 1] * fraction

    def _force(self, coefficients: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        force = coefficients[:, :1] * x
        return force + coefficients[:, 1:2] * _turn(x) if x.shape[1] == 2 else force

    def velocity(self, t: torch.Tensor, x: torch.Tensor, coefficients: torch.Tensor | None = None) -> torch.Tensor:
        """ν̂ at times t, with the interpolated coefficients or the given (n, 6) ones (exact ones at evaluation)."""
        coefficients = self.coefficients(t) if coefficients is None else coefficients
        return self._force(coefficients, x) + coefficients[:, 2:3] * self.net(t, x)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.net(t, x) if self.weighting == "noise" else self.velocity(t, x)

    def fokker_planck_residual(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        r"""The score Fokker–Planck residual of the model's score ŝ = −ε_θ/√v at (t, x), scaled by
        :math:`v_t^{3/2}`: :math:`v^{3/2}(\partial_t\hat s - \nabla[T(\nabla\cdot\hat s + |\hat s|^2) - f\cdot\hat s
        - \nabla\cdot f])`, (n, d), differentiable in the network's parameters (exact autograd divergence).
        ∂_t ŝ = −∂_tε_θ/√v + ε_θ ∂_t√v/v, with ∂_tε_θ by autograd and ∂_t√v = H√v + T/√v exactly (v̇ = 2Hv + 2T
        for these processes; differentiating the interpolated table instead would leave an O(step) error).
        The scaling makes it O(1) as v → 0: for Gaussian data and ŝ = λs it is 2|λ(1 − λ)|T (docs/theory.md
        §8)."""
        t = t.detach().requires_grad_(True)
        x = x.detach().requires_grad_(True)
        coefficients = self.coefficients(t.detach())
        std, gain = coefficients[:, 5:6], coefficients[:, 2:3]
        temperature = (gain * std)[:, 0]
        noise = self.net(t, x)
        score = -noise / std
        dim = x.shape[1]
        noise_rate = torch.stack([torch.autograd.grad(noise[:, i].sum(), t, create_graph=True)[0]
                                  for i in range(dim)], dim=1)
        time_derivative = -noise_rate / std + noise * (coefficients[:, :1] * std + gain) / std**2
        divergence = sum(torch.autograd.grad(score[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(dim))
        force = self._force(coefficients, x)
        bracket = (temperature * (divergence + (score**2).sum(1)) - (force * score).sum(1)
                   - dim * coefficients[:, 0])
        gradient = torch.autograd.grad(bracket.sum(), x, create_graph=True)[0]
        return (time_derivative - gradient) * std**3

    def sampler(self, data, batch: int):
        """Batches (t, x, target): y ~ q, ε ~ N(0, I), x = M_t y + √v_t ε; target ε (noise weighting) or
        f_t(x) + (T_t/√v_t) ε (velocity weighting)."""
        device, dtype = self.table.device, self.table.dtype

        def sample(generator):
            t = self.tau * torch.rand(batch, generator=generator, device=device, dtype=dtype)
            y = data.sample(batch, generator)
            coefficients = self.coefficients(t)
            scale, angle, std = coefficients[:, 3:4], coefficients[:, 4:5], coefficients[:, 5:6]
            mean = scale * y
            if y.shape[1] == 2:
                mean = torch.cos(angle) * mean + torch.sin(angle) * _turn(mean)
            noise = torch.randn(y.shape, generator=generator, device=device, dtype=dtype)
            x = mean + std * noise
            if self.weighting == "noise":
                return t, x, noise
            return t, x, self._force(coefficients, x) + coefficients[:, 2:3] * noise

        return sample
