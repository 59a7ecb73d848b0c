"""The Gaussian closed forms of ``stochthermo.numerics`` against independent oracles: scipy's quadrature and
densities, POT's Bures–Wasserstein distance and map. Written after mutation testing of the module
(tests/mutation/gaussian.toml) showed that the engine-level tests only met these functions where a sign or a term
could not show: unit covariances, zero means, finite χ²."""

import math

import numpy as np
import ot
import pytest
import torch
from scipy import integrate, stats

import stochthermo.numerics as numerics


def t(values) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=float), dtype=torch.float64)


def _chi_square_1d_quadrature(a, A, b, B) -> float:
    """∫ N(x; a, A)² / N(x; b, B) dx − 1 by adaptive quadrature (A, B variances)."""
    def integrand(x):  # in logs: both densities underflow in the tails, their ratio need not
        return math.exp(2 * stats.norm.logpdf(x, a, math.sqrt(A)) - stats.norm.logpdf(x, b, math.sqrt(B)))

    value, _ = integrate.quad(integrand, -math.inf, math.inf, epsabs=0, epsrel=1e-12, limit=400)
    return value - 1


@pytest.mark.parametrize("a, A, b, B", [(0.7, 0.5, -0.4, 1.3), (-1.2, 0.9, 0.3, 0.6), (0.0, 1.0, 2.0, 2.5)])
def test_chi_square_of_two_gaussians_is_the_quadrature(a, A, b, B):
    """Non-zero means and non-unit variances on both sides: every term of the completed square counts."""
    got = numerics.chi_square_gaussians(t([a]), t([[A]]), t([b]), t([[B]]))
    assert got == pytest.approx(_chi_square_1d_quadrature(a, A, b, B), rel=1e-9)


def test_chi_square_of_independent_coordinates_is_the_product():
    """1 + D of a product law is the product of the coordinates' 1 + D (Fubini): a 2-D correlated-free oracle
    built from the 1-D quadrature, with different covariances on both sides."""
    a, A, b, B = [0.3, -0.8], [0.7, 1.4], [-0.2, 0.5], [1.1, 1.6]
    expected = math.prod(1 + _chi_square_1d_quadrature(*args) for args in zip(a, A, b, B, strict=True)) - 1
    got = numerics.chi_square_gaussians(t(a), torch.diag(t(A)), t(b), torch.diag(t(B)))
    assert got == pytest.approx(expected, rel=1e-9)


def test_chi_square_of_correlated_gaussians_is_the_double_integral():
    a, A = np.array([0.4, -0.3]), np.array([[0.8, 0.3], [0.3, 0.6]])
    b, B = np.array([-0.1, 0.2]), np.array([[1.2, -0.2], [-0.2, 0.9]])
    p, q = stats.multivariate_normal(a, A), stats.multivariate_normal(b, B)
    value, _ = integrate.dblquad(lambda y, x: p.pdf([x, y]) ** 2 / q.pdf([x, y]), -9, 9, -9, 9, epsabs=1e-12,
                                 epsrel=1e-10)
    assert numerics.chi_square_gaussians(t(a), t(A), t(b), t(B)) == pytest.approx(value - 1, rel=1e-7)


@pytest.mark.parametrize("A, B", [(1.0, 0.4), (1.0, 0.5)])
def test_chi_square_is_infinite_where_the_integral_diverges(A, B):
    """2/A − 1/B ≤ 0: the integrand does not decay (negative: it grows; zero: it is flat in x)."""
    assert numerics.chi_square_gaussians(t([0.0]), t([[A]]), t([0.3]), t([[B]])) == math.inf


def _random_covariance(rng, d):
    root = rng.normal(size=(d, d))
    return root @ root.T + 0.3 * np.eye(d)


@pytest.mark.parametrize("d", [1, 2, 5])
def test_wasserstein_2_and_the_bures_map_are_pots(d):
    """W_2 between non-commuting Gaussians with different means, and the matrix of the OT map, against POT's
    Bures–Wasserstein distance and mapping (an independent implementation)."""
    rng = np.random.default_rng(d)
    a, b = rng.normal(size=d), rng.normal(size=d)
    A, B = _random_covariance(rng, d), _random_covariance(rng, d)
    assert numerics.gaussian_wasserstein_2(t(a), t(A), t(b), t(B)) == pytest.approx(
        float(ot.gaussian.bures_wasserstein_distance(a, b, A, B)), rel=1e-9)
    matrix, _ = ot.gaussian.bures_wasserstein_mapping(a, b, A, B)
    np.testing.assert_allclose(numerics.bures_map(t(a), t(A), t(b), t(B)).numpy(), matrix, rtol=1e-8, atol=1e-10)


def test_wasserstein_2_in_one_dimension_is_the_quantile_distance():
    """W_2² = (a − b)² + (√A − √B)² for 1-D Gaussians."""
    got = numerics.gaussian_wasserstein_2(t([1.5]), t([[0.64]]), t([-0.5]), t([[2.25]]))
    assert got == pytest.approx(math.sqrt(2.0**2 + (0.8 - 1.5) ** 2), rel=1e-12)


def test_component_log_densities_are_scipys():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(7, 3))
    means = rng.normal(size=(4, 3))
    covariances = np.stack([_random_covariance(rng, 3) for _ in range(3)] + [np.diag([0.5, 2.0, 1.5])])
    got = numerics.component_log_densities(t(x), t(means), t(covariances)).numpy()
    expected = np.stack([stats.multivariate_normal(m, c).logpdf(x) for m, c in zip(means, covariances,
                                                                                     strict=True)], axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_cholesky_factor_of_diagonal_and_full_covariances():
    """A stack of diagonal matrices takes the square root of the diagonal (exactly, without a factorisation);
    any other stack the Cholesky factorisation: both give L Lᵀ = Σ with L lower triangular."""
    rng = np.random.default_rng(4)
    diagonal = t(np.stack([np.diag([0.5, 2.0, 1.5]), np.diag([3.0, 0.2, 1.0])]))
    roots = torch.diag_embed(torch.diagonal(diagonal, 0, -2, -1).sqrt())
    torch.testing.assert_close(numerics.cholesky_factor(diagonal), roots, rtol=0, atol=0)
    stacked = t(np.stack([np.diag([0.5, 2.0, 1.5]), _random_covariance(rng, 3)]))
    factor = numerics.cholesky_factor(stacked)
    torch.testing.assert_close(factor @ factor.mT, stacked, rtol=1e-12, atol=1e-12)
    assert torch.equal(factor, torch.tril(factor))


def test_rounding_below_zero_is_clamped_for_singular_and_identical_laws():
    """A rank-deficient covariance has eigenvalues that rounding puts a hair below zero, and W_2 of a law with
    itself is a difference of equal traces: the square roots of both must see zero, not a negative number (a
    NaN, or math's domain error). Twenty draws, of which some do round below zero (checked)."""
    rng = np.random.default_rng(5)
    lowest, distances = [], []
    for _ in range(20):
        v = rng.normal(size=(4, 2))
        singular = t(v @ v.T)  # rank 2 of 4
        lowest.append(float(torch.linalg.eigvalsh(singular).min()))
        root = numerics.sqrtm_psd(singular)
        assert torch.isfinite(root).all()
        torch.testing.assert_close(root @ root, singular, rtol=1e-9, atol=1e-9)
        a, A = t(rng.normal(size=3)), t(_random_covariance(rng, 3))
        distances.append(numerics.gaussian_wasserstein_2(a, A, a, A))
    assert min(lowest) < 0  # the clamp was needed
    assert all(0 <= d < 1e-6 for d in distances)
