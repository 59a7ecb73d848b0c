r"""The non-conservative linear process of the paper's Swiss-roll experiment (physics.md §5, Eq. (99)).

.. math:: f_t(x) = (H_t I + G_t J)\,x, \quad H_t = -h(1 - s) - T_t, \quad G_t = g\,\rho(s), \quad
   T_t = T_{fin}\,\kappa(s), \qquad s = t/\tau,

with the paper's choices :math:`\rho = 1 - s` (``rotation_profile: decaying``) and :math:`\kappa = s^2`
(``temperature_profile: quadratic``), h = 1.1, :math:`T_{fin}` = 0.5; ``constant`` rotation and ``linear`` or
``constant`` temperature are the other named choices. At t = τ (decaying rotation) the force is
:math:`-T_{fin}x`, whose stationary law is N(0, I), but the finite-time :math:`P_\tau` is not N(0, I): the
reverse process starts from the actual :math:`P_\tau`.

Conditional moments (B3)-(B4), :math:`\dot M = A M`, :math:`\dot\Sigma = A\Sigma + \Sigma A^\top + 2T I`,
:math:`M_0 = I`, :math:`\Sigma_0 = 0`. Since :math:`A + A^\top = 2H I`, Σ stays isotropic and
(``moments: closed_form``)

.. math:: M_t = e^{\int_0^t H}R\Big(\int_0^t G\Big), \qquad
   v_t = e^{2\int_0^t H}\int_0^t e^{-2\int_0^u H}\,2T_u\,du,

the last integral by 64-point Gauss–Legendre quadrature (the integrand is smooth). ``moments: ode``
integrates (B3)-(B4) instead (DOP853, rtol 1e-12); the two agree to ~1e-12 (tests).
The process is non-conservative whenever g ≠ 0: ν_t is then not a gradient field and
:math:`T\dot S_t > v_2(t)^2` (physics.md §2).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.integrate
import torch

from stochthermo import ScenarioError, hookimpl

from .linear import ConditionalMoments, LinearProcess

#: κ(s) and its integral K(s) = ∫_0^s κ
TEMPERATURE_PROFILES = {
    "quadratic": (lambda s: s**2, lambda s: s**3 / 3),
    "linear": (lambda s: s, lambda s: s**2 / 2),
    "constant": (lambda s: s**0, lambda s: s),
}
#: ρ(s) and its integral P(s) = ∫_0^s ρ
ROTATION_PROFILES = {
    "decaying": (lambda s: 1 - s, lambda s: s - s**2 / 2),
    "constant": (lambda s: s**0, lambda s: s),
}
MOMENT_METHODS = ("closed_form", "ode")
QUADRATURE_NODES = 64


class Rotational(LinearProcess):
    """Linear force (H_t I + G_t J) x with temperature T_t (physics.md §5); non-conservative when g ≠ 0."""

    name = "rotational"

    def __init__(self, *, data, prior, tau, h: float = 1.1, g: float = 0.0, temperature_final: float = 0.5,
                 temperature_profile: str = "quadratic", rotation_profile: str = "decaying",
                 moments: str = "closed_form"):
        super().__init__(data=data, prior=prior, tau=tau)
        for key, value, options in (("temperature_profile", temperature_profile, TEMPERATURE_PROFILES),
                                    ("rotation_profile", rotation_profile, ROTATION_PROFILES),
                                    ("moments", moments, MOMENT_METHODS)):
            if value not in options:
                raise ScenarioError(f"must be one of {', '.join(options)}, got '{value}'", key=key)
        if temperature_final <= 0:
            raise ScenarioError(f"must be > 0, got {temperature_final}", key="temperature_final")
        if g != 0 and data.dim != 2:
            raise ScenarioError(f"a rotation (g != 0) needs 2-D data, got {data.dim}-D", key="g")
        if moments == "ode" and data.dim != 2:
            raise ScenarioError(f"the moment equations are integrated for 2-D data, got {data.dim}-D", key="moments")
        self.h, self.g, self.temperature_final = h, g, temperature_final
        self.kappa, self.kappa_integral = TEMPERATURE_PROFILES[temperature_profile]
        self.rho, self.rho_integral = ROTATION_PROFILES[rotation_profile]
        self.temperature_profile = temperature_profile
        self.method = moments
        self._ode = _integrate_moment_equations(self) if moments == "ode" else None

    @property
    def conservative(self) -> bool:
        return self.g == 0

    def temperature(self, t):
        return self.temperature_final * self.kappa(t / self.tau)

    def confinement(self, t):
        """H_t = −h(1 − s) − T_t."""
        return -self.h * (1 - t / self.tau) - self.temperature(t)

    def rotation_rate(self, t):
        """G_t = g ρ(s)."""
        return self.g * self.rho(t / self.tau)

    def _log_scale(self, t):
        """∫_0^t H."""
        s = t / self.tau
        return -self.tau * (self.h * (s - s**2 / 2) + self.temperature_final * self.kappa_integral(s))

    def moments(self, t):
        t_ = self._scalar(t)
        if self._ode is not None:
            scale, angle, variance = (self._scalar(float(v)) for v in _ode_moments(self._ode(t)))
        else:
            scale = torch.exp(self._log_scale(t_))
            angle = self.g * self.tau * self.rho_integral(t_ / self.tau)
            variance = self._closed_form_variance(t_)
        confinement, temperature = self.confinement(t_), self.temperature(t_)
        return ConditionalMoments(scale=scale, angle=angle, variance=variance, dscale=confinement * scale,
                                  dangle=self.rotation_rate(t_),
                                  dvariance=2 * confinement * variance + 2 * temperature)

    def _closed_form_variance(self, t):
        nodes, weights = (torch.from_numpy(a).to(t) for a in np.polynomial.legendre.leggauss(QUADRATURE_NODES))
        u = 0.5 * t * (nodes + 1)
        integrand = torch.exp(2 * (self._log_scale(t) - self._log_scale(u))) * 2 * self.temperature(u)
        return 0.5 * t * (weights * integrand).sum()

    def initial_noise_speed(self):
        r""":math:`\lim_{t\to0} d\sqrt{v_t}/dt` with :math:`v_t \approx 2T_{fin}\tau K(s)`: 0 for quadratic,
        :math:`\sqrt{T_{fin}/\tau}` for linear, ∞ for constant temperature."""
        return {"quadratic": 0.0, "linear": math.sqrt(self.temperature_final / self.tau),
                "constant": math.inf}[self.temperature_profile]


def _integrate_moment_equations(process: Rotational):
    """Dense solution of Ṁ = A M, Σ̇ = AΣ + ΣAᵀ + 2T I on [0, τ] (Eqs. (B3)-(B4)), 2×2 blocks flattened."""
    generator = np.array([[0.0, -1.0], [1.0, 0.0]])

    def rhs(t, state):
        matrix, covariance = state[:4].reshape(2, 2), state[4:].reshape(2, 2)
        force = process.confinement(t) * np.eye(2) + process.rotation_rate(t) * generator
        dcov = force @ covariance + covariance @ force.T + 2 * process.temperature(t) * np.eye(2)
        return np.concatenate([(force @ matrix).ravel(), dcov.ravel()])

    initial = np.concatenate([np.eye(2).ravel(), np.zeros(4)])
    solution = scipy.integrate.solve_ivp(rhs, (0.0, process.tau), initial, method="DOP853", rtol=1e-12,
                                         atol=1e-14, dense_output=True)
    return solution.sol


def _ode_moments(state: np.ndarray) -> tuple[float, float, float]:
    """(a, θ, v) from M = a R(θ) and Σ = v I."""
    matrix, covariance = state[:4].reshape(2, 2), state[4:].reshape(2, 2)
    return (math.sqrt(np.linalg.det(matrix)), math.atan2(matrix[1, 0], matrix[0, 0]),
            0.5 * float(np.trace(covariance)))


@hookimpl
def stochthermo_register_processes():
    return [Rotational]
