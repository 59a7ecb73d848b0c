r"""Built-in analytic distributions: Gaussian mixtures (any dimension), Gaussians and uniform boxes."""

from __future__ import annotations

import math

import torch

from stochthermo import Distribution, MixtureStructure, ScenarioError, hookimpl
from stochthermo.distribution import gaussian_components
from stochthermo.gaussian import component_log_densities
from stochthermo.quantile_flow import MAX_NORMAL_SCORE, mixture_quantile

WEIGHT_TOLERANCE = 1e-9


def _as_points(values: list, key: str) -> torch.Tensor:
    """A list of scalars (1-D) or of equal-length vectors -> (K, d) float64 tensor."""
    if all(isinstance(v, float) for v in values):
        return torch.tensor(values, dtype=torch.float64)[:, None]
    if all(isinstance(v, list) for v in values):
        if len({len(v) for v in values}) != 1:
            raise ScenarioError("all points must have the same dimension", key=key)
        return torch.tensor(values, dtype=torch.float64)
    raise ScenarioError("mix of scalars and vectors; give either numbers (1-D) or lists", key=key)


def _as_vector(value: float | list[float]) -> torch.Tensor:
    return torch.tensor([value] if isinstance(value, float) else value, dtype=torch.float64)


def _check_covariances(covariances: torch.Tensor, key: str) -> None:
    if not torch.allclose(covariances, covariances.mT, rtol=1e-12, atol=1e-12):
        raise ScenarioError("covariance matrices must be symmetric", key=key)
    if torch.linalg.eigvalsh(covariances).min() <= 0:
        raise ScenarioError("covariance matrices must be positive definite", key=key)


class GaussianMixture(Distribution):
    r""":math:`q = \sum_k w_k \mathcal N(\mu_k, S_k)` in any dimension.

    Give ``means`` as numbers (1-D) or vectors, and either ``stds`` (isotropic, one per component) or
    full ``covariances``. ``weights`` must be non-negative and sum to 1."""

    name = "gaussian_mixture"

    def __init__(self, weights: list[float], means: list[float] | list[list[float]],
                 stds: list[float] | None = None, covariances: list[list[list[float]]] | None = None):
        w = torch.tensor(weights, dtype=torch.float64)
        mu = _as_points(means, "means")
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
            _check_covariances(cov, "covariances")
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
        components' quantiles (:func:`stochthermo.quantile_flow.mixture_quantile`), or bisection where
        |z| > ``MAX_NORMAL_SCORE`` (Φ(z) underflows)."""
        self._require_1d()
        if len(self.weights) == 1:  # a single Gaussian: exact
            return self.means[0] + self.covariances[0, 0].sqrt() * z[:, None]
        inside = z.abs() <= MAX_NORMAL_SCORE
        if not bool(inside.all()):
            return super().from_normal_score(z)
        return mixture_quantile(self.weights.to(z), self.means[:, 0].to(z), self.covariances[:, 0, 0].sqrt().to(z),
                                z)[:, None]


class Gaussian(GaussianMixture):
    """:math:`\\mathcal N(\\mu, \\sigma^2 I)` (``std``) or :math:`\\mathcal N(\\mu, \\Sigma)` (``covariance``);
    a number for ``mean`` means one dimension, or ``dim`` dimensions with that mean in each (an isotropic prior
    for image data: ``{name: gaussian, dim: 64}``)."""

    name = "gaussian"

    def __init__(self, mean: float | list[float] = 0.0, std: float | None = None,
                 covariance: list[list[float]] | None = None, dim: int | None = None):
        mu = _as_vector(mean)
        if dim is not None:
            if dim < 1:
                raise ScenarioError(f"must be >= 1, got {dim}", key="dim")
            if len(mu) != 1:
                raise ScenarioError(f"give 'mean' as one number with 'dim' (got {len(mu)} values)", key="mean")
            mu = mu.expand(dim).clone()
        if std is not None and covariance is not None:
            raise ScenarioError("give at most one of 'std' and 'covariance'", key="std")
        if covariance is None:
            std = 1.0 if std is None else std
            if std <= 0:
                raise ScenarioError(f"standard deviation must be > 0, got {std}", key="std")
            cov = std**2 * torch.eye(len(mu), dtype=torch.float64)
        else:
            cov = torch.tensor(covariance, dtype=torch.float64)
            if cov.shape != (len(mu), len(mu)):
                raise ScenarioError(f"expected a {len(mu)}x{len(mu)} matrix", key="covariance")
            _check_covariances(cov, "covariance")
        self.weights = torch.ones(1, dtype=torch.float64)
        self.means, self.covariances = mu[None, :], cov[None]


class Uniform(Distribution):
    """Uniform law on the box [low, high] (numbers mean one dimension)."""

    name = "uniform"

    def __init__(self, low: float | list[float], high: float | list[float]):
        self.low, self.high = _as_vector(low), _as_vector(high)
        if self.low.shape != self.high.shape:
            raise ScenarioError("'low' and 'high' must have the same dimension", key="high")
        if (self.high <= self.low).any():
            raise ScenarioError(f"must exceed low = {low} in every dimension, got {high}", key="high")

    @property
    def dim(self) -> int:
        return len(self.low)

    def sample(self, n, generator):
        return self.from_unit_cube(torch.rand(n, self.dim, generator=generator, device=generator.device,
                                              dtype=self.low.dtype))

    def unit_cube_dim(self):
        return self.dim

    def from_unit_cube(self, u):
        return self.low.to(u) + u * (self.high - self.low).to(u)

    def log_prob(self, x):
        inside = ((x >= self.low) & (x <= self.high)).all(dim=1)
        log_volume = torch.log(self.high - self.low).sum()
        return torch.where(inside, -log_volume, torch.full_like(log_volume, -math.inf))

    def mean(self):
        return 0.5 * (self.low + self.high)

    def covariance(self):
        return torch.diag((self.high - self.low) ** 2 / 12)

    def tail_precisions(self):
        return None

    def log_cdf(self, x):
        self._require_1d()
        return torch.log(((x[:, 0] - self.low) / (self.high - self.low)).clamp(0, 1))

    def log_sf(self, x):
        self._require_1d()
        return torch.log(((self.high - x[:, 0]) / (self.high - self.low)).clamp(0, 1))

    def from_normal_score(self, z):
        self._require_1d()
        width = self.high - self.low
        lower = self.low + width * torch.special.ndtr(z)
        upper = self.high - width * torch.special.ndtr(-z)
        return torch.where(z <= 0, lower, upper)[:, None]


@hookimpl
def stochthermo_register_distributions():
    return [GaussianMixture, Gaussian, Uniform]
