r"""Pearson χ² divergence of a reverse start against the true one (paper Eq. (78), docs/theory.md §4):

.. math:: D_0 = \int \frac{(\tilde P_0^\dagger - P_0^\dagger)^2}{P_0^\dagger}\,dx.

Finiteness is decided from the tails first: D_0 is finite only if the perturbed start decays faster than
the square root of the reference. For Gaussian tails with precisions :math:`A_i^{-1}` (perturbation) and
:math:`B_k^{-1}` (reference), the integrand decays in direction e like
:math:`\exp(-(\min_i e^\top A_i^{-1}e - \tfrac12 \min_k e^\top B_k^{-1} e)|x|^2)`; D_0 is finite iff this
exponent is positive for every direction (checked exactly in 1-D, on the eigen-directions and 4096
directions spread on the sphere otherwise). An infinite D_0 is reported as such, never estimated.

Values: the closed form for two Gaussians (a mixture whose components coincide to rounding counts as one
Gaussian: the end law of the cosine schedule, whose m_τ = cos(π/2) is 6e-17, not 0); otherwise, in 1-D,
tanh-sinh quadrature of
:math:`P\,(\tilde P/P - 1)^2` in log space, which avoids the cancellation of :math:`\int\tilde P^2/P - 1`;
in 2-D, for Gaussian mixtures, the trapezoidal rule on a grid. Anything else (high dimension, smoothed point
clouds) is a Monte Carlo measurement with its standard error: :math:`D_0 = E_{\tilde P}[\tilde P/P] - 1` over
seeded draws of the perturbed start, both log-densities exact, the error bar infinite (said so) where the tails
make the ratio's variance infinite. Only a law without a density (empirical points), or a caller asking for it,
gets the paper's proxy (G21), :math:`D_0 \approx 2\,\mathrm{KL}` between isotropic Gaussian fits (labelled as an
approximation in ``method``); the tail check still runs first, so an infinite D_0 is never replaced by it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from stochthermo.measures._laws import gaussian_parameters
from stochthermo.numerics._gaussian import chi_square_gaussians
from stochthermo.roles._distribution import Distribution

#: how D_0 is labelled where it is not computed exactly (paper (G21))
KL_PROXY = ("approximation: 2 KL between isotropic Gaussian fits (paper G21), used where asked for or where a law "
            "has no density and no exact method applies")
#: how D_0 is labelled where a mixture's components coincide to rounding (cosine's m_τ = cos(π/2) is 6e-17, not 0)
COINCIDENT = "closed form (two Gaussians; mixture components that coincide to rounding counted as one)"
QUADRATURE_TOLERANCE = 1e-12
#: absolute tolerance per piece: pieces between nearly coincident break points carry almost no mass
ABSOLUTE_TOLERANCE = 1e-16
SPHERE_DIRECTIONS = 4096


#: draws of the perturbed start for the Monte Carlo D_0 where no exact method applies
MONTE_CARLO_SAMPLES = 2**16
#: the estimator's variance E_P~[(P~/P)²] − (1 + D_0)² is finite iff P~³/P² is integrable: Gaussian tails with
#: decay a (P~) and b (P) need 3a − 2b > 0, i.e. a − (2/3) b > 0
VARIANCE_TAIL_FACTOR = 2.0 / 3.0


@dataclass(frozen=True)
class ChiSquare:
    value: float
    #: why the value is infinite, or how it was computed
    method: str
    #: the Monte Carlo standard error (0 for the exact methods; ∞ where the estimator's variance is infinite)
    stderr: float = 0.0


def chi_square(perturbed: Distribution, reference: Distribution, *, kl_proxy: bool = False,
               samples: int = MONTE_CARLO_SAMPLES, seed: int = 0) -> ChiSquare:
    """Pearson χ² of ``perturbed`` against ``reference`` (computed on the CPU in float64: scalar work): exact where
    a method applies, else by Monte Carlo over ``samples`` seeded draws of ``perturbed`` with its standard error,
    else (a law without a density) the labelled KL proxy; ``kl_proxy`` asks for the proxy wherever no exact
    method applies."""
    perturbed = perturbed.to(torch.device("cpu"), torch.float64)
    reference = reference.to(torch.device("cpu"), torch.float64)
    _, reason = _tail_decay(perturbed, reference)
    if reason:
        return ChiSquare(math.inf, reason)
    p_mix, r_mix = perturbed.mixture(), reference.mixture()
    if p_mix is not None and r_mix is not None and len(p_mix.weights) == 1 and len(r_mix.weights) == 1:
        value = chi_square_gaussians(p_mix.means[0], p_mix.covariances[0], r_mix.means[0], r_mix.covariances[0])
        return ChiSquare(value, "closed form (two Gaussians)")
    if perturbed.dim == 1:
        return ChiSquare(_quadrature_1d(perturbed, reference), "tanh-sinh quadrature")
    p_one, r_one = gaussian_parameters(perturbed), gaussian_parameters(reference)
    if p_one is not None and r_one is not None:
        return ChiSquare(chi_square_gaussians(*p_one, *r_one), COINCIDENT)
    if perturbed.dim == 2 and p_mix is not None and r_mix is not None:
        return ChiSquare(_grid_quadrature_2d(perturbed, reference), "trapezoidal rule on a 2-D grid")
    if not kl_proxy:
        estimate = _monte_carlo(perturbed, reference, samples, seed)
        if estimate is not None:
            return estimate
    return ChiSquare(2 * isotropic_kl(perturbed, reference), KL_PROXY)


def _monte_carlo(perturbed: Distribution, reference: Distribution, samples: int, seed: int) -> ChiSquare | None:
    r"""D_0 = E_{P~}[P~/P] − 1 over ``samples`` draws of the perturbed start, with the standard error of the mean of
    the ratios; ``None`` where a law has no density. Where the ratio's variance is infinite (the perturbed start's
    tails heavier than P^{2/3}), the standard error is reported as ∞: the estimate converges, slowly and without a
    Gaussian error bar."""
    x = perturbed.sample(samples, torch.Generator().manual_seed(seed))
    try:
        log_ratio = perturbed.log_prob(x) - reference.log_prob(x)
    except ValueError:  # a law without a density (empirical points): nothing to average
        return None
    ratio = torch.exp(log_ratio)
    value = float(ratio.mean()) - 1.0
    _, heavy = _tail_decay(perturbed, reference, VARIANCE_TAIL_FACTOR)
    stderr = math.inf if heavy else float(ratio.std()) / math.sqrt(samples)
    note = (" (the ratio's variance is infinite: no Gaussian error bar)" if heavy
            else f" (standard error {stderr:.3g})")
    return ChiSquare(value, f"Monte Carlo: E[P~/P] - 1 over {samples} draws of the perturbed start{note}", stderr)


def isotropic_kl(perturbed: Distribution, reference: Distribution) -> float:
    r"""KL(N(μ_p, s_p² I) ‖ N(μ_r, s_r² I)) between isotropic Gaussian fits (s² = tr Σ / d = (E‖x‖² − ‖μ‖²)/d):
    :math:`\tfrac d2\,(s_p^2/s_r^2 - 1 - \ln(s_p^2/s_r^2)) + |μ_p - μ_r|^2/2s_r^2`."""
    d = perturbed.dim
    fits = []
    for law in (perturbed, reference):
        mean = law.mean()
        fits.append((mean, (law.second_moment() - float(mean @ mean)) / d))
    (mean_p, var_p), (mean_r, var_r) = fits
    ratio = var_p / var_r
    return 0.5 * d * (ratio - 1 - math.log(ratio)) + 0.5 * float(((mean_p - mean_r) ** 2).sum()) / var_r


def _tail_decay(perturbed: Distribution, reference: Distribution,
                factor: float = 0.5) -> tuple[float, str | None]:
    """The smallest decay coefficient c of P~ / P^factor, exp(−c|x|²), over directions, and a sentence saying why
    its integral diverges (None when the tails make it finite): ``factor`` ½ for D_0 (P~²/P), ⅔ for the variance
    of the Monte Carlo estimate (P~³/P²)."""
    ref_prec = reference.tail_precisions()
    if ref_prec is None:
        return 0.0, "the reference start has bounded support"  # any mass outside it diverges
    pert_prec = perturbed.tail_precisions()
    if pert_prec is None:
        return math.inf, None
    d = perturbed.dim
    directions = torch.cat([torch.eye(d, dtype=ref_prec.dtype)]
                           + [torch.linalg.eigh(m)[1].mT for m in (*ref_prec, *pert_prec)])
    if d > 1:
        sphere = torch.randn(SPHERE_DIRECTIONS, d, dtype=ref_prec.dtype,
                             generator=torch.Generator().manual_seed(0))
        directions = torch.cat([directions, sphere])
    directions = directions / directions.norm(dim=1, keepdim=True)
    pert_decay = torch.einsum("nd,kde,ne->kn", directions, pert_prec.cpu(), directions).min(0).values
    ref_decay = torch.einsum("nd,kde,ne->kn", directions, ref_prec.cpu(), directions).min(0).values
    decay = float((pert_decay - factor * ref_decay).min())
    if decay <= 0:
        return decay, ("the perturbed start has tails as heavy as the square root of the true start's or "
                       "heavier (a variance >= twice the true start's in some direction): D_0 diverges")
    return decay, None


def _quadrature_1d(perturbed: Distribution, reference: Distribution) -> float:
    """Vectorised tanh-sinh quadrature (``scipy.integrate.tanhsinh``) of P (P~/P − 1)², evaluated in log
    space as exp(log P + 2 log|P~/P − 1|), over the pieces between break points. (Integrating in log mode
    instead loses accuracy at the zeros of P~ − P.)"""
    def integrand(x: np.ndarray) -> np.ndarray:
        points = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)).reshape(-1, 1)
        return _chi_square_integrand(perturbed, reference, points).numpy().reshape(np.shape(x))

    breaks = sorted({float(v) for dist in (perturbed, reference) for v in _break_points(dist)})
    edges = np.array([-math.inf, *breaks, math.inf])
    import scipy.integrate  # imported on use: it costs 0.6 s at start-up

    result = scipy.integrate.tanhsinh(integrand, edges[:-1], edges[1:], rtol=QUADRATURE_TOLERANCE,
                                      atol=ABSOLUTE_TOLERANCE)
    if not np.all(result.success):
        raise ArithmeticError("chi-square quadrature did not converge")
    return float(result.integral.sum())


def _grid_quadrature_2d(perturbed: Distribution, reference: Distribution) -> float:
    """Trapezoidal rule on a square grid: spacing a quarter of the narrowest component's standard deviation
    (spectrally accurate for Gaussian integrands), extent where the integrand has decayed below e^-60."""
    decay, _ = _tail_decay(perturbed, reference)
    mixes = (perturbed.mixture(), reference.mixture())
    centre = reference.mean().cpu()
    spread = max(float((mix.means.cpu() - centre).norm(dim=1).max()) for mix in mixes)
    half_width = spread + math.sqrt(60 / decay)
    narrowest = min(float(torch.linalg.eigvalsh(mix.covariances).min().sqrt()) for mix in mixes)
    n = int(math.ceil(2 * half_width / (narrowest / 4))) + 1
    axes = [torch.linspace(float(c) - half_width, float(c) + half_width, n, dtype=torch.float64) for c in centre]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 2)
    total = 0.0
    for chunk in grid.split(1 << 18):
        total += float(_chi_square_integrand(perturbed, reference, chunk).sum())
    if not math.isfinite(total):
        raise ArithmeticError("chi-square grid quadrature is not finite although the tails make D_0 finite")
    return total * float(axes[0][1] - axes[0][0]) * float(axes[1][1] - axes[1][0])


def _chi_square_integrand(perturbed: Distribution, reference: Distribution, points: torch.Tensor) -> torch.Tensor:
    """P (P~/P − 1)² at ``points``, evaluated as exp(log P + 2 log|P~/P − 1|): finite where P underflows and
    P~/P overflows (the product is what decays)."""
    log_ref = reference.log_prob(points)
    log_ratio = perturbed.log_prob(points) - log_ref
    # log|expm1(r)|, stable for large |r|
    log_abs = torch.where(log_ratio > 0, log_ratio + torch.log(-torch.expm1(-log_ratio)),
                          torch.log(-torch.expm1(log_ratio)))
    value = torch.where(torch.isfinite(log_ref), log_ref + 2 * log_abs, torch.full_like(log_ref, -math.inf))
    return value.exp()


def _break_points(dist: Distribution) -> np.ndarray:
    """Points where the integrand may bend sharply: support edges, component means ± 3 std."""
    mix = dist.mixture()
    if mix is None:
        z = torch.tensor([-40.0, 40.0], dtype=torch.float64)
        return dist.from_normal_score(z)[:, 0].cpu().numpy()  # the support edges (bounded support)
    std = mix.covariances[:, 0, 0].sqrt()
    centres = mix.means[:, 0]
    return torch.cat([centres - 3 * std, centres, centres + 3 * std]).cpu().numpy()
