r"""Reverse-SDE samplers: the family of stochastic dynamics that shares the marginals of the probability flow
(docs/theory.md §8),

.. math:: dx = \big[\hat\nu_t(x) - \gamma^2 T_t \hat s_t(x)\big]\,dt + \sqrt{2\gamma^2 T_t}\,d\bar W_t,
   \qquad \hat s_t = (f_t - \hat\nu_t)/T_t,

integrated backwards in forward time (dt < 0, from τ towards 0). γ = 0 is the probability-flow ODE, γ = 1
the classical reverse SDE (drift f − 2T∇ln P in forward-time sign). The drift is evaluated as
:math:`\hat\nu + \gamma^2(\hat\nu - f)`, which never divides by T, so it stays finite where T_t = 0 (t = 0
for cosine and cond-OT). Where the temperature is not finite at a step's ends (T_tτ > 1e8 counts as
infinite; for a linear force that is where the force diverges, m_t = 0 at t = τ for cosine and cond-OT,
where P_τ = N(0, I) exactly), that step uses γ = 0: any time-dependent γ
keeps the marginals, so this changes the sampler, not its law. Below ``t_min`` (a time in [0, τ)) the
sampler also runs with γ = 0, and where the velocity is singular at t = 0 (empirical data) it ends with the
equation's denoising endpoint step (the posterior mean, frozen over the last interval).

* ``euler_maruyama``: weak order 1;
* ``stochastic_heun``: the predictor-corrector (Heun) scheme for additive noise — the noise coefficient
  depends on t only — weak order 2 (both orders measured in ``tests/test_stochastic.py``).

Both take ``steps_per_save`` steps between saved times and draw their normal increments from the seeded
generator the engine hands them, on the particles' device, so a run is reproducible on any device. The
saved velocity is the estimated probability-flow velocity ν̂ at the saved positions.
"""

from __future__ import annotations

import math

import torch

from stochthermo import ScenarioError, Solver, hookimpl
from stochthermo.numerics import DIVERGENCE, steps
from stochthermo.roles import ForceField


class ReverseSDE(Solver):
    """Base of the reverse-SDE samplers: noise level ``gamma`` ≥ 0, ``steps_per_save`` steps between saved
    times, and ``t_min`` below which the sampler is deterministic (γ = 0)."""

    stochastic = True

    def __init__(self, gamma: float = 1.0, steps_per_save: int = 1, t_min: float = 0.0):
        if gamma < 0:
            raise ScenarioError(f"must be >= 0, got {gamma}", key="gamma")
        if steps_per_save < 1:
            raise ScenarioError(f"must be >= 1, got {steps_per_save}", key="steps_per_save")
        if t_min < 0:
            raise ScenarioError(f"must be >= 0, got {t_min}", key="t_min")
        self.gamma, self.steps_per_save, self.t_min = gamma, steps_per_save, t_min

    def check(self, equation):
        process = equation.process
        if not isinstance(process, ForceField):
            name = "none" if process is None else process.name
            return f"process '{name}' declares no force field f_t(x): no stochastic dynamics shares its marginals"
        temperature = process.temperature(torch.linspace(0, process.tau, 65, dtype=torch.float64))
        if bool(torch.isnan(temperature).all()):
            return (f"process '{process.name}' defines no temperature (optimal transport): no stochastic dynamics "
                    "shares its marginals")
        if not self.t_min < process.tau:
            return f"t_min = {self.t_min:g} must lie in [0, tau = {process.tau:g})"
        return None

    def _coefficients(self, equation, t: float, x: torch.Tensor, gamma: float):
        """Drift ν̂ + γ²(ν̂ − f) and the estimated velocity ν̂ at (t, x)."""
        velocity = equation.velocity(t, x)
        if gamma == 0:
            return velocity, velocity
        return velocity + gamma**2 * (velocity - equation.process.force_field(t, x)), velocity

    def _noise(self, equation, t: float, u: float) -> tuple[float, float, float]:
        """γ on the step from t to u < t and the diffusion coefficients √(2γ²T) at t and u: γ = 0 below t_min or
        where the temperature is not finite (T τ > DIVERGENCE; for a linear force the force diverges exactly
        there, m_t = 0). A force that diverges elsewhere makes the drift non-finite, which the engine refuses."""
        if self.gamma == 0 or min(t, u) < self.t_min:
            return 0.0, 0.0, 0.0
        temperature = equation.process.temperature(torch.tensor([t, u], dtype=torch.float64)).tolist()
        if not max(abs(v) for v in temperature) * equation.process.tau < DIVERGENCE:  # NaN and ∞ included
            return 0.0, 0.0, 0.0
        g_start, g_end = (math.sqrt(2 * self.gamma**2 * max(v, 0.0)) for v in temperature)
        return self.gamma, g_start, g_end

    def _step(self, equation, t: float, u: float, x: torch.Tensor, noise) -> tuple[torch.Tensor, torch.Tensor]:
        """The position at u reached from x at t, and ν̂_t(x); ``noise()`` draws standard normal increments."""
        raise NotImplementedError

    def solve(self, equation, x0, save_times, *, generator=None, common_noise=None):
        if generator is None:
            raise ValueError(f"solver '{self.name}' draws random numbers: give it a seeded generator")
        period = common_noise or len(x0)
        if len(x0) % period:
            raise ValueError(f"common_noise = {period} does not divide the {len(x0)} particles")

        def noise():
            draw = torch.randn((period, x0.shape[1]), generator=generator, device=x0.device, dtype=x0.dtype)
            return draw if period == len(x0) else draw.repeat(len(x0) // period, 1)

        grid = save_times.tolist()
        singular_end = equation.endpoint is not None and grid[-1] == 0.0
        positions = torch.empty((len(grid),) + x0.shape, dtype=x0.dtype, device=x0.device)
        velocities = torch.empty_like(positions)
        x = x0
        last = len(grid) - 1
        progress = steps("SDE flow", last)
        for i in range(last):
            positions[i] = x
            if singular_end and i == last - 1:
                velocities[i] = equation.velocity(grid[i], x)
                positions[last], velocities[last] = equation.endpoint(x, grid[i])
                return positions, velocities
            h = (grid[i + 1] - grid[i]) / self.steps_per_save
            for j in range(self.steps_per_save):
                t = grid[i] + j * h
                x, velocity = self._step(equation, t, t + h, x, noise)
                if j == 0:
                    velocities[i] = velocity
            progress.advance()
        positions[last], velocities[last] = x, equation.velocity(grid[last], x)
        return positions, velocities


class EulerMaruyama(ReverseSDE):
    """x(u) = x(t) + (u − t)·b(t, x) + g(t)·√|u − t|·ξ, weak order 1."""

    name = "euler_maruyama"

    def _step(self, equation, t, u, x, noise):
        gamma, g_start, _ = self._noise(equation, t, u)
        drift, velocity = self._coefficients(equation, t, x, gamma)
        moved = x + (u - t) * drift
        if gamma:
            moved = moved + g_start * math.sqrt(abs(u - t)) * noise()
        return moved, velocity


class StochasticHeun(ReverseSDE):
    """Predictor x̃ = x + h b(t, x) + g(t)√|h| ξ; corrector x + h(b(t, x) + b(u, x̃))/2 + (g(t) + g(u))/2 √|h| ξ
    with the same ξ; for additive noise weak order 2."""

    name = "stochastic_heun"

    def _step(self, equation, t, u, x, noise):
        gamma, g_start, g_end = self._noise(equation, t, u)
        h = u - t
        drift, velocity = self._coefficients(equation, t, x, gamma)
        increment = noise() * math.sqrt(abs(h)) if gamma else 0.0
        predicted = x + h * drift + g_start * increment
        drift_end, _ = self._coefficients(equation, u, predicted, gamma)
        return x + 0.5 * h * (drift + drift_end) + 0.5 * (g_start + g_end) * increment, velocity


@hookimpl
def stochthermo_register_solvers():
    return [EulerMaruyama, StochasticHeun]
