r"""Semi-discrete optimal transport: the Brenier map from a continuous law μ to weighted points
:math:`\nu = \sum_j w_j\delta_{y_j}` (docs/theory.md §9).

For the squared distance the map is :math:`T(z) = y_{j^*(z)}`,
:math:`j^*(z) = \arg\min_j(|z - y_j|^2 - g_j)`, whose level sets are the Laguerre cells
:math:`L_j(g)`; the dual weights g maximise the concave semi-dual

.. math:: F(g) = E_\mu\big[\min_j(|z - y_j|^2 - g_j)\big] + \sum_j w_j g_j, \qquad
   \partial F/\partial g_j = w_j - \mu(L_j(g)),

so at the optimum every cell holds its weight. Since :math:`|z - y_j|^2 - g_j = |z|^2 - 2\ell_j(z)` with the
affine functions :math:`\ell_j(z) = z\cdot y_j + (g_j - |y_j|^2)/2`, T is the gradient of the convex
potential :math:`u(z) = \max_j \ell_j(z)`, and the *soft* map at temperature ε,
:math:`T_\varepsilon(z) = \sum_j \mathrm{softmax}_j(\ell(z)/\varepsilon)\,y_j`, is the gradient of
:math:`u_\varepsilon = \varepsilon\log\sum_j e^{\ell_j/\varepsilon}` (convex, smooth, → u as ε → 0).

Two solvers: ``pot``, POT's averaged stochastic gradient on F (``ot.semidiscrete.solve_semidiscrete``, any
source that samples, any dimension), whose cell masses are then counted on fresh source draws: the solution
is accepted when every cell satisfies :math:`|\hat\mu_j - w_j| \le 0.05\,w_j + z\,\mathrm{se}_j`,
:math:`\mathrm{se}_j = \sqrt{w_j(1 - w_j)/n}`, z the Bonferroni quantile for a 1 % false alarm over the m
cells (a perfect map passes; one whose cells are off by more than 5 % of their weight, beyond the count's
resolution, is flagged); and ``newton``, the exact damped Newton iteration on Laguerre cells
(:func:`stochthermo.measures.newton_dual_weights`: 2-D, an isotropic Gaussian source, masses in closed form).
``auto`` takes Newton where it applies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import torch

from stochthermo.numerics._streams import RandomStreams
from stochthermo.roles._distribution import Distribution

#: POT's stochastic solver: iterations and source samples per iteration
POT_ITERATIONS = 10_000
POT_BATCH = 64
#: Monte Carlo samples that check the cell masses of a stochastic solution
CHECK_SAMPLES = 2**18
#: relative deviation |cell mass − w_j| / w_j accepted from the stochastic solver, beyond what the Monte Carlo
#: check can resolve (module docstring)
POT_RELATIVE_TOLERANCE = 0.05
#: family-wise false-alarm rate of the check over the m cells (Bonferroni)
CHECK_FALSE_ALARM = 0.01
#: the same for the exact Newton solver (closed-form masses)
NEWTON_MASS_TOLERANCE = 1e-12
#: rows of z per block when assigning points (bounds the (rows, m) score matrix)
ASSIGN_BLOCK = 2**14
METHODS = ("auto", "pot", "newton")


class InvalidWeightedPoints(ValueError):
    """Weighted points that have no semi-discrete map; ``field`` is ``points`` or ``weights``."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def check_weighted_points(points: torch.Tensor, weights: torch.Tensor) -> None:
    """Refuse what has no semi-discrete map: a weight that is not positive, weights that do not sum to one,
    two points at the same place (their cells would be one). Raises :class:`InvalidWeightedPoints` naming the
    offender."""
    if points.ndim != 2 or weights.shape != (len(points),):
        raise InvalidWeightedPoints(f"points must be (m, d) and weights (m,), got {tuple(points.shape)} and "
                                    f"{tuple(weights.shape)}", "points")
    if not bool(torch.isfinite(points).all()):
        raise InvalidWeightedPoints("the points must be finite", "points")
    smallest = int(weights.argmin())
    if not float(weights[smallest]) > 0:
        raise InvalidWeightedPoints(f"every weight must be > 0, weight {smallest} is {float(weights[smallest])}",
                                    "weights")
    if abs(float(weights.sum()) - 1) > 1e-9:
        raise InvalidWeightedPoints(f"the weights must sum to 1, they sum to {float(weights.sum()):.12g}", "weights")
    unique, inverse = torch.unique(points, dim=0, return_inverse=True)
    if len(unique) < len(points):
        counts = torch.bincount(inverse)
        first = torch.nonzero(inverse == int(counts.argmax())).ravel()[:2].tolist()
        raise InvalidWeightedPoints(f"points {first[0]} and {first[1]} coincide (at {points[first[0]].tolist()}): "
                                    "merge them and add their weights", "points")


@dataclass(frozen=True)
class SemiDiscreteMap:
    """The Brenier map of dual weights ``dual`` onto ``points`` (m, d) with ``weights`` (m,)."""

    points: torch.Tensor
    weights: torch.Tensor
    dual: torch.Tensor

    def affine_scores(self, z: torch.Tensor) -> torch.Tensor:
        """ℓ_j(z) = z·y_j + (g_j − ‖y_j‖²)/2, (n, m)."""
        points = self.points.to(z)
        return z @ points.T + 0.5 * (self.dual.to(z) - (points**2).sum(1))

    def assign(self, z: torch.Tensor) -> torch.Tensor:
        """j*(z): the index of the cell holding each z, (n,)."""
        return torch.cat([self.affine_scores(rows).argmax(1) for rows in z.split(ASSIGN_BLOCK)])

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """T(z) = y_{j*(z)}, (n, d)."""
        return self.points.to(z)[self.assign(z)]

    def potential(self, z: torch.Tensor) -> torch.Tensor:
        """The convex potential u(z) = max_j ℓ_j(z), whose gradient is T."""
        return self.affine_scores(z).max(1).values

    def soft(self, z: torch.Tensor, temperature: float) -> torch.Tensor:
        """T_ε(z) = Σ_j softmax_j(ℓ(z)/ε) y_j, the gradient of :meth:`soft_potential`."""
        return torch.softmax(self.affine_scores(z) / temperature, dim=1) @ self.points.to(z)

    def soft_potential(self, z: torch.Tensor, temperature: float) -> torch.Tensor:
        """u_ε(z) = ε log Σ_j exp(ℓ_j(z)/ε) ≥ u(z), within ε log m of it."""
        return temperature * torch.logsumexp(self.affine_scores(z) / temperature, dim=1)


@dataclass(frozen=True)
class SemiDiscreteSolution:
    """A solved map with its convergence diagnostics: the largest ``|cell mass − weight|`` (Monte Carlo for the
    stochastic solver, with the standard error of that cell's estimate; exact for Newton, error 0), the
    number of empty cells, and whether the error is within the solver's tolerance."""

    map: SemiDiscreteMap
    method: str
    mass_error: float
    mass_standard_error: float
    empty_cells: int
    converged: bool


def isotropic_gaussian(law: Distribution) -> tuple[np.ndarray, float] | None:
    """(mean, std) when ``law`` is N(mean, std² I), else ``None``."""
    mixture = law.mixture()
    if mixture is None or len(mixture.weights) != 1:
        return None
    covariance = mixture.covariances[0].cpu().double()
    variance = float(covariance[0, 0])
    if not torch.allclose(covariance, variance * torch.eye(law.dim, dtype=torch.float64), rtol=0, atol=1e-15):
        return None
    return mixture.means[0].cpu().double().numpy(), math.sqrt(variance)


def resolve_method(method: str, source: Distribution) -> str:
    """``auto``: Newton for a 2-D isotropic Gaussian source, POT otherwise; ``newton`` elsewhere is refused."""
    exact = source.dim == 2 and isotropic_gaussian(source) is not None
    if method == "auto":
        return "newton" if exact else "pot"
    if method == "newton" and not exact:
        raise ValueError("the exact Newton solver needs a 2-D isotropic Gaussian source "
                         f"(got '{source.name}' in {source.dim}-D): use pot")
    return method


def solve_semidiscrete(source: Distribution, points: torch.Tensor, weights: torch.Tensor, *, method: str = "auto",
                       seed: int = 0, iterations: int = POT_ITERATIONS, batch: int = POT_BATCH,
                       check_samples: int = CHECK_SAMPLES) -> SemiDiscreteSolution:
    """The semi-discrete Brenier map from ``source`` to the weighted points (module docstring); float64."""
    points, weights = points.double().cpu(), weights.double().cpu()
    check_weighted_points(points, weights)
    if source.dim != points.shape[1]:
        raise ValueError(f"the source has dimension {source.dim}, the points {points.shape[1]}")
    method = resolve_method(method, source)
    if method == "newton":
        from stochthermo.measures._laguerre import newton_dual_weights

        centre, std = isotropic_gaussian(source)
        result = newton_dual_weights(points.numpy(), weights.numpy(), centre, std, tolerance=NEWTON_MASS_TOLERANCE)
        error = float(np.abs(result.masses - weights.numpy()).max())
        return SemiDiscreteSolution(SemiDiscreteMap(points, weights, torch.from_numpy(result.dual)), method,
                                    error, 0.0, int((result.masses <= 0).sum()), result.converged)
    dual = pot_dual_weights(source, points, weights, seed=seed, iterations=iterations, batch=batch)
    return checked_solution(SemiDiscreteMap(points, weights, dual), source, method, seed=seed,
                            check_samples=check_samples)


def pot_dual_weights(source: Distribution, points: torch.Tensor, weights: torch.Tensor, *, seed: int,
                     iterations: int, batch: int) -> torch.Tensor:
    """POT's averaged SGD on the semi-dual, the source sampled from its own seeded stream (CPU, float64)."""
    from ot.semidiscrete import solve_semidiscrete as pot_solve

    source = source.to(torch.device("cpu"), torch.float64)
    generator = torch.Generator().manual_seed(seed)
    return pot_solve(points, lambda n: source.sample(n, generator), a_target=weights, metric="sqeuclidean",
                     max_iter=iterations, batch_size=batch)


def checked_solution(solved: SemiDiscreteMap, source: Distribution, method: str, *, seed: int,
                     check_samples: int) -> SemiDiscreteSolution:
    """Cell masses of ``solved`` by Monte Carlo over ``check_samples`` fresh draws of the source."""
    source = source.to(torch.device("cpu"), torch.float64)
    generator = RandomStreams(seed).generator("mass_check")
    counts = torch.zeros(len(solved.points), dtype=torch.float64)
    remaining = check_samples
    while remaining:
        n = min(remaining, ASSIGN_BLOCK)
        counts += torch.bincount(solved.assign(source.sample(n, generator)), minlength=len(counts))
        remaining -= n
    masses = counts / check_samples
    deviation = (masses - solved.weights).abs()
    standard_errors = torch.sqrt(solved.weights * (1 - solved.weights) / check_samples)
    worst = int(deviation.argmax())
    z = float(NormalDist().inv_cdf(1 - CHECK_FALSE_ALARM / (2 * len(masses))))
    converged = bool((deviation <= POT_RELATIVE_TOLERANCE * solved.weights + z * standard_errors).all())
    return SemiDiscreteSolution(solved, method, float(deviation[worst]), float(standard_errors[worst]),
                                int((counts == 0).sum()), converged)
