"""Benchmark: reverse-SDE sampling throughput (particle-steps per second) of the ``euler_maruyama`` solver
against a bare torch Euler–Maruyama loop with the same velocity, force, temperature, batch and steps, side
by side in one run. Target: at least 0.8x of the bare loop.

The problem is the 1-D mixture of scenarios/gmm.yaml under the vp_linear schedule (finite force and
temperature everywhere, so neither loop switches the noise off), and a 2-D point cloud of 2000 points
(the chunked empirical velocity).

    python benchmarks/sde_throughput.py [--particles 20000] [--steps 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import yaml

from stochthermo import parse_scenario
from stochthermo.roles._equation import estimator_equation

CASES = {
    "1-D mixture": {"name": "gaussian_mixture", "weights": [0.5, 0.5], "means": [-0.6, 0.6], "stds": [0.3, 0.3]},
    "2-D point cloud (2000)": {"name": "swiss_roll", "size": 2000, "noise": 0.1},
}


def _protocol(data: dict):
    dim = 1 if data["name"] == "gaussian_mixture" else 2
    origin = 0.0 if dim == 1 else [0.0, 0.0]
    spec = {"data": data, "prior": {"name": "gaussian", "mean": origin}, "perturbations": {"p": {
        "name": "gaussian", "mean": origin}}, "protocols": {"p": {
            "process": {"name": "scheduled", "schedule": "vp_linear"},
            "solver": {"name": "euler_maruyama", "gamma": 1.0}}}}
    return parse_scenario(yaml.safe_dump(spec)).protocols["p"]


def _bare(process, x, times, generator, gamma=1.0):
    """The same Euler–Maruyama steps written as a plain torch loop."""
    grid = times.tolist()
    for t, u in zip(grid[:-1], grid[1:], strict=True):
        velocity = process.velocity(t, x)
        drift = velocity + gamma**2 * (velocity - process.force_field(t, x))
        temperature = float(process.temperature(torch.tensor(t, dtype=torch.float64)))
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x = x + (u - t) * drift + math.sqrt(2 * gamma**2 * temperature * abs(u - t)) * noise
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, default=20000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"reverse-SDE throughput, {args.particles} particles x {args.steps} steps, median of {args.repeat}")
    for label, data in CASES.items():
        protocol = _protocol(data)
        process, equation = protocol.process, estimator_equation(protocol.estimator)
        x0 = process.end_distribution().sample(args.particles, torch.Generator().manual_seed(0))
        times = torch.linspace(process.tau, 0.02 * process.tau, args.steps + 1, dtype=torch.float64)
        engine, bare = [], []
        for _ in range(args.repeat):  # interleaved, so drifts of a noisy machine hit both alike
            start = time.perf_counter()
            protocol.solver.solve(equation, x0, times, generator=torch.Generator().manual_seed(1))
            engine.append(time.perf_counter() - start)
            start = time.perf_counter()
            _bare(process, x0, times, torch.Generator().manual_seed(1))
            bare.append(time.perf_counter() - start)
        work = args.particles * args.steps
        rate_engine, rate_bare = work / statistics.median(engine), work / statistics.median(bare)
        ratio = rate_engine / rate_bare
        verdict = "met" if ratio >= 0.8 else "NOT met"
        print(f"  {label:24s} engine {rate_engine / 1e6:7.2f} M particle-steps/s   bare loop "
              f"{rate_bare / 1e6:7.2f} M/s   ratio {ratio:.2f}  (target >= 0.8: {verdict})")


if __name__ == "__main__":
    main()
