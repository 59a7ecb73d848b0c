"""The example plugin's own tests, written with stochthermo's conformance helpers."""

from pathlib import Path

import pytest
from stochthermo_polynomial import Polynomial

from stochthermo import ScenarioError, load_scenario, simulate
from stochthermo.testing import check_schedule


@pytest.mark.parametrize("powers", [(1.0, 1.0), (2.0, 1.0), (3.0, 1.5)])
def test_conformance(powers):
    check_schedule(Polynomial(*powers))


def test_rejects_powers_below_one():
    with pytest.raises(ScenarioError, match="must be >= 1"):
        Polynomial(power_sigma=0.5)


def test_scenario_runs_and_relations_hold():
    ds = simulate(load_scenario(Path(__file__).parents[1] / "scenario.yaml"), device="cpu")
    for name in [v for v in ds.data_vars if v.startswith("holds_")]:
        assert (ds[name].values == 1).all(), name
    # same end-to-end map in 1-D: the response agrees with cond-OT's; the cost does not
    eta = ds.response.values.ravel()
    assert abs(eta[0] / eta[1] - 1) < 1e-6
    costs = ds.kinetic_cost.mean("seed")
    assert costs.sel(protocol="polynomial").item() != pytest.approx(costs.sel(protocol="cond_ot").item())
