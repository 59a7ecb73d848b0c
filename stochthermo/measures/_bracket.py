r"""A confidence bracket on :math:`W_1` between two laws known through samples, in any dimension
(docs/theory.md §4.3).

Two facts hold in every dimension, and each turns into a Monte Carlo mean with a standard error, so neither
suffers the curse of dimension of the empirical :math:`W_1` (whose bias between two n-samples decays like
:math:`n^{-1/d}`):

* **Upper bound: a coupling.** For any joint law of (a, b) with the right marginals,
  :math:`W_1(\mathrm{law}\,a, \mathrm{law}\,b) \le E|a - b|`. Given independent *pairs* (the i-th particles of
  two flows whose starts were coupled, :func:`gaussian_transport_map`), the mean of :math:`|a_i - b_i|` is an
  unbiased estimate of the right side: :math:`W_1 \le \bar e + z\,\mathrm{se}` at one-sided level α. Without a
  pairing the same rows of both samples are split into batches and matched optimally within each batch; the
  expected cost of an optimal matching of two n-samples is at least :math:`W_1` (joint convexity of :math:`W_1`),
  and the batch means are independent, so their mean and standard error (Student's t with 15 degrees of
  freedom) give the bound the same way.
* **Lower bound: a 1-Lipschitz critic.** For any f with :math:`|f(x) - f(y)| \le |x - y|`,
  :math:`E f(a) - E f(b) \le W_1` (Kantorovich–Rubinstein). Each critic is fitted on one half of the particles
  and evaluated on the other, held-out half, where :math:`\overline{f(a_i) - f(b_i)} - z\,\mathrm{se}` is a
  lower confidence bound; the best of :data:`CRITICS` is taken with a Bonferroni correction (each at level
  α/K), so the choice does not bias it. The critics are 1-Lipschitz by construction, and the constant is
  checked on the held-out points before a bound is used.

Critics: ``projection`` and ``displacement`` — the optimal 1-D critic (its slope is the sign of the
difference of the two empirical distribution functions) of the projection on the unit direction of the mean
difference, resp. of the leading direction of the paired displacements :math:`a_i - b_i`: exact for a
translation, and for laws that differ along one direction only; ``radial`` — :math:`\pm|x - c|` about the
training mean: exact for an isotropic scaling; ``dual`` — the c-transform :math:`f(x) = \min_j(|x - b_j| - v_j)`
of the exact discrete dual potential on the training half (POT's network simplex), the general one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import torch
from scipy import stats

from stochthermo.errors import SimulationError
from stochthermo.measures._ensemble import Ensemble
from stochthermo.measures._laws import gaussian_parameters
from stochthermo.numerics._gaussian import bures_map
from stochthermo.roles._distribution import Distribution

#: the critics, in the order they are tried (module docstring)
CRITICS = ("projection", "displacement", "radial", "dual")
#: the dual critic is fitted on at most this many training pairs (an exact OT problem of that size)
DUAL_TRAINING_PAIRS = 1024
#: batches of the matched coupling where the two samples are not paired
MATCHED_BATCHES = 16
#: slack allowed in the Lipschitz check of a critic (rounding of its construction)
LIPSCHITZ_TOLERANCE = 1e-9


@dataclass(frozen=True)
class OneSided:
    """A one-sided Monte Carlo bound: the mean ``estimate`` of an unbiased estimator of a quantity that bounds
    :math:`W_1`, its standard error, and ``bound`` = estimate ∓ z·stderr."""

    estimate: float
    stderr: float
    bound: float
    method: str


@dataclass(frozen=True)
class Bracket:
    """:math:`W_1` lies in [lower.bound, upper.bound] with probability at least 1 − (α_lower + α_upper)."""

    lower: OneSided
    upper: OneSided


def one_sided_z(alpha: float) -> float:
    """The standard normal quantile z with P(Z > z) = α."""
    return NormalDist().inv_cdf(1.0 - alpha)


def gaussian_transport_map(source: tuple[torch.Tensor, torch.Tensor],
                           target: tuple[torch.Tensor, torch.Tensor]):
    r"""The optimal-transport map between two Gaussians :math:`\mathcal N(m_s, S) \to \mathcal N(m_t, T)`,
    :math:`x \mapsto m_t + A(x - m_s)` with :math:`A = S^{-1/2}(S^{1/2} T S^{1/2})^{1/2} S^{-1/2}` (symmetric
    positive definite): it pushes the source exactly onto the target, and is the W_2-optimal map (for a
    translation or an isotropic scaling also the W_1-optimal one). ``(mean, covariance)`` pairs in; a function
    of (n, d) tensors out."""
    (ms, cs), (mt, ct) = source, target
    matrix = bures_map(ms, cs, mt, ct)
    matrix = 0.5 * (matrix + matrix.mT)

    def transport(x: torch.Tensor) -> torch.Tensor:
        return mt.to(x) + (x - ms.to(x)) @ matrix.to(x).mT

    return transport


def coupled_ensemble(source: Distribution, target: Distribution, particles: Ensemble) -> Ensemble | None:
    """The ``target`` ensemble coupled to ``particles`` of ``source``: their image under the Gaussian transport map
    where both laws are Gaussian (:func:`stochthermo.measures.gaussian_parameters`), else ``None``."""
    source_parameters, target_parameters = gaussian_parameters(source), gaussian_parameters(target)
    if source_parameters is None or target_parameters is None:
        return None
    transport = gaussian_transport_map(source_parameters, target_parameters)
    return Ensemble(transport(particles.positions), particles.weights, None)


# ---- means and standard errors ---------------------------------------------------------------------------
def _mean_and_stderr(values: np.ndarray, antithetic: bool) -> tuple[float, float]:
    """Mean and standard error of i.i.d. values; with ``antithetic`` particles (particle i and i + n/2 are mirror
    images) the pair means are the independent units."""
    if antithetic and len(values) % 2 == 0:
        half = len(values) // 2
        values = 0.5 * (values[:half] + values[half:])
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


# ---- the upper bound: a coupling -------------------------------------------------------------------------
def coupling_upper(a: np.ndarray, b: np.ndarray, *, alpha: float, paired: bool, antithetic: bool = False,
                   generator: np.random.Generator | None = None) -> OneSided:
    r""":math:`W_1 \le E|a - b|` over the pairs (``paired``), or over optimal matchings within
    :data:`MATCHED_BATCHES` random batches; the bound at one-sided level ``alpha``."""
    if paired:
        estimate, stderr = _mean_and_stderr(np.linalg.norm(a - b, axis=1), antithetic)
        return OneSided(estimate, stderr, estimate + one_sided_z(alpha) * stderr, "coupled starts carried by the flows")
    # rows i of a and b may be dependent (one seed, common noise): a batch takes the same rows of both, so that
    # batches are independent; with antithetic particles a row and its mirror stay in one batch
    n = min(len(a), len(b))
    units = n // 2 if antithetic and n % 2 == 0 else n
    order = generator.permutation(units)
    costs = []
    for rows in np.array_split(order, MATCHED_BATCHES):
        rows = np.concatenate([rows, rows + units]) if units != n else rows
        costs.append(_matching_cost(a[rows], b[rows]))
    estimate, stderr = _mean_and_stderr(np.array(costs), False)
    # a standard error from few batch means: Student's t with MATCHED_BATCHES − 1 degrees of freedom
    t = float(stats.t.ppf(1.0 - alpha, MATCHED_BATCHES - 1))
    return OneSided(estimate, stderr, estimate + t * stderr,
                    f"optimal matchings within {MATCHED_BATCHES} independent batches")


# ---- the lower bound: held-out 1-Lipschitz critics -----------------------------------------------------
def _split(n: int, antithetic: bool, generator: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random half of the indices 0..n−1 to fit critics on and the other half to evaluate them on; with
    ``antithetic`` particles (i and i + n/2 mirror images) each pair stays on one side, the test indices ordered
    [pairs' first members, their mirrors] as :func:`_mean_and_stderr` expects."""
    units = n // 2 if antithetic and n % 2 == 0 else n
    order = generator.permutation(units)
    train, test = order[: units // 2], order[units // 2:]
    if units != n:
        train, test = np.concatenate([train, train + units]), np.concatenate([test, test + units])
    return train, test


def _best(candidates: dict[str, tuple[np.ndarray, bool]], *, alpha: float, lower: bool) -> OneSided:
    """The tightest of one-sided bounds on means: ``candidates`` maps a description to the values of one
    estimator per independent unit and whether they are antithetic pairs; each bound at level ``alpha``/K
    (Bonferroni), so that the best of them holds at ``alpha``."""
    z = one_sided_z(alpha / len(candidates))
    best = None
    for what, (values, antithetic) in candidates.items():
        estimate, stderr = _mean_and_stderr(values, antithetic)
        bound = estimate - z * stderr if lower else estimate + z * stderr
        candidate = OneSided(estimate, stderr, bound, what)
        if best is None or (bound > best.bound if lower else bound < best.bound):
            best = candidate
    return best


def _critic_differences(a: np.ndarray, b: np.ndarray, train: np.ndarray, test: np.ndarray, *,
                        paired: bool) -> dict[str, np.ndarray]:
    """f(a_i) − f(b_i) on the test indices for every critic fitted on the training ones, each checked to be
    1-Lipschitz on the test points."""
    out = {}
    for name, critic in _fit_critics(a[train], b[train], paired=paired).items():
        fa, fb = critic(a[test]), critic(b[test])
        _check_lipschitz(name, a[test], b[test], fa, fb)
        out[name] = fa - fb
    return out


def critic_lower(a: np.ndarray, b: np.ndarray, *, alpha: float, paired: bool, generator: np.random.Generator,
                 antithetic: bool = False) -> OneSided:
    r"""The largest held-out lower bound :math:`\overline{f(a) - f(b)} - z\,\mathrm{se}` over the critics of
    :data:`CRITICS` fitted on the other half (each at level ``alpha``/K, so the maximum holds at ``alpha``)."""
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    train, test = _split(n, antithetic, generator)
    differences = _critic_differences(a, b, train, test, paired=paired)
    return _best({f"held-out {name} critic": (values, antithetic) for name, values in differences.items()},
                 alpha=alpha, lower=True)


def change_bracket(end: tuple[torch.Tensor, torch.Tensor], start: tuple[torch.Tensor, torch.Tensor], *,
                   alpha: float, seed: int, antithetic: bool = False) -> Bracket:
    r"""A bracket of :math:`\Delta W_1 = W_1(a_0, b_0) - W_1(a_\tau, b_\tau)` from *paired* particles (row i of
    the four arrays is one trajectory pair): per pair, the upper bound's
    :math:`|a_0 - b_0| - (f(a_\tau) - f(b_\tau))` and the lower bound's
    :math:`(g(a_0) - g(b_0)) - |a_\tau - b_\tau|` with held-out critics f (start) and g (end), so that the
    coupling's and the critic's fluctuations, which are strongly correlated along one trajectory pair, cancel
    in one mean instead of adding up; each side at level ``alpha``."""
    (a0, b0), (at, bt) = ((_numpy(a), _numpy(b)) for a, b in (end, start))
    train, test = _split(len(a0), antithetic, np.random.default_rng(seed))
    end_distance, start_distance = (np.linalg.norm(a - b, axis=1)[test] for a, b in ((a0, b0), (at, bt)))
    start_critics = _critic_differences(at, bt, train, test, paired=True)
    end_critics = _critic_differences(a0, b0, train, test, paired=True)
    upper = {f"coupled pairs at t = 0 against the held-out {name} critic at t = tau": (end_distance - value, antithetic)
             for name, value in start_critics.items()}
    lower = {f"held-out {name} critic at t = 0 against the coupled pairs at t = tau": (value - start_distance,
                                                                                         antithetic)
             for name, value in end_critics.items()}
    return Bracket(_best(lower, alpha=alpha, lower=True), _best(upper, alpha=alpha, lower=False))


def _matching_cost(a: np.ndarray, b: np.ndarray) -> float:
    """The cost of the optimal matching of two equally weighted samples, per point (W_1 of the two samples)."""
    import ot

    cost = ot.dist(a, b, metric="euclidean")
    uniform = np.full(len(a), 1.0 / len(a))
    return float((ot.emd(uniform, uniform, cost) * cost).sum())


def _fit_critics(a: np.ndarray, b: np.ndarray, *, paired: bool) -> dict:
    """The critics of :data:`CRITICS` fitted on training samples (a missing direction drops its critic)."""
    critics = {}
    difference = a.mean(0) - b.mean(0)
    directions = {"projection": difference}
    if paired:
        displacement = a - b
        directions["displacement"] = np.linalg.svd(displacement, full_matrices=False)[2][0]
    for name, direction in directions.items():
        norm = np.linalg.norm(direction)
        if norm > 0:
            critics[name] = _projected_potential(a, b, direction / norm)
    centre = 0.5 * (a.mean(0) + b.mean(0))
    sign = 1.0 if np.linalg.norm(a - centre, axis=1).mean() >= np.linalg.norm(b - centre, axis=1).mean() else -1.0
    critics["radial"] = lambda x: sign * np.linalg.norm(x - centre, axis=1)
    critics["dual"] = _dual_potential(a[:DUAL_TRAINING_PAIRS], b[:DUAL_TRAINING_PAIRS])
    return critics


def _projected_potential(a: np.ndarray, b: np.ndarray, direction: np.ndarray):
    """The optimal 1-Lipschitz critic of the two projections on ``direction``: g' = sign(F_b − F_a) between the
    sorted projections (E_a g − E_b g = ∫ g'(F_b − F_a) ds, maximal for that slope), constant outside."""
    pa, pb = np.sort(a @ direction), np.sort(b @ direction)
    knots = np.sort(np.concatenate([pa, pb]))
    cdf_a = np.searchsorted(pa, knots, side="right") / len(pa)
    cdf_b = np.searchsorted(pb, knots, side="right") / len(pb)
    slope = np.sign(cdf_b - cdf_a)[:-1]
    values = np.concatenate([[0.0], np.cumsum(slope * np.diff(knots))])
    return lambda x: np.interp(x @ direction, knots, values)


def _dual_potential(a: np.ndarray, b: np.ndarray):
    """The c-transform f(x) = min_j (|x − b_j| − v_j) of the dual potential v of the exact OT problem between
    the training samples: a minimum of 1-Lipschitz functions."""
    import ot

    cost = ot.dist(a, b, metric="euclidean")
    _, log = ot.emd(np.full(len(a), 1.0 / len(a)), np.full(len(b), 1.0 / len(b)), cost, log=True)
    potential = np.asarray(log["v"])

    def critic(x: np.ndarray) -> np.ndarray:
        return (ot.dist(x, b, metric="euclidean") - potential).min(axis=1)

    return critic


def _check_lipschitz(name: str, a: np.ndarray, b: np.ndarray, fa: np.ndarray, fb: np.ndarray) -> None:
    """|f(x) − f(y)| ≤ |x − y| over the held-out pairs and over consecutive held-out points of each sample."""
    checks = [(fa, fb, a, b), (fa[1:], fa[:-1], a[1:], a[:-1]), (fb[1:], fb[:-1], b[1:], b[:-1])]
    for f1, f2, x1, x2 in checks:
        excess = np.abs(f1 - f2) - (1 + LIPSCHITZ_TOLERANCE) * np.linalg.norm(x1 - x2, axis=1)
        if (excess > LIPSCHITZ_TOLERANCE).any():
            raise SimulationError(f"the {name} critic of the W_1 bracket is not 1-Lipschitz "
                                  f"(|f(x) - f(y)| exceeds |x - y| by {float(excess.max()):.3g})")


def w1_bracket(a: torch.Tensor, b: torch.Tensor, *, alpha_lower: float, alpha_upper: float, paired: bool,
               seed: int, antithetic: bool = False) -> Bracket:
    """The bracket of :math:`W_1` between the laws of equally weighted samples ``a`` and ``b`` ((n, d) each):
    a held-out critic's lower bound at level ``alpha_lower``, a coupling's upper bound at ``alpha_upper``
    (``paired``: row i of ``a`` and of ``b`` are one draw of a coupling, i.i.d. over i)."""
    x, y = _numpy(a), _numpy(b)
    generator = np.random.default_rng(seed)
    return Bracket(critic_lower(x, y, alpha=alpha_lower, paired=paired, generator=generator, antithetic=antithetic),
                   coupling_upper(x, y, alpha=alpha_upper, paired=paired, antithetic=antithetic,
                                  generator=generator))


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float64).numpy()
