r"""The scheduled forward process: linear force from a schedule (paper Eqs. (16), (21)-(24)).

:math:`x_t = m_t y + \sigma_t\varepsilon` is the Ornstein–Uhlenbeck-type process with force
:math:`f_t(x) = (\dot m_t/m_t)\,x` and temperature :math:`T_t = \sigma_t\dot\sigma_t - \sigma_t^2\dot m_t/m_t`.
Both diverge at :math:`m_t = 0` (s → 1 for cosine and cond-OT) while the mean local velocity stays finite,
so the velocity is computed from the posterior form (docs/theory.md §1): for a Gaussian mixture
:math:`q = \sum_k w_k\mathcal N(\mu_k, S_k)`,

.. math:: \nu_t(x) = \sum_k r_k(x)\Big[\dot m\,\mu_k + \tfrac12\dot V_k V_k^{-1}(x - m\mu_k)\Big], \quad
   V_k = m^2 S_k + \sigma^2 I, \quad r_k \propto w_k\mathcal N(x; m\mu_k, V_k),

regular at t = 0 when :math:`S_k \succ 0`; for empirical data
:math:`\nu_t = \dot m\,\bar y + (\dot\sigma/\sigma)(x - m\bar y)` with the softmax posterior mean
:math:`\bar y`. Both are :class:`~.linear.LinearProcess` with :math:`M_t = m_t I`, :math:`v_t = \sigma_t^2`.
The marginal :math:`P_t = \sum_k w_k \mathcal N(m\mu_k, V_k)` is known in closed form (Eq. (17)). The force
is a gradient (A_t is a multiple of I), so ν_t is a gradient field: the process is conservative.
"""

from __future__ import annotations

import math

import torch

from stochthermo import ScenarioError, Schedule, hookimpl
from stochthermo.roles import schedule_problem

from .linear import ConditionalMoments, LinearProcess


class Scheduled(LinearProcess):
    """Isotropic linear-force process x_t = m_t y + σ_t ε driven by ``schedule``; data: a Gaussian mixture
    (``gaussian``, ``gaussian_mixture``) or a point cloud (``swiss_roll``, ``empirical``, ...)."""

    name = "scheduled"

    def __init__(self, *, data, prior, tau, schedule: Schedule):
        super().__init__(data=data, prior=prior, tau=tau)
        self.schedule = schedule
        problem = schedule_problem(schedule)
        if problem:
            raise ScenarioError(problem, key="schedule")

    @property
    def conservative(self) -> bool:
        return True

    def moments(self, t):
        """a = m_t, θ = 0, v = σ_t² (Eq. (21))."""
        s, zero = self._scalar(t / self.tau), self._scalar(0.0)
        return ConditionalMoments(scale=self.schedule.m(s), angle=zero, variance=self.schedule.sigma(s) ** 2,
                                  dscale=self.schedule.dm(s) / self.tau, dangle=zero,
                                  dvariance=self.schedule.dsigma2(s) / self.tau)

    def initial_noise_speed(self):
        return float(self.schedule.dsigma(torch.zeros((), dtype=torch.float64))) / self.tau

    def temperature(self, t):
        return self.schedule.temperature(t / self.tau) / self.tau

    def kinetic_cost_bound(self) -> float:
        """Jensen's bound B = (1/τ)∫_0^1 (m'(s)² E|y|² + σ'(s)² n_d) ds on c_2 (Eqs. (93)-(95); capability
        KineticCostBound), by adaptive quadrature; ∞ where T_0 > 0 (σ'² ~ 1/s is not integrable)."""
        if math.isinf(self.initial_noise_speed()):
            return math.inf
        schedule, second_moment, dim = self.schedule, self.data.second_moment(), self.data.dim

        def integrand(s: float) -> float:
            point = torch.tensor([s], dtype=torch.float64)
            return float(schedule.dm(point)[0] ** 2 * second_moment + schedule.dsigma(point)[0] ** 2 * dim)

        import scipy.integrate  # imported on use: it costs 0.6 s at start-up

        value, _ = scipy.integrate.quad(integrand, 0.0, 1.0, epsabs=0.0, epsrel=1e-10, limit=200)
        return value / self.tau


@hookimpl
def stochthermo_register_processes():
    return [Scheduled]
