r"""Built-in analytic distributions: Gaussian mixtures (any dimension), Gaussians and uniform boxes."""

from __future__ import annotations

import math

import torch

from stochthermo import Distribution, ScenarioError, hookimpl
from stochthermo.measures import GaussianMixture, as_vector, check_covariances


class Gaussian(GaussianMixture):
    """:math:`\\mathcal N(\\mu, \\sigma^2 I)` (``std``; a list of one per coordinate gives a diagonal
    covariance) or :math:`\\mathcal N(\\mu, \\Sigma)` (``covariance``); a number for ``mean`` means one
    dimension, or ``dim`` dimensions with that mean in each (an isotropic prior for image data:
    ``{name: gaussian, dim: 64}``)."""

    name = "gaussian"

    def __init__(self, mean: float | list[float] = 0.0, std: float | list[float] | None = None,
                 covariance: list[list[float]] | None = None, dim: int | None = None):
        mu = as_vector(mean)
        if dim is not None:
            if dim < 1:
                raise ScenarioError(f"must be >= 1, got {dim}", key="dim")
            if len(mu) != 1:
                raise ScenarioError(f"give 'mean' as one number with 'dim' (got {len(mu)} values)", key="mean")
            mu = mu.expand(dim).clone()
        if std is not None and covariance is not None:
            raise ScenarioError("give at most one of 'std' and 'covariance'", key="std")
        if covariance is None:
            stds = as_vector(1.0 if std is None else std)
            if len(stds) not in (1, len(mu)):
                raise ScenarioError(f"give one standard deviation or one per coordinate ({len(mu)}), got "
                                    f"{len(stds)}", key="std")
            if (stds <= 0).any():
                raise ScenarioError(f"standard deviation{'s' if len(stds) > 1 else ''} must be > 0, got {std}",
                                    key="std")
            cov = torch.diag((stds**2).expand(len(mu)).clone())
        else:
            cov = torch.tensor(covariance, dtype=torch.float64)
            if cov.shape != (len(mu), len(mu)):
                raise ScenarioError(f"expected a {len(mu)}x{len(mu)} matrix", key="covariance")
            check_covariances(cov, "covariance")
        self.weights = torch.ones(1, dtype=torch.float64)
        self.means, self.covariances = mu[None, :], cov[None]


class Uniform(Distribution):
    """Uniform law on the box [low, high] (numbers mean one dimension)."""

    name = "uniform"

    def __init__(self, low: float | list[float], high: float | list[float]):
        self.low, self.high = as_vector(low), as_vector(high)
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
