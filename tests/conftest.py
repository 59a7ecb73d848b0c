"""Shared helpers: scenarios built from Python dicts."""

from __future__ import annotations

import copy
import os

import pytest
import yaml
from hypothesis import settings

from stochthermo.engine._build import parse_scenario
from stochthermo.engine._simulate import simulate
from stochthermo.testing import continuity_residual  # noqa: F401  (re-exported for the tests

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


def use_registry(monkeypatch, **plugins):
    """A registry of the built-ins and the test-only ``plugins`` (by name), made the one scenarios are built with."""
    from stochthermo.engine._registry import Registry

    registry = Registry(entry_points=False, extra=plugins)
    monkeypatch.setattr("stochthermo.engine._build.default_registry", lambda: registry)
    return registry


@pytest.fixture
def write_scenario(tmp_path):
    def write(spec: dict | str, name: str = "scenario.yaml"):
        path = tmp_path / name
        path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec, sort_keys=False))
        return path

    return write
