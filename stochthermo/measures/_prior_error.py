r"""The prior error W_2(P_τ, prior) of a variance-preserving process, and its bounds from the data's first two
moments (docs/theory.md §9).

A VP / OU process has :math:`P_\tau = \mathrm{law}(a\,y + \sqrt{c(1 - a^2)}\,\varepsilon)`, a = a_τ, prior
N(0, cI). With m, S the data's mean and covariance (eigenvalues λ_i) and :math:`E|y|^2` its second moment:

* lower bound (Gelbrich): W_2 between two laws is at least W_2 between the Gaussians with their means and
  covariances; P_τ has mean a m and covariance :math:`a^2S + c(1 - a^2)I`, commuting with cI, so

  .. math:: W_2^2 \ge a^2|m|^2 + \sum_i\big(\sqrt{a^2\lambda_i + c(1 - a^2)} - \sqrt c\big)^2,

  with equality for Gaussian data;
* upper bound (synchronous coupling :math:`\sqrt c\,\varepsilon` with the same ε; y and ε independent):

  .. math:: W_2^2 \le a^2E|y|^2 + n_d\,c\,\big(1 - \sqrt{1 - a^2}\big)^2 .

Both vanish like a (= e^{−T} for the OU time T): :math:`a|m| \le W_2 \le a\sqrt{E|y|^2} + O(a^2)`.
"""

from __future__ import annotations

import math

import torch

from stochthermo.roles._capabilities import GaussianConditional
from stochthermo.roles._process import ForwardProcess

#: relative spread of v_t / (1 − a_t²) over the process's times accepted as one constant c
VP_TOLERANCE = 1e-9


def variance_preserving(process: ForwardProcess) -> float | None:
    """The prior variance c when the process is variance preserving (no rotation, v_t = c(1 − a_t²) at every
    checked time), else ``None``."""
    if not isinstance(process, GaussianConditional):
        return None
    ratios = []
    for fraction in (0.25, 0.5, 0.75, 1.0):
        moments = process.moments(fraction * process.tau)
        scale = float(moments.scale)
        if float(torch.as_tensor(moments.angle).abs().max()) != 0 or scale >= 1:
            return None
        ratios.append(float(moments.variance) / (1 - scale * scale))
    c = ratios[-1]
    return c if max(abs(r - c) for r in ratios) <= VP_TOLERANCE * c else None


def prior_error_bounds(mean: torch.Tensor, covariance: torch.Tensor, second_moment: float, scale: float,
                       prior_variance: float) -> tuple[float, float]:
    """(lower, upper) bounds on W_2(P_τ, N(0, cI)) for signal level a = ``scale`` (module docstring)."""
    a, c = scale, prior_variance
    eigenvalues = torch.linalg.eigvalsh(covariance.double().cpu()).clamp(min=0)
    spread = ((torch.sqrt(a * a * eigenvalues + c * (1 - a * a)) - math.sqrt(c)) ** 2).sum()
    lower = math.sqrt(a * a * float((mean.double() ** 2).sum()) + float(spread))
    dim = len(mean)
    upper = math.sqrt(a * a * second_moment + dim * c * (1 - math.sqrt(1 - a * a)) ** 2)
    return lower, upper
