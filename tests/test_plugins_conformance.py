"""Every registered schedule and distribution passes the conformance checks plugin authors use."""

import pytest
import torch

from stochthermo.engine._registry import default_registry
from stochthermo.testing import check_distribution, check_schedule
from stochthermo_plugins.distributions import Gaussian, GaussianMixture, Uniform

REGISTRY = default_registry()


@pytest.mark.parametrize("name", REGISTRY.names("schedule"))
def test_schedule_conformance(name):
    check_schedule(REGISTRY.get("schedule", name)())


@pytest.mark.parametrize("distribution", [
    Gaussian(1.0, 1.0), Gaussian([0.0, 1.0], 0.5), Gaussian([0.0, 0.0], covariance=[[1.0, 0.3], [0.3, 0.5]]),
    GaussianMixture([0.5, 0.5], [-0.6, 0.6], [0.3, 0.3]),
    GaussianMixture([0.2, 0.8], [[0.0, 1.0], [2.0, 0.0]], [0.3, 1.0]),
    Uniform(-1.7, 1.7), Uniform([0.0, -1.0], [1.0, 1.0]),
], ids=lambda d: f"{d.name}-{d.dim}d")
def test_distribution_conformance(distribution):
    check_distribution(distribution)


def test_check_schedule_rejects_negative_temperature():
    class Shrinking(REGISTRY.get("schedule", "cond_ot")):
        name = "shrinking"

        def sigma(self, s):
            return s * (1 - s) ** 2  # sigma/m = s(1-s) decreases after s = 1/2

        def dsigma(self, s):
            return (1 - s) ** 2 - 2 * s * (1 - s)

    with pytest.raises(AssertionError, match="negative temperature"):
        check_schedule(Shrinking())


def test_check_schedule_rejects_wrong_derivative():
    class Wrong(REGISTRY.get("schedule", "cosine")):
        name = "wrong"

        def dm(self, s):
            return torch.zeros_like(s)

    with pytest.raises(AssertionError, match="dm differs from autograd"):
        check_schedule(Wrong())


def test_uniform_quantiles_exact_in_both_tails():
    u = Uniform(-1.0, 3.0)
    z = torch.tensor([-8.0, 0.0, 8.0], dtype=torch.float64)
    x = u.from_normal_score(z)[:, 0]
    assert float(x[0]) > -1.0 and float(x[2]) < 3.0 and float(x[1]) == 1.0
    assert float(3.0 - x[2]) > 0  # 1 - Phi(8) is resolved, not rounded to the edge
