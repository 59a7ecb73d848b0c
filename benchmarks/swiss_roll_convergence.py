"""Convergence of the Swiss-roll results (scenarios/swiss_roll.yaml) in the ensemble size.

Runs the scenario at several particle counts with the exact W_1 (POT network simplex) and with the sliced
W_1, and prints per protocol η, c_1, w_D, the housekeeping share and the finite-sample W_1 bias (two
independent samples of the data law), so that the orderings of experiments.md E2 can be judged against
the sampling noise.

    python benchmarks/swiss_roll_convergence.py [--sizes 512 1024 2048] [--sliced-sizes 4096 16384]
"""

from __future__ import annotations

import argparse
import time

from stochthermo import load_scenario, simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="scenarios/swiss_roll.yaml")
    parser.add_argument("--sizes", type=int, nargs="*", default=[512, 1024, 2048])
    parser.add_argument("--sliced-sizes", type=int, nargs="*", default=[4096, 16384])
    args = parser.parse_args()
    runs = [(n, "exact") for n in args.sizes] + [(n, "sliced") for n in args.sliced_sizes]
    print(f"{'W_1':>6} {'n':>6} {'protocol':>8} {'eta':>10} {'c_1':>9} {'w_D':>8} {'hk share':>8} {'dW_1':>9} "
          f"{'W_1 bias':>9} {'s':>6}")
    for n, estimator in runs:
        overrides = [f"particles={n}", "observers=[thermodynamics, {name: response, wasserstein: "
                     f"{estimator}}}, bounds]"]
        start = time.perf_counter()
        ds = simulate(load_scenario(args.scenario, overrides=overrides)).isel(seed=0, perturbation=0)
        elapsed = time.perf_counter() - start
        for protocol in ds.protocol.values:
            row = ds.sel(protocol=protocol)
            print(f"{estimator:>6} {n:>6} {protocol:>8} {float(row.response):>10.3e} {float(row.loss_cost):>9.4f} "
                  f"{float(row.dissipation):>8.3f} {float(row.housekeeping_share):>8.3f} "
                  f"{float(row.wasserstein_1_change):>9.2e} {float(row.wasserstein_1_bias_data):>9.2e} "
                  f"{elapsed:>6.0f}", flush=True)


if __name__ == "__main__":
    main()
