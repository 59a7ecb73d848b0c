"""Shared helpers: scenarios built from Python dicts."""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import settings

from stochthermo.engine._build import parse_scenario
from stochthermo.engine._simulate import simulate
from stochthermo.testing import continuity_residual  # noqa: F401  (re-exported for the tests

# CI draws its examples from a seed fixed by the landing's commit (pytest_configure below): reproducible per
# landing, new examples on every landing; no example database (a fresh checkout has none anyway).
settings.register_profile("ci", database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def landing_seed() -> int:
    """The first 32 bits of the checked-out commit (0 outside a git checkout)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
        return int(head[:8], 16)
    except (OSError, subprocess.CalledProcessError, ValueError):
        return 0


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """In CI (``CI`` set, as .ci/run does) seed hypothesis with :func:`landing_seed` unless
    ``--hypothesis-seed`` is given: the seed a failure reports is the commit's, so it replays anywhere."""
    if os.environ.get("CI") and config.getoption("hypothesis_seed", None) is None:
        config.option.hypothesis_seed = landing_seed()

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


def assert_same_run(a, b):
    """Two results hold the same numbers, coordinates and provenance (their run records aside: the date, host
    and wall time of each run, :func:`stochthermo.reproducible`)."""
    import xarray as xr

    from stochthermo import reproducible

    xr.testing.assert_identical(reproducible(a), reproducible(b))
