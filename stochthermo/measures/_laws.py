r"""The laws the engine's own mathematics produces: Gaussian mixtures and smoothed point clouds.

The marginal of a linear forward process started from a Gaussian mixture is a Gaussian mixture, and started
from points it is a smoothed point cloud: a process builds its :math:`P_t` with :meth:`GaussianMixture.from_structure`
and :meth:`PointCloud.from_points`. The built-in distribution plugins register these classes (and derive
the Gaussian, the Swiss roll, image data... from them); a third-party process may build them too.
"""

from __future__ import annotations

import torch

from stochthermo.errors import ScenarioError
from stochthermo.numerics._gaussian import component_log_densities
from stochthermo.numerics._posterior import posterior_average, shared_kernel_average
from stochthermo.numerics._quantile_flow import MAX_NORMAL_SCORE, mixture_quantile
from stochthermo.roles._distribution import Distribution, MixtureStructure, PointCloudStructure, gaussian_components

WEIGHT_TOLERANCE = 1e-9
#: mixture components coincide when their means and covariances differ by less than this, relative to the
#: covariance's scale
COINCIDENCE = 1e-12


def as_points(values: list, key: str) -> torch.Tensor:
    """A list of scalars (1-D) or of equal-length vectors -> (K, d) float64 tensor."""
    if all(isinstance(v, float) for v in values):
        return torch.tensor(values, dtype=torch.float64)[:, None]
    if all(isinstance(v, list) for v in values):
        if len({len(v) for v in values}) != 1:
            raise ScenarioError("all points must have the same dimension", key=key)
        return torch.tensor(values, dtype=torch.float64)
    raise ScenarioError("mix of scalars and vectors; give either numbers (1-D) or lists", key=key)


def as_vector(value: float | list[float]) -> torch.Tensor:
    return torch.tensor([value] if isinstance(value, float) else value, dtype=torch.float64)


def check_covariances(covariances: torch.Tensor, key: str) -> None:
    if not torch.allclose(covariances, covariances.mT, rtol=1e-12, atol=1e-12):
        raise ScenarioError("covariance matrices must be symmetric", key=key)
    if torch.linalg.eigvalsh(covariances).min() <= 0:
        raise ScenarioError("covariance matrices must be positive definite", key=key)


def gaussian_parameters(law: Distribution) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(mean, covariance) of a law that is one Gaussian: a Gaussian mixture of one component, or one whose
    components all coincide to rounding (means within ``COINCIDENCE`` of the largest standard deviation,
    covariances within ``COINCIDENCE`` of their largest entry: the end law of the cosine schedule, whose
    m_τ = cos(π/2) is 6e-17, not 0). ``None`` for anything else."""
    mixture = law.mixture()
    if mixture is None:
        return None
    means, covariances = mixture.means, mixture.covariances
    scale = float(covariances.abs().amax())
    if scale == 0 or float((covariances - covariances[0]).abs().amax()) > COINCIDENCE * scale:
        return None
    if float((means - means[0]).norm(dim=1).max()) > COINCIDENCE * scale**0.5:
        return None
    return mixture.weights.to(means) @ means, covariances[0]


class GaussianMixture(Distribution):
    r""":math:`q = \sum_k w_k \mathcal N(\mu_k, S_k)` in any dimension.

    Give ``means`` as numbers (1-D) or vectors, and either ``stds`` (isotropic, one per component) or
    full ``covariances``. ``weights`` must be non-negative and sum to 1."""

    name = "gaussian_mixture"

    def __init__(self, weights: list[float], means: list[float] | list[list[float]],
                 stds: list[float] | None = None, covariances: list[list[list[float]]] | None = None):
        w = torch.tensor(weights, dtype=torch.float64)
        mu = as_points(means, "means")
        if len(w) != len(mu):
            raise ScenarioError(f"{len(w)} weights for {len(mu)} means", key="weights")
        if (w < 0).any():
            raise ScenarioError("weights must be non-negative", key="weights")
        if abs(float(w.sum()) - 1) > WEIGHT_TOLERANCE:
            raise ScenarioError(f"weights must sum to 1, they sum to {float(w.sum()):.12g}", key="weights")
        if (stds is None) == (covariances is None):
            raise ScenarioError("give exactly one of 'stds' and 'covariances'", key="stds")
        if stds is not None:
            s = torch.tensor(stds, dtype=torch.float64)
            if len(s) != len(w):
                raise ScenarioError(f"{len(s)} stds for {len(w)} components", key="stds")
            if (s <= 0).any():
                raise ScenarioError(f"standard deviations must be > 0, got {stds}", key="stds")
            cov = s[:, None, None] ** 2 * torch.eye(mu.shape[1], dtype=torch.float64)
        else:
            cov = torch.tensor(covariances, dtype=torch.float64)
            if cov.shape != (len(w), mu.shape[1], mu.shape[1]):
                raise ScenarioError(f"expected {len(w)} matrices of size {mu.shape[1]}x{mu.shape[1]}",
                                    key="covariances")
            check_covariances(cov, "covariances")
        self.weights, self.means, self.covariances = w, mu, cov

    @classmethod
    def from_structure(cls, structure: MixtureStructure) -> GaussianMixture:
        """A mixture built from tensors (no scenario validation), e.g. a forward marginal P_t."""
        mixture = cls.__new__(cls)
        mixture.weights, mixture.means, mixture.covariances = (
            structure.weights, structure.means, structure.covariances)
        return mixture

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def mixture(self) -> MixtureStructure:
        return MixtureStructure(self.weights, self.means, self.covariances)

    def sample(self, n, generator):
        device = generator.device
        labels = torch.multinomial(self.weights.to(device), n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, device=device, dtype=self.means.dtype)
        return gaussian_components(labels, self.means.to(device), self.covariances.to(device), noise)

    def log_prob(self, x):
        log_components = component_log_densities(x, self.means, self.covariances)
        return torch.logsumexp(log_components + torch.log(self.weights), dim=1)

    def mean(self):
        return self.weights @ self.means

    def covariance(self):
        centred = self.means - self.mean()
        return (torch.einsum("k,kij->ij", self.weights, self.covariances)
                + torch.einsum("k,ki,kj->ij", self.weights, centred, centred))

    def _standardised(self, x):
        self._require_1d()
        return (x - self.means[:, 0]) / self.covariances[:, 0, 0].sqrt()

    def log_cdf(self, x):
        return torch.logsumexp(torch.special.log_ndtr(self._standardised(x)) + torch.log(self.weights), dim=1)

    def log_sf(self, x):
        return torch.logsumexp(torch.special.log_ndtr(-self._standardised(x)) + torch.log(self.weights), dim=1)

    def from_normal_score(self, z):
        """F⁻¹(Φ(z)): exact for a single Gaussian; for a mixture Halley's iteration on F, safeguarded by the
        components' quantiles (:func:`stochthermo.numerics.mixture_quantile`), or bisection where
        ``|z| > MAX_NORMAL_SCORE`` (Φ(z) underflows)."""
        self._require_1d()
        if len(self.weights) == 1:  # a single Gaussian: exact
            return self.means[0] + self.covariances[0, 0].sqrt() * z[:, None]
        inside = z.abs() <= MAX_NORMAL_SCORE
        if not bool(inside.all()):
            return super().from_normal_score(z)
        return mixture_quantile(self.weights.to(z), self.means[:, 0].to(z), self.covariances[:, 0, 0].sqrt().to(z),
                                z)[:, None]


class PointCloud(Distribution):
    """Points ``points`` (N_D, d) with ``weights`` (equal when ``None``), each smoothed by N(0, std² I), or,
    with ``kernel``, by one shared N(0, K) (K a (d, d) covariance: the marginals of an anisotropic linear
    force, whose kernels are sheared). Built by processes for their marginals; the registered point clouds
    below derive from it."""

    name = "point_cloud"

    @classmethod
    def from_points(cls, points: torch.Tensor, std: float = 0.0, *, kernel: torch.Tensor | None = None,
                    weights: torch.Tensor | None = None) -> PointCloud:
        cloud = cls.__new__(cls)
        cloud._set(points, std, kernel, weights)
        return cloud

    def _set(self, points: torch.Tensor, std: float, kernel: torch.Tensor | None = None,
             weights: torch.Tensor | None = None) -> None:
        self.points = points
        #: isotropic kernel width s (None when the kernel is the matrix ``kernel``)
        self.std = None if kernel is not None else float(std)
        self.kernel = kernel
        #: the points' probabilities (None: equal)
        self.weights = weights

    @property
    def dim(self) -> int:
        return self.points.shape[1]

    def point_cloud(self) -> PointCloudStructure:
        return PointCloudStructure(self.points, self.std, self.kernel, self.weights)

    def sample(self, n, generator):
        device = generator.device
        chosen = self.points.to(device)[self.point_cloud().draw(n, generator)]
        if self.std == 0:
            return chosen
        noise = torch.randn(chosen.shape, generator=generator, device=device, dtype=chosen.dtype)
        if self.kernel is None:
            return chosen + self.std * noise
        return chosen + noise @ torch.linalg.cholesky(self.kernel.to(device)).mT

    def log_prob(self, x):
        if self.std == 0:
            raise ValueError(f"{self.name}: the empirical law (kernel width 0) has no density")
        empty = torch.empty((len(self.points), 0), dtype=x.dtype, device=x.device)
        log_weights = self.point_cloud().log_weights()
        log_weights = None if log_weights is None else log_weights.to(x)
        if self.kernel is None:
            return posterior_average(x, self.points.to(x), empty, self.std**2, log_weights).log_density
        return shared_kernel_average(x, self.points.to(x), empty, self.kernel.to(x), log_weights).log_density

    def mean(self):
        return self.points.mean(0) if self.weights is None else self.weights @ self.points

    def covariance(self):
        centred = self.points - self.mean()
        kernel = self.kernel if self.kernel is not None else self.std**2 * torch.eye(
            self.dim, dtype=self.points.dtype, device=self.points.device)
        if self.weights is None:
            return centred.T @ centred / len(self.points) + kernel
        return centred.T @ (self.weights[:, None] * centred) + kernel

    def second_moment(self):
        """E‖y‖² = Σ_i w_i ‖y_i‖² + tr K (without forming the n_d × n_d covariance when K = s² I)."""
        spread = float(torch.trace(self.kernel)) if self.kernel is not None else self.dim * self.std**2
        squares = (self.points**2).sum(1)
        return float(squares.mean() if self.weights is None else self.weights @ squares) + spread

    def tail_precisions(self):
        if self.std == 0:
            return None  # bounded support
        if self.kernel is not None:
            return torch.linalg.inv(self.kernel.cpu())[None]
        return torch.eye(self.dim, dtype=self.points.dtype)[None] / self.std**2
