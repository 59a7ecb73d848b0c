"""Every shipped scenario is at least built (validated) by the test suite; the findings each one documents are
checked by the tests named in docs/findings.md (gmm.yaml: tests/test_gmm_paper.py, ...)."""

from pathlib import Path

import pytest

from stochthermo import ScenarioError, load_scenario

ROOT = Path(__file__).parents[1]
SHIPPED = ["anisotropic.yaml", "digits.yaml", "digits_784.yaml", "gmm.yaml", "gmm_learned.yaml", "high_dim.yaml",
           "ode_sde_gap.yaml", "prior_error.yaml", "score_matching.yaml", "stochastic.yaml", "swiss_roll.yaml",
           "swiss_roll_learned.yaml"]


def test_the_list_is_every_shipped_scenario():
    assert sorted([*SHIPPED, "diffusers_digits.yaml"]) == sorted(p.name for p in (ROOT / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_scenario_builds(name):
    scenario = load_scenario(ROOT / "scenarios" / name)
    assert scenario.variants and all(v.protocols and v.observers for v in scenario.variants)


def test_diffusers_digits_needs_its_trained_pipeline_first():
    """diffusers_digits.yaml reads the pipeline examples/diffusers_digits/train.py writes to results/: without it
    the scenario is refused in one line naming the missing directory (with it, it builds)."""
    pipeline = ROOT / "results" / "diffusers_digits"
    if (pipeline / "scheduler" / "scheduler_config.json").is_file():
        assert load_scenario(ROOT / "scenarios" / "diffusers_digits.yaml").protocols
        return
    with pytest.raises(ScenarioError, match="results/diffusers_digits: not a diffusers scheduler or pipeline"):
        load_scenario(ROOT / "scenarios" / "diffusers_digits.yaml")
