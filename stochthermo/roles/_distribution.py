r"""Distributions of data and of (perturbed) reverse starts.

A distribution samples, evaluates its log-density, and, where it can, exposes

* its Gaussian-mixture structure :math:`q = \sum_k w_k \mathcal N(\mu_k, S_k)` (exact posterior
  velocities, docs/theory.md §1, and closed-form χ²);
* its point-cloud structure: N_D data points, each smoothed by an isotropic Gaussian kernel
  :math:`\mathcal N(y_i, s^2 I)` (:math:`s = 0`: the empirical law itself), whose exact velocities are
  softmax posteriors over the points (docs/theory.md §1);
* its tail: the precision matrices of the slowest-decaying components (finiteness of χ², docs/theory.md §4),
  or ``None`` for bounded support;
* in one dimension, the cumulative distribution in log form and the *normal-score* maps
  :math:`z \mapsto F^{-1}(\Phi(z))` and :math:`x \mapsto \Phi^{-1}(F(x))`. Working with normal scores
  instead of levels :math:`u = F(x)` keeps both tails accurate in float64 (``1 - u`` would round to 0).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch

from stochthermo.numerics._gaussian import cholesky_factor
from stochthermo.numerics._roots import bisect
from stochthermo.roles._component import Component

LOG_HALF = math.log(0.5)
#: doublings of the quantile bisection's bracket before giving up
BRACKET_DOUBLINGS = 40


@dataclass(frozen=True)
class MixtureStructure:
    """``weights`` (K,), ``means`` (K, d), ``covariances`` (K, d, d) of a Gaussian mixture."""

    weights: torch.Tensor
    means: torch.Tensor
    covariances: torch.Tensor


@dataclass(frozen=True)
class PointCloudStructure:
    """``points`` (N_D, d), each the centre of an isotropic Gaussian kernel of standard deviation ``std``
    (0: atoms, the empirical law), or, where ``kernel`` is given (and ``std`` is None), of one shared
    Gaussian kernel N(0, ``kernel``); ``weights`` (N_D,) sum to one, ``None`` when all points weigh the same."""

    points: torch.Tensor
    std: float | None
    kernel: torch.Tensor | None = None
    weights: torch.Tensor | None = None

    def probabilities(self) -> torch.Tensor:
        """w_i (N_D,), 1/N_D each for equal weights."""
        if self.weights is not None:
            return self.weights
        return torch.full((len(self.points),), 1.0 / len(self.points), dtype=self.points.dtype,
                          device=self.points.device)

    def log_weights(self) -> torch.Tensor | None:
        """log w_i, or ``None`` for equal weights (the softmax posterior's default)."""
        return None if self.weights is None else torch.log(self.weights)

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Indices of ``n`` points drawn by weight."""
        device = generator.device
        if self.weights is None:
            return torch.randint(len(self.points), (n,), generator=generator, device=device)
        return torch.multinomial(self.weights.to(device), n, replacement=True, generator=generator)

    def select(self, u: torch.Tensor) -> torch.Tensor:
        """Indices of the points whose cumulative-probability interval holds each u in [0, 1) (n,): uniform
        u give draws by weight, stratified u give stratified draws."""
        return categorical_from_uniform(self.probabilities().to(u), u)


def categorical_from_uniform(probabilities: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The inverse cumulative distribution of a categorical law: index k with F_{k-1} <= u < F_k."""
    edges = torch.cumsum(probabilities, 0)
    return torch.searchsorted(edges, u.contiguous(), right=True).clamp_max(len(probabilities) - 1)


def gaussian_components(labels: torch.Tensor, means: torch.Tensor, covariances: torch.Tensor,
                        normal: torch.Tensor) -> torch.Tensor:
    """x_i = mu_k + L_k z_i for the component k = labels_i of each point (L_k L_k^T = S_k), z standard normal."""
    chol = cholesky_factor(covariances)
    draws = means[labels].clone()
    for k in torch.unique(labels).tolist():  # one product per component: no (n, d, d) gather
        chosen = labels == k
        draws[chosen] += normal[chosen] @ chol[k].mT
    return draws


class Distribution(Component):
    """Abstract distribution on :math:`\\mathbb R^d`. Tensors are (n, d); densities are (n,)."""

    kind: ClassVar[str] = "distribution"

    @property
    @abstractmethod
    def dim(self) -> int:
        raise NotImplementedError

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` independent draws, shape (n, d), on the generator's device."""
        raise NotImplementedError

    @abstractmethod
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @abstractmethod
    def mean(self) -> torch.Tensor:
        raise NotImplementedError

    @abstractmethod
    def covariance(self) -> torch.Tensor:
        raise NotImplementedError

    def second_moment(self) -> float:
        """E‖x‖² = tr Σ + ‖μ‖²."""
        return float(torch.trace(self.covariance()) + self.mean() @ self.mean())

    def mixture(self) -> MixtureStructure | None:
        """The Gaussian-mixture structure, or ``None`` when the distribution is not a Gaussian mixture."""
        return None

    def point_cloud(self) -> PointCloudStructure | None:
        """The point-cloud structure, or ``None`` when the distribution is not given by data points."""
        return None

    # ---- draws as a function of the unit cube (quasi-random and antithetic ensembles) --------------------------
    def unit_cube_dim(self) -> int | None:
        """k such that :meth:`from_unit_cube` maps (0, 1)^k onto draws, or ``None`` when it cannot. By default
        from the structures: d for one Gaussian, d + 1 for a mixture or smoothed point cloud (the first
        coordinate picks the component), 1 for an empirical law."""
        mix, cloud = self.mixture(), self.point_cloud()
        if mix is not None:
            return self.dim + (len(mix.weights) > 1)
        if cloud is not None:
            return 1 if cloud.std == 0 else self.dim + 1
        return None

    def from_unit_cube(self, u: torch.Tensor) -> torch.Tensor:
        r"""Draws x = G(u) (n, d) for points u (n, k) of the open unit cube, where G pushes the uniform law on
        the cube to this distribution: independent uniform u give independent draws, a low-discrepancy
        (Sobol) or antithetic set u gives a quasi-random or antithetic sample. By default the component is
        the inverse categorical distribution function of u_0 (when there are several) and the Gaussian part
        is :math:`\mu_k + L_k \Phi^{-1}(u_{1:})`."""
        mix, cloud = self.mixture(), self.point_cloud()
        if mix is not None:
            several = len(mix.weights) > 1
            labels = (categorical_from_uniform(mix.weights.to(u), u[:, 0]) if several
                      else torch.zeros(len(u), dtype=torch.long, device=u.device))
            return gaussian_components(labels, mix.means.to(u), mix.covariances.to(u),
                                       torch.special.ndtri(u[:, int(several):]))
        if cloud is None:
            raise NotImplementedError(f"{self.name} does not map the unit cube to its draws")
        labels = cloud.select(u[:, 0])
        points = cloud.points.to(u)[labels]
        if cloud.std == 0:
            return points
        kernel = (cloud.kernel.to(u) if cloud.kernel is not None
                  else cloud.std**2 * torch.eye(self.dim, dtype=u.dtype, device=u.device))
        return points + torch.special.ndtri(u[:, 1:]) @ cholesky_factor(kernel).mT

    def tail_precisions(self) -> torch.Tensor | None:
        """Precision matrices (K, d, d) governing the Gaussian tails, or ``None`` for bounded support."""
        mix = self.mixture()
        if mix is None:
            raise NotImplementedError(f"{self.name}: tail_precisions() must be defined")
        return torch.linalg.inv(mix.covariances)

    # ---- one dimension -------------------------------------------------------------------------
    def log_cdf(self, x: torch.Tensor) -> torch.Tensor:
        """log F(x) for x of shape (n, 1)."""
        raise NotImplementedError(f"{self.name} has no cumulative distribution function")

    def log_sf(self, x: torch.Tensor) -> torch.Tensor:
        """log (1 − F(x)) for x of shape (n, 1), accurate in the upper tail."""
        raise NotImplementedError(f"{self.name} has no survival function")

    def normal_score(self, x: torch.Tensor) -> torch.Tensor:
        """z = Φ⁻¹(F(x)) for x of shape (n, 1); returns (n,)."""
        log_cdf = self.log_cdf(x)
        lower = torch.special.ndtri(log_cdf.exp())
        upper = -torch.special.ndtri(self.log_sf(x).exp())
        return torch.where(log_cdf <= LOG_HALF, lower, upper)

    def from_normal_score(self, z: torch.Tensor) -> torch.Tensor:
        """x = F⁻¹(Φ(z)) for z of shape (n,); returns (n, 1).

        Default: bisection on ``log_cdf`` (z ≤ 0) and ``log_sf`` (z > 0), to below float64 resolution
        (:func:`stochthermo.numerics.bisect`), inside a bracket of ±60 standard deviations around the mean, doubled
        until it holds every root (Chebyshev's bound puts only levels below 1/3600 outside it).
        """
        self._require_1d()
        lower = z <= 0
        x = torch.empty((len(z), 1), dtype=z.dtype, device=z.device)
        x[lower, 0] = self._bisect(self.log_cdf, torch.special.log_ndtr(z[lower]), increasing=True)
        x[~lower, 0] = self._bisect(self.log_sf, torch.special.log_ndtr(-z[~lower]), increasing=False)
        return x

    def _bisect(self, log_function, target: torch.Tensor, *, increasing: bool) -> torch.Tensor:
        mean = float(self.mean()[0])
        half_width = 60 * math.sqrt(float(self.covariance()[0, 0]))

        def root_is_above(mid):
            value = log_function(mid[:, None])
            return value < target if increasing else value > target

        for _ in range(BRACKET_DOUBLINGS):
            low, high = torch.full_like(target, mean - half_width), torch.full_like(target, mean + half_width)
            if bool(root_is_above(low).all()) and not bool(root_is_above(high).any()):
                return bisect(root_is_above, low, high)
            half_width *= 2
        raise ArithmeticError(f"{self.name}: a quantile lies beyond 2^{BRACKET_DOUBLINGS} x 60 standard deviations "
                              "of the mean")

    def _require_1d(self) -> None:
        if self.dim != 1:
            raise ValueError(f"{self.name}: quantile functions exist in one dimension only (dim = {self.dim})")
