r"""Linear-force processes with isotropic noise: the shared exact velocity of ``scheduled`` and ``rotational``.

For a force :math:`f_t(x) = A_t x` with :math:`A_t = H_t I + G_t J` (:math:`G_t J` only in 2-D; J the
rotation generator) the conditional law given a data point y is (physics.md §1, (16)-(17), §5)

.. math:: x_t \mid y \sim \mathcal N(M_t y,\; v_t I), \qquad M_t = a_t R(\theta_t), \quad
   \dot a = H a,\ \dot\theta = G,\ \dot v = 2Hv + 2T, \qquad a_0 = 1,\ \theta_0 = 0,\ v_0 = 0,

which a subclass supplies as :class:`ConditionalMoments`. For data :math:`q = \sum_k w_k\mathcal N(\mu_k, S_k)`
(a Gaussian mixture, or a point cloud: equal weights, :math:`S_k = s^2 I`) the marginal is the mixture of
:math:`\mathcal N(M\mu_k, V_k)`, :math:`V_k = M S_k M^\top + vI`, and the mean local velocity
:math:`\nu = f - T\nabla\ln P_t` is, with responsibilities :math:`r_k(x)`,

.. math:: \nu_t(x) = \sum_k r_k(x)\Big[\dot M\mu_k + \big(\tfrac12\dot V_kV_k^{-1}
   + \tfrac12(B - V_kB^\top V_k^{-1})\big)(x - M\mu_k)\Big], \qquad B = G_t J,

written without :math:`H_t` and :math:`T_t`, which diverge at the end of the cosine and cond-OT schedules
while ν stays finite. For isotropic :math:`V_k = V_k I` the bracket is
:math:`\dot M\mu_k + (\dot V_k/2V_k)(x - M\mu_k) + G J (x - M\mu_k)`, physics.md §5's form; dropping the
:math:`GJ` term would leave :math:`P_t` unchanged but change :math:`T\dot S` and the reverse flow. The
responsibilities and posterior averages of the isotropic case are one chunked softmax
(:func:`stochthermo.posterior.posterior_average`).

Empirical data (kernel width 0) makes the velocity 0/0 at t = 0 (:math:`v_0 = 0`). The reverse flow then
takes its last step, from the first grid time :math:`t_1` to 0, with the posterior frozen at :math:`t_1`:
:math:`x - M\bar y` obeys :math:`\dot r = (\dot v/2v + GJ)r`, so :math:`x_0 = \bar y` and
:math:`\nu_0 = \dot M_0\bar y + \dot{\sqrt v}_0\,R(-\theta_{t_1}) r_{t_1}/\sqrt{v_{t_1}}`; for the cond-OT
schedule this gives :math:`v_2^2(0^+) = \dot m_0^2E|y|^2 + \dot\sigma_0^2 n_d` (physics.md §1).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass

import torch

from stochthermo import ForwardProcess, MixtureStructure, ScenarioError
from stochthermo.gaussian import component_log_densities
from stochthermo.integrate import rk4
from stochthermo.posterior import posterior_average

from ..distributions import GaussianMixture
from ..point_clouds import PointCloud


@dataclass(frozen=True)
class ConditionalMoments:
    """:math:`M_t = a R(\\theta)`, :math:`v_t` and their time derivatives (scalar tensors); ``dangle`` = G_t."""

    scale: torch.Tensor
    angle: torch.Tensor
    variance: torch.Tensor
    dscale: torch.Tensor
    dangle: torch.Tensor
    dvariance: torch.Tensor


@dataclass(frozen=True)
class LinearMap:
    """The map x ↦ L x on rows, x Lᵀ, for L = ``value`` when it is a (d, d) matrix (2-D, with rotation) or
    L = ``value`` · I when it is a scalar tensor (every other dimension: no d × d matrix is ever formed, which
    matters at n_d = 3072)."""

    value: torch.Tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.value.mT if self.value.ndim == 2 else self.value * x

    def dense(self, dim: int) -> torch.Tensor:
        """L as a (d, d) matrix."""
        if self.value.ndim == 2:
            return self.value
        return self.value * torch.eye(dim, dtype=self.value.dtype, device=self.value.device)


def rotation(angle: torch.Tensor, dim: int) -> LinearMap:
    """R(θ) = exp(θJ) in 2-D; the identity in other dimensions (where θ must be 0)."""
    if dim != 2:
        return LinearMap(torch.ones_like(angle))
    c, s = torch.cos(angle), torch.sin(angle)
    return LinearMap(torch.stack([torch.stack([c, -s]), torch.stack([s, c])]))


def linear_maps(mom: ConditionalMoments, dim: int) -> tuple[LinearMap, LinearMap, LinearMap]:
    """M_t = a R(θ), Ṁ_t = ȧ R + a θ̇ J R and the skew part B = G J = θ̇ J of the force (J only in 2-D)."""
    if dim != 2:
        return LinearMap(mom.scale), LinearMap(mom.dscale), LinearMap(torch.zeros_like(mom.scale))
    rot = rotation(mom.angle, dim).value
    generator = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=rot.dtype, device=rot.device)
    return (LinearMap(mom.scale * rot), LinearMap(mom.dscale * rot + mom.scale * mom.dangle * generator @ rot),
            LinearMap(mom.dangle * generator))


class LinearProcess(ForwardProcess):
    """Base of the linear-force processes; a subclass supplies :meth:`moments`, :meth:`temperature`,
    :meth:`initial_noise_speed` and ``conservative``. Data: a Gaussian mixture or a point cloud."""

    def __init__(self, *, data, prior, tau):
        super().__init__(data=data, prior=prior, tau=tau)
        self.cloud = data.point_cloud()
        self.structure = data.mixture() if self.cloud is None else None
        if self.cloud is None and self.structure is None:
            raise ScenarioError(f"'{data.name}' is neither a Gaussian mixture nor a point cloud: the exact velocity "
                                "is not known", key="data")
        if self.structure is not None:
            covariances = self.structure.covariances
            scaled_identity = covariances[:, :1, :1] * torch.eye(data.dim, dtype=covariances.dtype)
            #: every S_k a multiple of I: the chunked softmax path
            self.isotropic = bool(torch.allclose(covariances, scaled_identity))

    def _scalar(self, value: float) -> torch.Tensor:
        """A scalar tensor on the data's device and dtype."""
        like = self.cloud.points if self.cloud is not None else self.structure.means
        return torch.tensor(value, dtype=like.dtype, device=like.device)

    @abstractmethod
    def moments(self, t: float) -> ConditionalMoments:
        """The conditional moments at forward time t."""
        raise NotImplementedError

    @abstractmethod
    def initial_noise_speed(self) -> float:
        r""":math:`\lim_{t\to0}\, d\sqrt{v_t}/dt` (may be ∞), the speed of the noise coordinate at t = 0."""
        raise NotImplementedError

    # ---- marginals ---------------------------------------------------------------------------------
    def _matrices(self, t: float) -> tuple[ConditionalMoments, LinearMap, LinearMap, LinearMap]:
        mom = self.moments(t)
        return (mom, *linear_maps(mom, self.data.dim))

    def marginal(self, t: float):
        """P_t: a point cloud N(M y_i, (a²s² + v) I), or a Gaussian mixture N(M μ_k, M S_k Mᵀ + v I); a single
        Gaussian N(0, v I) where M_t = 0."""
        mom, matrix, _, _ = self._matrices(t)
        dim = self.data.dim
        like = mom.scale
        if self.cloud is not None and float(mom.scale) != 0:
            width = torch.sqrt(mom.scale**2 * self.cloud.std**2 + mom.variance)
            return PointCloud.from_points(matrix(self.cloud.points), float(width))
        eye = torch.eye(dim, dtype=like.dtype, device=like.device)
        if float(mom.scale) == 0:
            one = torch.ones(1, dtype=like.dtype, device=like.device)
            return GaussianMixture.from_structure(MixtureStructure(one, torch.zeros(1, dim).to(like),
                                                                   (mom.variance * eye)[None]))
        s = self.structure
        dense = matrix.dense(dim)
        return GaussianMixture.from_structure(MixtureStructure(s.weights, matrix(s.means),
                                                               dense @ s.covariances @ dense.T + mom.variance * eye))

    def end_distribution(self):
        return self.marginal(self.tau)

    def sample_marginal(self, t, n, generator):
        """x = M_t y + sqrt(a²s² + v_t) ε for point clouds (only the drawn points are mapped); from the
        marginal mixture otherwise."""
        if self.cloud is None:
            return super().sample_marginal(t, n, generator)
        mom, matrix, _, _ = self._matrices(t)
        device = generator.device
        points = self.cloud.points.to(device)
        chosen = points[torch.randint(len(points), (n,), generator=generator, device=device)]
        width = torch.sqrt(mom.scale**2 * self.cloud.std**2 + mom.variance)
        return matrix(chosen) + width * torch.randn(chosen.shape, generator=generator, device=device,
                                                    dtype=chosen.dtype)

    # ---- velocity ----------------------------------------------------------------------------------
    def velocity(self, t, x):
        mom, matrix, dmatrix, skew = self._matrices(t)
        if self.cloud is not None:
            return self._cloud_velocity(mom, matrix, dmatrix, skew, x)
        if self.isotropic:
            return self._isotropic_velocity(mom, matrix, dmatrix, skew, x)
        return self._general_velocity(mom, matrix, dmatrix, skew, x)

    def velocity_and_log_density(self, t, x):
        if self.cloud is None:
            return super().velocity_and_log_density(t, x)
        return self._cloud_velocity(*self._matrices(t), x, with_density=True)

    def _cloud_velocity(self, mom, matrix, dmatrix, skew, x, *, with_density=False):
        points, std = self.cloud.points, self.cloud.std
        variance = mom.scale**2 * std**2 + mom.variance
        if float(variance) == 0:
            raise ValueError("the velocity of empirical data is 0/0 at t = 0; the flow handles that endpoint")
        rate = (2 * mom.scale * mom.dscale * std**2 + mom.dvariance) / (2 * variance)  # V̇/2V
        posterior = posterior_average(x, matrix(points), points, variance)  # ȳ and log P_t
        residual = x - matrix(posterior.mean)
        velocity = dmatrix(posterior.mean) + rate * residual + skew(residual)
        return (velocity, posterior.log_density) if with_density else velocity

    def _isotropic_velocity(self, mom, matrix, dmatrix, skew, x):
        s = self.structure
        component_variance = s.covariances[:, 0, 0]
        variances = mom.scale**2 * component_variance + mom.variance  # V_k
        rates = (2 * mom.scale * mom.dscale * component_variance + mom.dvariance) / (2 * variances)
        values = torch.cat([s.means, rates[:, None], rates[:, None] * s.means], dim=1)
        averages = posterior_average(x, matrix(s.means), values, variances, torch.log(s.weights)).mean
        dim = x.shape[1]
        mean, rate, rate_mean = averages[:, :dim], averages[:, dim:dim + 1], averages[:, dim + 1:]
        return dmatrix(mean) + rate * x - matrix(rate_mean) + skew(x - matrix(mean))

    def _general_velocity(self, mom, matrix, dmatrix, skew, x):
        s = self.structure
        dim = x.shape[1]
        matrix, dmatrix, skew = matrix.dense(dim), dmatrix.dense(dim), skew.dense(dim)
        eye = torch.eye(dim, dtype=x.dtype, device=x.device)
        centres = s.means @ matrix.T  # (K, d)
        covariances = matrix @ s.covariances @ matrix.T + mom.variance * eye  # V_k
        dcovariances = dmatrix @ s.covariances @ matrix.T
        dcovariances = dcovariances + dcovariances.mT + mom.dvariance * eye  # V̇_k
        # K_k = ½ V̇_k V_k⁻¹ + ½ (B − V_k Bᵀ V_k⁻¹), with V_k⁻¹ applied through a solve
        gains = 0.5 * torch.linalg.solve(covariances, (dcovariances - covariances @ skew.mT).mT).mT + 0.5 * skew
        log_resp = component_log_densities(x, centres, covariances) + torch.log(s.weights)
        resp = torch.softmax(log_resp, dim=1)  # (n, K)
        component_velocity = (s.means @ dmatrix.T)[:, None, :] + torch.einsum(
            "kij,knj->kni", gains, x[None, :, :] - centres[:, None, :])
        return torch.einsum("nk,kni->ni", resp, component_velocity)

    # ---- flow ------------------------------------------------------------------------------------
    def flow(self, x0, times):
        """RK4; for empirical data (kernel width 0) a reverse flow ending at t = 0 takes its last step with
        the posterior frozen (module docstring)."""
        atoms = self.cloud is not None and self.cloud.std == 0
        if not (atoms and float(times[-1]) == 0.0):
            return rk4(self.velocity, x0, times)
        if len(times) < 2 or float(times[-2]) <= 0:
            raise ValueError("empirical data: flows may end at t = 0 only, coming from t > 0")
        positions, velocities = rk4(self.velocity, x0, times[:-1])
        last_position, last_velocity = self._endpoint(positions[-1], float(times[-2]))
        return (torch.cat([positions, last_position[None]]), torch.cat([velocities, last_velocity[None]]))

    def _endpoint(self, x, t):
        """Position and velocity at t = 0 reached from x at time t with the posterior frozen."""
        noise_speed = self.initial_noise_speed()
        mom, matrix, _, _ = self._matrices(t)
        _, initial, initial_dmatrix, _ = self._matrices(0.0)
        points = self.cloud.points
        posterior = posterior_average(x, matrix(points), points, mom.variance).mean
        noise = rotation(-mom.angle, x.shape[1])(x - matrix(posterior)) / torch.sqrt(mom.variance)
        if math.isinf(noise_speed):
            raise ValueError("empirical data: the noise speed d sqrt(v)/dt diverges at t = 0 (T_0 > 0); the "
                             "velocity has no limit there: give the data a kernel width (smoothing/noise)")
        return initial(posterior), initial_dmatrix(posterior) + noise_speed * noise
