r"""The non-conservative linear process of the paper's Swiss-roll experiment (docs/theory.md §5, Eq. (99)).

.. math:: f_t(x) = (H_t I + G_t J)\,x, \quad H_t = -h(1 - s) - T_t, \quad G_t = g\,\rho(s), \quad
   T_t = T_{fin}\,\kappa(s), \qquad s = t/\tau,

with the paper's choices :math:`\rho = 1 - s` (``rotation_profile: decaying``) and :math:`\kappa = s^2`
(``temperature_profile: quadratic``), h = 1.1, :math:`T_{fin}` = 0.5; ``constant`` rotation and ``linear`` or
``constant`` temperature are the other named choices. At t = τ (decaying rotation) the force is
:math:`-T_{fin}x`, whose stationary law is N(0, I), but the finite-time :math:`P_\tau` is not N(0, I): the
reverse process starts from the actual :math:`P_\tau`.

``h`` may also be a 2 × 2 matrix C (an anisotropic, possibly sheared confinement):
:math:`A_t = -(1 - s)\,C - T_tI + G_tJ`, a general :math:`A_t`; the process is conservative iff g = 0 and C
is symmetric (:math:`A_t` symmetric).

Conditional moments (B3)-(B4), :math:`\dot M = A M`, :math:`\dot\Sigma = A\Sigma + \Sigma A^\top + 2T I`,
:math:`M_0 = I`, :math:`\Sigma_0 = 0`. For a scalar h, :math:`A + A^\top = 2H I`, Σ stays isotropic and
(``moments: closed_form``)

.. math:: M_t = e^{\int_0^t H}R\Big(\int_0^t G\Big), \qquad
   v_t = e^{2\int_0^t H}\int_0^t e^{-2\int_0^u H}\,2T_u\,du,

the last integral by 64-point Gauss–Legendre quadrature (the integrand is smooth). ``moments: ode``
integrates (B3)-(B4) instead (DOP853, rtol 1e-12); the two agree to ~1e-12 (tests). For a matrix h the
moments are matrices, :math:`\Sigma_t` is anisotropic and only ``ode`` applies (``moments: auto``, the
default, picks the closed form where it exists).
The process is non-conservative whenever g ≠ 0: ν_t is then not a gradient field and
:math:`T\dot S_t > v_2(t)^2` (docs/theory.md §2).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from stochthermo import ScenarioError, hookimpl

from .linear import ConditionalMoments, LinearProcess, MatrixMoments

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
MOMENT_METHODS = ("auto", "closed_form", "ode")
ROTATION_GENERATOR = np.array([[0.0, -1.0], [1.0, 0.0]])
QUADRATURE_NODES = 64


class Rotational(LinearProcess):
    """Linear force (H_t I + G_t J) x with temperature T_t (docs/theory.md §5), or a general A_t with a 2 × 2
    confinement matrix h; non-conservative when g ≠ 0 or h is not symmetric."""

    name = "rotational"

    def __init__(self, *, data, prior, tau, h: float | list[list[float]] = 1.1, g: float = 0.0,
                 temperature_final: float = 0.5, temperature_profile: str = "quadratic",
                 rotation_profile: str = "decaying", moments: str = "auto"):
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
        #: the scalar h, or the confinement matrix C (2 × 2); the other is None
        self.h, self.confinement_matrix = _confinement(h, data.dim)
        if self.confinement_matrix is not None and moments == "closed_form":
            raise ScenarioError("the closed form needs an isotropic confinement (h a number); h is an anisotropic "
                                "matrix: use moments: ode (or auto)", key="moments")
        if moments == "ode" and data.dim != 2:
            raise ScenarioError(f"the moment equations are integrated for 2-D data, got {data.dim}-D", key="moments")
        self.g, self.temperature_final = g, temperature_final
        self.kappa, self.kappa_integral = TEMPERATURE_PROFILES[temperature_profile]
        self.rho, self.rho_integral = ROTATION_PROFILES[rotation_profile]
        self.temperature_profile = temperature_profile
        self.matrix_moments = self.confinement_matrix is not None
        if self.matrix_moments and self.cloud is not None and self.cloud.std == 0 and self.initial_noise_speed():
            raise ScenarioError("empirical data (kernel width 0) under an anisotropic force need temperature_profile "
                                "quadratic (zero initial noise speed), or give the data a kernel width",
                                key="temperature_profile")
        use_ode = moments == "ode" or self.matrix_moments
        self._ode = _integrate_moment_equations(self) if use_ode else None

    @property
    def conservative(self) -> bool:
        """A_t symmetric for every t: g = 0 and a symmetric confinement."""
        matrix = self.confinement_matrix
        return self.g == 0 and (matrix is None or bool(np.array_equal(matrix, matrix.T)))

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

    def force(self, t: float) -> np.ndarray:
        """A_t = H_t I + G_t J, or −(1 − s) C − T_t I + G_t J for a confinement matrix C (2-D)."""
        if self.confinement_matrix is None:
            isotropic = self.confinement(t) * np.eye(2)
        else:
            isotropic = -(1 - t / self.tau) * self.confinement_matrix - self.temperature(t) * np.eye(2)
        return isotropic + self.rotation_rate(t) * ROTATION_GENERATOR

    def moments(self, t):
        if self.matrix_moments:
            return self._matrix_moments(t)
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

    def _matrix_moments(self, t: float) -> MatrixMoments:
        matrix, covariance = _unpack(self._ode(t))
        force = self.force(t)
        dcovariance = force @ covariance + covariance @ force.T + 2 * self.temperature(t) * np.eye(2)
        like = self._scalar(0.0)
        return MatrixMoments(*(torch.from_numpy(v).to(like) for v in (matrix, force @ matrix, covariance,
                                                                        dcovariance, force)))

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


def _confinement(h: float | list[list[float]], dim: int) -> tuple[float | None, np.ndarray | None]:
    """(h, None) for a number or a multiple c·I of the identity (then h = c); (None, C) for another 2 × 2 C."""
    if isinstance(h, float):
        return h, None
    matrix = np.array(h, dtype=np.float64)
    if matrix.shape != (2, 2):
        raise ScenarioError(f"expected a number or a 2 x 2 matrix, got shape {matrix.shape}", key="h")
    if dim != 2:
        raise ScenarioError(f"a confinement matrix needs 2-D data, got {dim}-D", key="h")
    if np.array_equal(matrix, matrix[0, 0] * np.eye(2)):
        return float(matrix[0, 0]), None
    return None, matrix


def _integrate_moment_equations(process: Rotational):
    """Dense solution of Ṁ = A M, Σ̇ = AΣ + ΣAᵀ + 2T I on [0, τ] (Eqs. (B3)-(B4)), 2×2 blocks flattened."""

    def rhs(t, state):
        matrix, covariance = _unpack(state)
        force = process.force(t)
        dcov = force @ covariance + covariance @ force.T + 2 * process.temperature(t) * np.eye(2)
        return np.concatenate([(force @ matrix).ravel(), dcov.ravel()])

    initial = np.concatenate([np.eye(2).ravel(), np.zeros(4)])
    import scipy.integrate  # imported on use: it costs 0.6 s at start-up

    solution = scipy.integrate.solve_ivp(rhs, (0.0, process.tau), initial, method="DOP853", rtol=1e-12,
                                         atol=1e-14, dense_output=True)
    return solution.sol


def _unpack(state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, Σ) from the flattened ODE state; Σ symmetrised (the solver keeps it so to rounding)."""
    matrix, covariance = state[:4].reshape(2, 2), state[4:].reshape(2, 2)
    return matrix, 0.5 * (covariance + covariance.T)


def _ode_moments(state: np.ndarray) -> tuple[float, float, float]:
    """(a, θ, v) from M = a R(θ) and Σ = v I."""
    matrix, covariance = _unpack(state)
    return (math.sqrt(np.linalg.det(matrix)), math.atan2(matrix[1, 0], matrix[0, 0]),
            0.5 * float(np.trace(covariance)))


@hookimpl
def stochthermo_register_processes():
    return [Rotational]
