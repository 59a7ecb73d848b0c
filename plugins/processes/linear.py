r"""Linear-force processes: the shared exact velocity of ``scheduled`` and ``rotational``.

For a force :math:`f_t(x) = A_t x` with isotropic noise of temperature :math:`T_t`, the conditional law given a
data point y is :math:`x_t \mid y \sim \mathcal N(M_t y, \Sigma_t)` with the moment equations (paper (B3)-(B4))

.. math:: \dot M = A M, \qquad \dot\Sigma = A\Sigma + \Sigma A^\top + 2T I, \qquad M_0 = I,\ \Sigma_0 = 0 .

For :math:`A_t = H_t I + G_t J` (:math:`G_t J` only in 2-D; J the rotation generator) Σ stays isotropic:
:math:`M_t = a_t R(\theta_t)`, :math:`\Sigma_t = v_t I`, :math:`\dot a = H a,\ \dot\theta = G,\
\dot v = 2Hv + 2T` (docs/theory.md §1, (16)-(17), §5), which a subclass supplies as :class:`ConditionalMoments`;
for a general :math:`A_t` (an anisotropic confinement) it supplies the matrices as :class:`MatrixMoments`.
For data :math:`q = \sum_k w_k\mathcal N(\mu_k, S_k)` (a Gaussian mixture, or a point cloud: equal weights,
:math:`S_k = s^2 I`) the marginal is the mixture of :math:`\mathcal N(M\mu_k, V_k)`,
:math:`V_k = M S_k M^\top + \Sigma`, and the mean local velocity :math:`\nu = f - T\nabla\ln P_t` is, with
responsibilities :math:`r_k(x)`,

.. math:: \nu_t(x) = \sum_k r_k(x)\Big[\dot M\mu_k + K_k(x - M\mu_k)\Big], \qquad
   K_k = \tfrac12\dot V_kV_k^{-1} + \tfrac12(B - V_kB^\top V_k^{-1}),

(:math:`\dot V_k = AV_k + V_kA^\top + 2TI` gives :math:`K_k = A + TV_k^{-1}`), where B is the force A or any
part of it that differs from A by a multiple of I, which drops out: :math:`B = G_tJ` for the isotropic
family, so that ν is written without :math:`H_t` and :math:`T_t`, which diverge at the end of the cosine
and cond-OT schedules while ν stays finite. For isotropic :math:`V_k = V_k I` the bracket is
:math:`\dot M\mu_k + (\dot V_k/2V_k)(x - M\mu_k) + G J (x - M\mu_k)`, docs/theory.md §5's form; dropping the
:math:`GJ` term would leave :math:`P_t` unchanged but change :math:`T\dot S` and the reverse flow. The
responsibilities and posterior averages of isotropic kernels are one chunked softmax
(:func:`stochthermo.numerics.posterior_average`); a point cloud under an anisotropic force has one shared
kernel :math:`V = s^2MM^\top + \Sigma = LL^\top` and is whitened by :math:`L^{-1}` into that form.

Empirical data (kernel width 0) makes the velocity 0/0 at t = 0 (:math:`v_0 = 0`). The reverse flow then
takes its last step, from the first grid time :math:`t_1` to 0, with the posterior frozen at :math:`t_1`:
:math:`x - M\bar y` obeys :math:`\dot r = (\dot v/2v + GJ)r`, so :math:`x_0 = \bar y` and
:math:`\nu_0 = \dot M_0\bar y + \dot{\sqrt v}_0\,R(-\theta_{t_1}) r_{t_1}/\sqrt{v_{t_1}}`; for the cond-OT
schedule this gives :math:`v_2^2(0^+) = \dot m_0^2E|y|^2 + \dot\sigma_0^2 n_d` (docs/theory.md §1). (A
subclass with matrix moments must refuse atoms unless :math:`\dot{\sqrt v}_0 = 0`; the step is then the
same.)
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass

import torch

from stochthermo import ForwardProcess, MixtureStructure, ScenarioError
from stochthermo.measures import GaussianMixture, PointCloud
from stochthermo.numerics import (
    MovingMixture,
    PosteriorAverage,
    component_log_densities,
    posterior_average,
    quantile_flow,
    shared_kernel_average,
)


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
class MatrixMoments:
    """A general force A_t: M_t, Ṁ_t = A M, Σ_t, Σ̇_t = AΣ + ΣAᵀ + 2T I (Eqs. (B3)-(B4)) and A_t, (d, d) each."""

    matrix: torch.Tensor
    dmatrix: torch.Tensor
    covariance: torch.Tensor
    dcovariance: torch.Tensor
    force: torch.Tensor


@dataclass(frozen=True)
class LinearMap:
    """The map x ↦ L x on rows, x Lᵀ, for L = ``value`` when it is a (..., d, d) matrix or L = ``value`` · I
    when it is a scalar tensor (or a batch of them, (K,)): no d × d matrix is formed for the isotropic
    family outside 2-D, which matters at n_d = 3072."""

    value: torch.Tensor

    @property
    def is_matrix(self) -> bool:
        return self.value.ndim >= 2

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.value.mT if self.is_matrix else self.value * x

    def dense(self, dim: int) -> torch.Tensor:
        """L as a (d, d) matrix."""
        if self.is_matrix:
            return self.value
        return self.value * torch.eye(dim, dtype=self.value.dtype, device=self.value.device)


def rotation(angle: torch.Tensor, dim: int) -> LinearMap:
    """R(θ) = exp(θJ) in 2-D; the identity in other dimensions (where θ must be 0)."""
    if dim != 2:
        return LinearMap(torch.ones_like(angle))
    c, s = torch.cos(angle), torch.sin(angle)
    return LinearMap(torch.stack([torch.stack([c, -s]), torch.stack([s, c])]))


@dataclass(frozen=True)
class LinearState:
    """What the exact velocity needs at one time: M_t, Ṁ_t, Σ_t, Σ̇_t and the part B of the force that enters
    the gain (module docstring), as :class:`LinearMap`; ``moments`` as the process supplied them."""

    moments: ConditionalMoments | MatrixMoments
    matrix: LinearMap
    dmatrix: LinearMap
    covariance: LinearMap
    dcovariance: LinearMap
    skew: LinearMap

    @classmethod
    def of(cls, mom: ConditionalMoments | MatrixMoments, dim: int) -> LinearState:
        if isinstance(mom, MatrixMoments):
            return cls(mom, *(LinearMap(v) for v in (mom.matrix, mom.dmatrix, mom.covariance, mom.dcovariance,
                                                      mom.force)))
        covariance, dcovariance = LinearMap(mom.variance), LinearMap(mom.dvariance)
        if dim != 2:
            return cls(mom, LinearMap(mom.scale), LinearMap(mom.dscale), covariance, dcovariance,
                       LinearMap(torch.zeros_like(mom.scale)))
        rot = rotation(mom.angle, dim).value
        generator = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=rot.dtype, device=rot.device)
        return cls(mom, LinearMap(mom.scale * rot),
                   LinearMap(mom.dscale * rot + mom.scale * mom.dangle * generator @ rot), covariance, dcovariance,
                   LinearMap(mom.dangle * generator))

    def smoothed(self, width: torch.Tensor | float) -> tuple[LinearMap, LinearMap]:
        """V = s² M Mᵀ + Σ and V̇ for kernels N(0, s² I) of width² ``width`` (a scalar or (K,)); scalars
        (a²s² + v) for the isotropic family, matrices otherwise."""
        mom = self.moments
        if isinstance(mom, ConditionalMoments):
            return (LinearMap(mom.scale**2 * width + mom.variance),
                    LinearMap(2 * mom.scale * mom.dscale * width + mom.dvariance))
        width = torch.as_tensor(width, dtype=mom.matrix.dtype, device=mom.matrix.device)[..., None, None]
        spread = mom.dmatrix @ mom.matrix.mT
        return (LinearMap(width * (mom.matrix @ mom.matrix.mT) + mom.covariance),
                LinearMap(width * (spread + spread.mT) + mom.dcovariance))

    def gain(self, covariance: LinearMap, dcovariance: LinearMap) -> LinearMap:
        """K = ½V̇V⁻¹ + ½(B − VBᵀV⁻¹) (module docstring) for V = ``covariance`` (one or (K, ...) batched)."""
        skew = self.skew
        if not covariance.is_matrix:
            rate = dcovariance.value / (2 * covariance.value)
            if not skew.is_matrix:
                return LinearMap(rate)
            eye = torch.eye(skew.value.shape[-1], dtype=rate.dtype, device=rate.device)
            return LinearMap(rate[..., None, None] * eye + 0.5 * (skew.value - skew.value.mT))
        v, b = covariance.value, skew.dense(covariance.value.shape[-1])
        # ½(V̇ − VBᵀ)V⁻¹ through a solve (V symmetric)
        return LinearMap(0.5 * torch.linalg.solve(v, (dcovariance.value - v @ b.mT).mT).mT + 0.5 * b)


#: intervals of the moment table behind the conditional training target
TARGET_TABLE_INTERVALS = 4096


class LinearProcess(ForwardProcess):
    """Base of the linear-force processes; a subclass supplies :meth:`moments`, :meth:`temperature`,
    :meth:`initial_noise_speed` and ``conservative``. Data: a Gaussian mixture or a point cloud."""

    #: whether :meth:`moments` returns :class:`MatrixMoments` (a general A_t; Σ_t not a multiple of I)
    matrix_moments: bool = False

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
    def moments(self, t: float) -> ConditionalMoments | MatrixMoments:
        """The conditional moments at forward time t."""
        raise NotImplementedError

    @abstractmethod
    def initial_noise_speed(self) -> float:
        r""":math:`\lim_{t\to0}\, d\sqrt{v_t}/dt` (may be ∞), the speed of the noise coordinate at t = 0."""
        raise NotImplementedError

    # ---- marginals ---------------------------------------------------------------------------------
    def state(self, t: float) -> LinearState:
        """M_t, Ṁ_t, Σ_t, Σ̇_t and the gain's force part at time t."""
        return LinearState.of(self.moments(t), self.data.dim)

    def marginal(self, t: float):
        """P_t: a point cloud N(M y_i, V) (V = (a²s² + v) I, or s² M Mᵀ + Σ for a general force), or a Gaussian
        mixture N(M μ_k, M S_k Mᵀ + Σ); a single Gaussian N(0, v I) where M_t = 0."""
        state = self.state(t)
        dim = self.data.dim
        if self.cloud is not None and bool(state.matrix.value.any()):
            kernel, _ = state.smoothed(self.cloud.std**2)
            points = state.matrix(self.cloud.points)
            if kernel.is_matrix:
                return PointCloud.from_points(points, kernel=kernel.value, weights=self.cloud.weights)
            return PointCloud.from_points(points, float(torch.sqrt(kernel.value)), weights=self.cloud.weights)
        covariance = state.covariance.dense(dim)
        if not state.matrix.value.any():
            like = covariance
            return GaussianMixture.from_structure(MixtureStructure(
                torch.ones(1, dtype=like.dtype, device=like.device), torch.zeros(1, dim).to(like), covariance[None]))
        s = self.structure
        dense = state.matrix.dense(dim)
        return GaussianMixture.from_structure(MixtureStructure(s.weights, state.matrix(s.means),
                                                               dense @ s.covariances @ dense.T + covariance))

    def end_distribution(self):
        return self.marginal(self.tau)

    def sample_marginal(self, t, n, generator):
        """x = M_t y + V^{1/2} ε for point clouds (only the drawn points are mapped); from the marginal mixture
        otherwise."""
        if self.cloud is None:
            return super().sample_marginal(t, n, generator)
        state = self.state(t)
        device = generator.device
        chosen = self.cloud.points.to(device)[self.cloud.draw(n, generator)]
        kernel, _ = state.smoothed(self.cloud.std**2)
        factor = LinearMap(torch.linalg.cholesky(kernel.value) if kernel.is_matrix else torch.sqrt(kernel.value))
        return state.matrix(chosen) + factor(torch.randn(chosen.shape, generator=generator, device=device,
                                                         dtype=chosen.dtype))

    # ---- velocity ----------------------------------------------------------------------------------
    def velocity(self, t, x):
        state = self.state(t)
        if self.cloud is not None:
            return self._cloud_velocity(state, x)
        if self.isotropic and not state.covariance.is_matrix:
            return self._isotropic_velocity(state, x)
        return self._general_velocity(state, x)

    def force_field(self, t, x):
        """f_t(x) = A_t x (capability ForceField): (ȧ/a + θ̇ J) x for the isotropic family (±∞ where a = 0), the
        matrix A_t for a general force."""
        mom = self.moments(t)
        if isinstance(mom, MatrixMoments):
            return x @ mom.force.to(x).mT
        scale = float(mom.scale)
        confinement = float(mom.dscale) / scale if scale != 0 else math.copysign(math.inf, float(mom.dscale))
        out = confinement * x
        if x.shape[1] == 2 and float(mom.dangle) != 0:
            out = out + mom.dangle.to(x) * torch.cat([-x[:, 1:], x[:, :1]], dim=1)
        return out

    def velocity_and_log_density(self, t, x):
        if self.cloud is None:
            return super().velocity_and_log_density(t, x)
        return self._cloud_velocity(self.state(t), x, with_density=True)

    def _cloud_velocity(self, state: LinearState, x, *, with_density=False):
        points = self.cloud.points
        kernel, dkernel = state.smoothed(self.cloud.std**2)
        if not kernel.value.any():
            raise ValueError("the velocity of empirical data is 0/0 at t = 0; the flow handles that endpoint")
        posterior = _posterior(x, state.matrix(points), points, kernel, self.cloud.log_weights())  # ȳ and log P_t
        velocity = state.dmatrix(posterior.mean) + state.gain(kernel, dkernel)(x - state.matrix(posterior.mean))
        return (velocity, posterior.log_density) if with_density else velocity

    def _isotropic_velocity(self, state: LinearState, x):
        s = self.structure
        variances, dvariances = state.smoothed(s.covariances[:, 0, 0])  # V_k, V̇_k
        rates = dvariances.value / (2 * variances.value)
        values = torch.cat([s.means, rates[:, None], rates[:, None] * s.means], dim=1)
        averages = posterior_average(x, state.matrix(s.means), values, variances.value, torch.log(s.weights)).mean
        dim = x.shape[1]
        mean, rate, rate_mean = averages[:, :dim], averages[:, dim:dim + 1], averages[:, dim + 1:]
        return (state.dmatrix(mean) + rate * x - state.matrix(rate_mean)
                + state.skew(x - state.matrix(mean)))

    def _general_velocity(self, state: LinearState, x):
        s = self.structure
        dim = x.shape[1]
        matrix, dmatrix = state.matrix.dense(dim), state.dmatrix.dense(dim)
        centres = s.means @ matrix.T  # (K, d)
        spread = dmatrix @ s.covariances @ matrix.T
        covariances = LinearMap(matrix @ s.covariances @ matrix.T + state.covariance.dense(dim))  # V_k
        dcovariances = LinearMap(spread + spread.mT + state.dcovariance.dense(dim))  # V̇_k
        gains = state.gain(covariances, dcovariances).value  # (K, d, d)
        log_resp = component_log_densities(x, centres, covariances.value) + torch.log(s.weights)
        resp = torch.softmax(log_resp, dim=1)  # (n, K)
        component_velocity = (s.means @ dmatrix.T)[:, None, :] + torch.einsum(
            "kij,knj->kni", gains, x[None, :, :] - centres[:, None, :])
        return torch.einsum("nk,kni->ni", resp, component_velocity)

    # ---- conditional training target (capabilities ConditionalTarget, GaussianConditional) -------------
    def score_matching_problem(self):
        if self.matrix_moments:
            return (f"'{self.name}' has an anisotropic force (Sigma_t not a multiple of I): neural training needs "
                    "isotropic conditional noise")
        return None

    def conditional_target_problem(self):
        if self.structure is not None and not self.isotropic:
            return ("conditional flow matching needs isotropic mixture components or a point cloud (score matching "
                    "does not)")
        return self.score_matching_problem()

    def conditional_target_sampler(self, batch, *, device, dtype):
        r"""Conditional flow matching: a data component k (a point of a point cloud, or a component
        :math:`\mathcal N(\mu_k, c_kI)` of an isotropic mixture) and t ~ U[0, τ],
        :math:`x = M_t\mu_k + \sqrt{V_k}\,\varepsilon`, :math:`V_k = a_t^2c_k + v_t`, target
        :math:`u = \dot M_t\mu_k + (\dot V_k/2V_k + G_tJ)(x - M_t\mu_k)`, whose posterior average is ν_t. The
        moments come from a table of ``TARGET_TABLE_INTERVALS`` + 1 times, linearly interpolated (relative
        error below 1e-7 in the targets)."""
        process, n = self, batch
        grid = torch.linspace(0, process.tau, TARGET_TABLE_INTERVALS + 1, dtype=torch.float64)
        table = {field: torch.stack([getattr(process.moments(float(t)), field).detach().cpu().to(torch.float64)
                                     for t in grid]).to(device, dtype)
                 for field in ("scale", "angle", "variance", "dscale", "dangle", "dvariance")}
        if process.cloud is not None:
            centres = process.cloud.points.to(device, dtype)
            widths = torch.full((len(centres),), process.cloud.std**2, device=device, dtype=dtype)
            weights = (torch.ones(len(centres)) if process.cloud.weights is None
                       else process.cloud.weights).to(device, dtype)
        else:
            s = process.structure
            centres, widths, weights = (v.to(device, dtype) for v in (s.means, s.covariances[:, 0, 0], s.weights))
        step = process.tau / TARGET_TABLE_INTERVALS

        def sample(generator):
            t = process.tau * torch.rand(n, generator=generator, device=device, dtype=dtype)
            position = t / step
            index = position.floor().clamp(max=TARGET_TABLE_INTERVALS - 1).long()
            fraction = position - index
            mom = {k: v[index] * (1 - fraction) + v[index + 1] * fraction for k, v in table.items()}
            k = torch.multinomial(weights, n, replacement=True, generator=generator)
            mu = centres[k]
            variance = mom["scale"] ** 2 * widths[k] + mom["variance"]
            dvariance = 2 * mom["scale"] * mom["dscale"] * widths[k] + mom["dvariance"]
            mean, dmean, skew = _rotated(mom, mu)
            x = mean + variance.sqrt()[:, None] * torch.randn(mu.shape, generator=generator, device=device, dtype=dtype)
            target = dmean + (dvariance / (2 * variance))[:, None] * (x - mean) + skew(x - mean)
            return t, x, target

        return sample

    # ---- flow ------------------------------------------------------------------------------------
    def flow_map(self):
        """In one dimension, for Gaussian-mixture data, the exact flow map that conserves each particle's
        cumulative probability (:func:`stochthermo.numerics.quantile_flow`); ``None`` otherwise (solvers
        integrate ν)."""
        if self.structure is None or self.data.dim != 1 or self.matrix_moments:
            return None
        return lambda x0, times: quantile_flow(self._moving_mixture, x0, times)

    def _moving_mixture(self, t: float) -> MovingMixture:
        """The 1-D marginal P_t: weights w_k, centres a_t μ_k, widths s_k = (a_t² S_k + v_t)^{1/2} and their rates."""
        mom, s = self.moments(t), self.structure
        variances = mom.scale**2 * s.covariances[:, 0, 0] + mom.variance
        stds = torch.sqrt(variances)
        dvariances = 2 * mom.scale * mom.dscale * s.covariances[:, 0, 0] + mom.dvariance
        return MovingMixture(s.weights, mom.scale * s.means[:, 0], stds, mom.dscale * s.means[:, 0],
                             dvariances / (2 * stds))

    def singular_endpoint(self):
        """For empirical data (kernel width 0) ν is 0/0 at t = 0: a reverse flow takes its last step into
        t = 0 with the posterior frozen (module docstring)."""
        return self._endpoint if self.cloud is not None and self.cloud.std == 0 else None

    def _endpoint(self, x, t):
        """Position and velocity at t = 0 reached from x at time t with the posterior frozen."""
        noise_speed = self.initial_noise_speed()
        if math.isinf(noise_speed):
            raise ValueError("empirical data: the noise speed d sqrt(v)/dt diverges at t = 0 (T_0 > 0); the "
                             "velocity has no limit there: give the data a kernel width (smoothing/noise)")
        state, initial = self.state(t), self.state(0.0)
        points = self.cloud.points
        posterior = _posterior(x, state.matrix(points), points, state.covariance, self.cloud.log_weights()).mean
        velocity = initial.dmatrix(posterior)
        if noise_speed != 0:
            if self.matrix_moments:
                raise ValueError("empirical data under a general force: the endpoint needs d sqrt(v)/dt = 0 at t = 0")
            mom = state.moments
            noise = rotation(-mom.angle, x.shape[1])(x - state.matrix(posterior)) / torch.sqrt(mom.variance)
            velocity = velocity + noise_speed * noise
        return initial.matrix(posterior), velocity



def _posterior(x: torch.Tensor, centres: torch.Tensor, values: torch.Tensor, kernel: LinearMap,
               log_weights: torch.Tensor | None) -> PosteriorAverage:
    """Posterior average of ``values`` and log density under the kernels N(c_i, V) weighted by ``log_weights``
    (equal when ``None``), V = ``kernel`` (a scalar: V I, or a matrix)."""
    if kernel.is_matrix:
        return shared_kernel_average(x, centres, values, kernel.value, log_weights)
    return posterior_average(x, centres, values, kernel.value, log_weights)


def _rotated(mom: dict, mu: torch.Tensor):
    """Per-sample M_t μ, Ṁ_t μ and the map r ↦ G_t J r for a batch of moments (2-D rotation; scalars else)."""
    if mu.shape[1] != 2:
        return mom["scale"][:, None] * mu, mom["dscale"][:, None] * mu, lambda r: torch.zeros_like(r)
    c, s = torch.cos(mom["angle"])[:, None], torch.sin(mom["angle"])[:, None]
    rotated = torch.cat([c * mu[:, :1] - s * mu[:, 1:], s * mu[:, :1] + c * mu[:, 1:]], dim=1)
    turned = torch.cat([-rotated[:, 1:], rotated[:, :1]], dim=1)  # J R μ
    mean = mom["scale"][:, None] * rotated
    dmean = mom["dscale"][:, None] * rotated + (mom["scale"] * mom["dangle"])[:, None] * turned
    rate = mom["dangle"][:, None]
    return mean, dmean, lambda r: rate * torch.cat([-r[:, 1:], r[:, :1]], dim=1)
