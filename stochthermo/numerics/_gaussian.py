r"""Closed forms for Gaussian laws used across the engine (linear algebra only, no physics).

* :func:`chi_square_gaussians`: Pearson χ² between two Gaussians (docs/theory.md §4),
  :math:`1 + D = \int \mathcal N(x; a, A)^2 / \mathcal N(x; b, B)\,dx`, finite iff :math:`2A^{-1} - B^{-1} \succ 0`.
* :func:`bures_map`: the optimal-transport (Brenier) map between Gaussians,
  :math:`T(y) = b + M (y - a)`, :math:`M = A^{-1/2}(A^{1/2} B A^{1/2})^{1/2} A^{-1/2}` (docs/theory.md §3).
* :func:`component_log_densities`: :math:`\log \mathcal N(x; \mu_k, \Sigma_k)` for all components at once;
  :func:`cholesky_factor`, shared with sampling.
"""

from __future__ import annotations

import math

import torch


def sqrtm_psd(matrix: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a positive semi-definite matrix (..., d, d)."""
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0).sqrt().unsqueeze(-2)) @ vectors.mT


def chi_square_gaussians(a: torch.Tensor, A: torch.Tensor, b: torch.Tensor, B: torch.Tensor) -> float:
    r"""Pearson χ² of N(a, A) against N(b, B); ``inf`` when the integral diverges.

    Completing the square with precision :math:`P = 2A^{-1} - B^{-1}` and :math:`h = 2A^{-1}a - B^{-1}b`:
    :math:`\log(1 + D) = -\log|A| + \tfrac12\log|B| - \tfrac12\log|P| + \tfrac12 h^\top P^{-1} h
    - a^\top A^{-1} a + \tfrac12 b^\top B^{-1} b`.
    """
    A_inv, B_inv = torch.linalg.inv(A), torch.linalg.inv(B)
    P = 2 * A_inv - B_inv
    if torch.linalg.eigvalsh(P).min() <= 0:
        return math.inf
    h = 2 * A_inv @ a - B_inv @ b
    log_one_plus = (-torch.logdet(A) + 0.5 * torch.logdet(B) - 0.5 * torch.logdet(P)
                    + 0.5 * h @ torch.linalg.solve(P, h) - a @ A_inv @ a + 0.5 * b @ B_inv @ b)
    return float(torch.expm1(log_one_plus))


def bures_map(a: torch.Tensor, A: torch.Tensor, b: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """The matrix M of the OT map y ↦ b + M(y − a) from N(a, A) to N(b, B)."""
    root = sqrtm_psd(A)
    inv_root = torch.linalg.inv(root)
    return inv_root @ sqrtm_psd(root @ B @ root) @ inv_root


def gaussian_wasserstein_2(a: torch.Tensor, A: torch.Tensor, b: torch.Tensor, B: torch.Tensor) -> float:
    """W_2 between N(a, A) and N(b, B): ‖a − b‖² + tr(A + B − 2(A^½ B A^½)^½), under the root."""
    root = sqrtm_psd(A)
    bures = torch.trace(A + B - 2 * sqrtm_psd(root @ B @ root))
    return math.sqrt(max(float((a - b).square().sum() + bures), 0.0))


def cholesky_factor(covariances: torch.Tensor) -> torch.Tensor:
    """Lower Cholesky factors L Lᵀ = Σ of (..., d, d) matrices; for diagonal ones (isotropic priors in
    thousands of dimensions) the square root of the diagonal, without the O(d³) factorisation."""
    diagonal = torch.diagonal(covariances, dim1=-2, dim2=-1)
    if torch.equal(covariances, torch.diag_embed(diagonal)):
        return torch.diag_embed(diagonal.sqrt())
    return torch.linalg.cholesky(covariances)


def component_log_densities(x: torch.Tensor, means: torch.Tensor, covariances: torch.Tensor) -> torch.Tensor:
    """log N(x_i; μ_k, Σ_k) for x (n, d), means (K, d), covariances (K, d, d); returns (n, K)."""
    chol = cholesky_factor(covariances)  # (K, d, d)
    diff = (x[None, :, :] - means[:, None, :]).mT  # (K, d, n)
    white = torch.linalg.solve_triangular(chol, diff, upper=False)  # (K, d, n)
    log_det = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # (K,)
    d = x.shape[-1]
    return (-0.5 * (white**2).sum(1) - 0.5 * (log_det[:, None] + d * math.log(2 * math.pi))).T
