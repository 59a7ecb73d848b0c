"""Independent oracles for the built-ins (test-only, installed without their dependencies so that they never
replace the pinned CPU torch): torchcfm's exact minibatch-OT plan (MIT licence) against the sample-based
optimal-transport process's plan on the same samples. (Meta's flow_matching, licensed CC-BY-NC, is the
opt-in oracle of tests/test_oracle_flow_matching.py.)"""

import numpy as np
import pytest
import torch
import yaml

from conftest import scenario_dict
from stochthermo.engine._build import parse_scenario

torchcfm = pytest.importorskip("torchcfm.optimal_transport")


@pytest.mark.parametrize("n, seed", [(64, 0), (200, 3)])
def test_sample_based_ot_plan_matches_torchcfm_exact_plan(n, seed):
    spec = scenario_dict(data={"name": "swiss_roll", "size": 500, "noise": 0.1, "scale": 0.25, "seed": 0},
                         prior={"name": "gaussian", "mean": [0.0, 0.0], "std": 1.0},
                         perturbations={"narrow": {"name": "gaussian", "mean": [0.0, 0.0], "std": 0.9}},
                         protocols={"ot": {"process": "optimal_transport"}}, observers=["thermodynamics"])
    process = next(iter(parse_scenario(yaml.safe_dump(spec)).setup.protocols.values())).process
    process.realise(n, seed, device=torch.device("cpu"), dtype=torch.float64)
    start, end = process.plan_start, process.plan_end
    assert len(start) == n and torch.allclose(process.plan_log_mass.exp(), torch.full((n,), 1.0 / n,
                                                                                      dtype=torch.float64))
    plan = torchcfm.OTPlanSampler(method="exact").get_map(start, end)  # the same two samples, in our pairing
    # our pairing puts start[i] with end[i]: the oracle's plan must be the identity permutation, the same cost
    assert (plan.argmax(1) == np.arange(n)).all(), "the plans pair different points"
    cost = float(((end - start) ** 2).sum(1).mean())
    shuffled = end[torch.randperm(n, generator=torch.Generator().manual_seed(1))]
    assert cost < float(((shuffled - start) ** 2).sum(1).mean())
