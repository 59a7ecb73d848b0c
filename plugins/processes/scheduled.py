r"""The scheduled forward process: linear force from a schedule (paper Eqs. (16), (21)-(24)).

:math:`x_t = m_t y + \sigma_t\varepsilon` is the Ornstein–Uhlenbeck-type process with force
:math:`f_t(x) = (\dot m_t/m_t)\,x` and temperature :math:`T_t = \sigma_t\dot\sigma_t - \sigma_t^2\dot m_t/m_t`.
Both diverge at :math:`m_t = 0` (s → 1 for cosine and cond-OT) while the mean local velocity stays finite,
so the velocity is computed from the posterior form (physics.md §1): for a Gaussian mixture
:math:`q = \sum_k w_k\mathcal N(\mu_k, S_k)`,

.. math:: \nu_t(x) = \sum_k r_k(x)\Big[\dot m\,\mu_k + \tfrac12\dot V_k V_k^{-1}(x - m\mu_k)\Big], \quad
   V_k = m^2 S_k + \sigma^2 I, \quad r_k \propto w_k\mathcal N(x; m\mu_k, V_k),

regular at t = 0 when :math:`S_k \succ 0`. The marginal :math:`P_t = \sum_k w_k \mathcal N(m\mu_k, V_k)`
is known in closed form (Eq. (17)). The force is a gradient (A_t is a multiple of I), so ν_t is a gradient
field: the process is conservative.
"""

from __future__ import annotations

import torch

from stochthermo import ForwardProcess, MixtureStructure, ScenarioError, Schedule, hookimpl

from ..distributions import GaussianMixture

#: resolution of the check that T_t >= 0 (Eq. (24)) on s in [0, 1]
TEMPERATURE_CHECK_POINTS = 2001


class Scheduled(ForwardProcess):
    """Isotropic linear-force process x_t = m_t y + σ_t ε driven by ``schedule``; data must be a Gaussian
    mixture (``gaussian``, ``gaussian_mixture``)."""

    name = "scheduled"

    def __init__(self, *, data, prior, tau, schedule: Schedule):
        super().__init__(data=data, prior=prior, tau=tau)
        self.schedule = schedule
        _check_schedule(schedule)
        structure = data.mixture()
        if structure is None:
            raise ScenarioError(f"the scheduled process needs a Gaussian-mixture data law (got '{data.name}')",
                                key="data")
        self.weights = structure.weights
        self.means = structure.means
        eigenvalues, eigenvectors = torch.linalg.eigh(structure.covariances)
        self.eigenvalues, self.eigenvectors = eigenvalues, eigenvectors  # S_k = Q diag(λ) Qᵀ
        #: every S_k a multiple of I: the same formula with scalar variances, no basis change
        scaled_identity = eigenvalues[:, :1, None] * torch.eye(data.dim, dtype=eigenvalues.dtype)
        self.isotropic = bool(torch.allclose(structure.covariances, scaled_identity))

    @property
    def conservative(self) -> bool:
        return True

    def _coefficients(self, t: float):
        s = torch.tensor(t / self.tau, dtype=self.means.dtype, device=self.means.device)
        m, sigma = self.schedule.m(s), self.schedule.sigma(s)
        dm, dsigma2 = self.schedule.dm(s) / self.tau, self.schedule.dsigma2(s) / self.tau
        return m, sigma**2, dm, dsigma2

    def marginal(self, t: float) -> GaussianMixture:
        """P_t = Σ_k w_k N(m_t μ_k, m_t² S_k + σ_t² I) (Eq. (17))."""
        m, sigma2, _, _ = self._coefficients(t)
        variances = m**2 * self.eigenvalues + sigma2
        covariances = (self.eigenvectors * variances[:, None, :]) @ self.eigenvectors.mT
        return GaussianMixture.from_structure(MixtureStructure(self.weights, m * self.means, covariances))

    def end_distribution(self):
        return self.marginal(self.tau)

    def temperature(self, t):
        return self.schedule.temperature(t / self.tau) / self.tau

    def velocity(self, t, x):
        if self.isotropic:
            return self._isotropic_velocity(t, x)
        m, sigma2, dm, dsigma2 = self._coefficients(t)
        variances = m**2 * self.eigenvalues + sigma2  # (K, d): eigenvalues of V_k
        rates = 0.5 * (2 * m * dm * self.eigenvalues + dsigma2) / variances  # eigenvalues of ½ V̇ V⁻¹
        centred = x[None, :, :] - m * self.means[:, None, :]  # (K, n, d)
        rotated = centred @ self.eigenvectors  # coordinates in the eigenbasis of S_k
        log_resp = (-0.5 * (rotated**2 / variances[:, None, :]).sum(-1)
                    - 0.5 * torch.log(variances).sum(-1)[:, None] + torch.log(self.weights)[:, None])
        resp = torch.softmax(log_resp, dim=0)  # (K, n)
        component_velocity = dm * self.means[:, None, :] + (rotated * rates[:, None, :]) @ self.eigenvectors.mT
        return (resp[:, :, None] * component_velocity).sum(0)

    def _isotropic_velocity(self, t, x):
        m, sigma2, dm, dsigma2 = self._coefficients(t)
        variances = m**2 * self.eigenvalues[:, 0] + sigma2  # (K,): V_k = v_k I
        rates = 0.5 * (2 * m * dm * self.eigenvalues[:, 0] + dsigma2) / variances
        centres = m * self.means  # (K, d)
        squared = (x**2).sum(1)[None, :] - 2 * centres @ x.T + (centres**2).sum(1)[:, None]  # |x − mμ_k|²
        log_resp = -0.5 * squared / variances[:, None] - 0.5 * x.shape[1] * torch.log(variances)[:, None]
        resp = torch.softmax(log_resp + torch.log(self.weights)[:, None], dim=0)  # (K, n)
        # Σ_k r_k [ṁ μ_k + a_k (x − m μ_k)] = (Σ_k r_k a_k) x + Σ_k r_k (ṁ − m a_k) μ_k
        return (resp.T @ rates)[:, None] * x + resp.T @ ((dm - m * rates)[:, None] * self.means)


def _check_schedule(schedule: Schedule) -> None:
    """m_0 = 1, σ_0 = 0 and T ≥ 0 on [0, 1] (Eq. (24)), else a ScenarioError on the key 'schedule'."""
    s = torch.linspace(0, 1, TEMPERATURE_CHECK_POINTS, dtype=torch.float64)
    zero = s[:1]
    if abs(float(schedule.m(zero)) - 1) > 1e-12 or abs(float(schedule.sigma(zero))) > 1e-12:
        raise ScenarioError(f"schedule '{schedule.name}' must start at m = 1, sigma = 0", key="schedule")
    temperature = schedule.temperature(s)
    bad = torch.nonzero(temperature < -1e-12)
    if len(bad):
        at = float(s[bad[0, 0]])
        raise ScenarioError(f"schedule '{schedule.name}' has negative temperature T_t = "
                            f"{float(temperature[bad[0, 0]]):.3g}/tau at t/tau = {at:.4g}: sigma/m must not "
                            "decrease (Eq. (24))", key="schedule")


@hookimpl
def stochthermo_register_processes():
    return [Scheduled]
