"""Shared helpers: scenarios built from Python dicts."""

from __future__ import annotations

import copy
import os

import pytest
import torch
import yaml
from hypothesis import settings

from stochthermo.engine import simulate
from stochthermo.scenario import parse_scenario

# CI explores a fixed set of examples (reproducible landings); local runs draw new ones each time.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

BASE = {
    "tau": 1.0,
    "time_steps": 64,
    "particles": 1024,
    "data": {"name": "gaussian_mixture", "weights": [0.5, 0.5], "means": [-0.6, 0.6], "stds": [0.3, 0.3]},
    "prior": {"name": "gaussian", "mean": 0.0, "std": 1.0},
    "protocols": {"cosine": {"process": {"name": "scheduled", "schedule": "cosine"}}},
    "perturbations": {"shifted": {"name": "gaussian", "mean": 1.0, "std": 1.0}},
    "observers": ["thermodynamics", "response", "bounds"],
}


def scenario_dict(**changes) -> dict:
    spec = copy.deepcopy(BASE)
    spec.update(changes)
    return spec


def run_dict(spec: dict, **kwargs):
    return simulate(parse_scenario(yaml.safe_dump(spec, sort_keys=False), source="<test>", **kwargs), device="cpu")


@pytest.fixture
def write_scenario(tmp_path):
    def write(spec: dict | str, name: str = "scenario.yaml"):
        path = tmp_path / name
        path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec, sort_keys=False))
        return path

    return write


def continuity_residual(process, t: float, x: torch.Tensor, h: float = 1e-5):
    """∂_t log P + ν·∇log P + ∇·ν at (t, x) with P_t the process's closed-form marginal (autograd for the
    space derivatives, a central difference in time), its scale max|∂_t log P| + 1, and ∇log P."""
    dlogp_dt = (process.marginal(t + h).log_prob(x) - process.marginal(t - h).log_prob(x)) / (2 * h)
    xr = x.clone().requires_grad_(True)
    grad_logp = torch.autograd.grad(process.marginal(t).log_prob(xr).sum(), xr)[0]
    nu = process.velocity(t, xr)
    divergence = sum(torch.autograd.grad(nu[:, i].sum(), xr, retain_graph=True)[0][:, i] for i in range(x.shape[1]))
    residual = (dlogp_dt + (nu * grad_logp).sum(1) + divergence).detach()
    return residual, float(dlogp_dt.abs().max()) + 1, grad_logp
