"""The η interval in 64 and 784 dimensions against the exact η, and what the bracket costs beside the W_1 work.

gmm.yaml's mixture embedded as a product law (coordinate 1 carries ½N(−0.6, 0.3²) + ½N(0.6, 0.3²), the
others N(0, 0.3²)), started from N(0, I) and perturbed in coordinate 1 only (shifted: N(e_1, I); narrow:
N(0, diag(0.8², 1, ...))), so every η equals the 1-D run's (a quadrature: exact to ~1e-10). Prints, per
dimension, protocol and perturbation: the exact η, the interval at 95 %, whether it contains η and its width
relative to η; then the seconds of the bracket (both perturbations) beside the seconds of the exact W_1 with
its rate at every saved time (POT's network simplex), measured side by side on the same particles.

    python benchmarks/eta_bracket.py            # 64-D at 4096 particles and 784-D at 2048: ~4 min on 2 cores
    python benchmarks/eta_bracket.py --quick    # 64-D at 1024 particles only
"""

from __future__ import annotations

import argparse
import time

import torch
import yaml

from stochthermo import parse_scenario, simulate
from stochthermo.engine._flows import transport
from stochthermo.measures import change_bracket, w1_and_rate


def embedded(dim: int, particles: int, wasserstein: str = "sliced") -> dict:
    def vector(first):
        return [first] + [0.0] * (dim - 1)

    return {
        "name": f"embedded_{dim}", "device": "cpu", "seeds": [0], "tau": 1.0, "time_steps": 32,
        "particles": particles,
        "data": {"name": "gaussian_mixture", "weights": [0.5, 0.5], "means": [vector(-0.6), vector(0.6)],
                 "stds": [0.3, 0.3]},
        "prior": {"name": "gaussian", "dim": dim} if dim > 1 else {"name": "gaussian", "mean": 0.0, "std": 1.0},
        "protocols": {"cosine": {"process": {"name": "scheduled", "schedule": "cosine"}},
                      "cond_ot": {"process": {"name": "scheduled", "schedule": "cond_ot"}}},
        "perturbations": {"shifted": {"name": "gaussian", "mean": vector(1.0), "std": 1.0},
                          "narrow": {"name": "gaussian", "mean": vector(0.0), "std": [0.8] + [1.0] * (dim - 1)}},
        "observers": [{"name": "response", "wasserstein": wasserstein}]}


def run(spec: dict):
    scenario = parse_scenario(yaml.safe_dump(spec), source=spec["name"])
    return scenario, simulate(scenario, device="cpu").isel(seed=0)


def costs(scenario) -> tuple[float, float]:
    """Seconds of the bracket and of the exact W_1 with its rate, on the cond-OT flows of seed 0."""
    setup = scenario.setup
    protocol = setup.protocols["cond_ot"]
    times = setup.times.to(torch.float64)
    flows = transport(protocol.estimator, protocol.solver, true_start=protocol.process.end_distribution(),
                      perturbations=setup.perturbations, separate_forward=False, times=times,
                      particles=setup.particles, seed=0)
    start = time.perf_counter()
    for trajectory in flows.perturbed.values():
        change_bracket((flows.true.positions[0], trajectory.positions[0]),
                       (flows.true.positions[-1], trajectory.positions[-1]), alpha=0.0125, seed=0)
    bracket = time.perf_counter() - start
    start = time.perf_counter()
    for trajectory in flows.perturbed.values():
        w1_and_rate(flows.true, trajectory)
    return bracket, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64-D at 1024 particles only")
    cases = [(64, 1024)] if parser.parse_args().quick else [(64, 4096), (784, 2048)]
    _, exact = run(embedded(1, 4096))
    print(f"{'dim':>4} {'particles':>9} {'protocol':>8} {'start':>8} {'eta exact':>10} {'eta lo':>9} {'eta hi':>9} "
          f"{'contains':>8} {'width/eta':>9}")
    for dim, particles in cases:
        scenario, ds = run(embedded(dim, particles))
        for protocol in ds.protocol.values:
            for perturbation in ds.perturbation.values:
                where = {"protocol": protocol, "perturbation": perturbation}
                eta = float(exact.response.sel(where))
                low, high = float(ds.response_lower.sel(where)), float(ds.response_upper.sel(where))
                print(f"{dim:>4} {particles:>9} {protocol:>8} {perturbation:>8} {eta:>10.5f} {low:>9.5f} "
                      f"{high:>9.5f} {str(low <= eta <= high):>8} {(high - low) / eta:>9.1%}")
        bracket, w1 = costs(scenario)
        print(f"     {dim}-D: bracket {bracket:.2f} s, exact W_1 and rate at {len(scenario.setup.times)} times "
              f"{w1:.2f} s: bracket / W_1 work = {bracket / w1:.3f}")


if __name__ == "__main__":
    main()
