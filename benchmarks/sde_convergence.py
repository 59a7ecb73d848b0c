"""Convergence of the response under reverse-SDE generation (scenarios/stochastic.yaml, γ = 1, Heun) in the
particle count, the SDE steps between saved times and the saved grid.

From a base (4096 particles, 4 Heun steps per saved interval, 64 saved intervals) one setting is varied at a
time; each run uses ``--seeds`` independent noise seeds, and the table prints per perturbation the seed mean
and its standard error of ΔW_1, η and c_1 (docs/theory.md §8: η ≤ c_1 is a theorem under SDE generation; c_1
integrates the squared finite-difference rate of W_1(t), so it depends on how finely the saved grid resolves
the fast merging of the coupled ensembles near τ).

    python benchmarks/sde_convergence.py [--seeds 4]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from stochthermo import load_scenario, simulate

BASE = {"particles": 4096, "steps_per_save": 4, "time_steps": 64}
VARIATIONS = [("particles", 1024), ("particles", 16384), ("steps_per_save", 1), ("steps_per_save", 16),
              ("time_steps", 256)]


def mean_and_error(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args()
    print(f"{'particles':>9} {'steps':>5} {'grid':>4} {'perturbation':>12} {'dW_1':>10} {'+-':>8} {'eta':>9} {'+-':>8} "
          f"{'c_1':>9} {'+-':>8} {'s':>5}")
    for change in [None, *VARIATIONS]:
        setting = dict(BASE)
        if change is not None:
            setting[change[0]] = change[1]
        solver = f"{{name: stochastic_heun, gamma: 1.0, steps_per_save: {setting['steps_per_save']}}}"
        overrides = [f"particles={setting['particles']}", f"time_steps={setting['time_steps']}",
                     f"seeds={list(range(args.seeds))}", "observers=[response]",
                     f"protocols={{sde: {{process: {{name: scheduled, schedule: cosine}}, solver: {solver}}}}}"]
        start = time.perf_counter()
        ds = simulate(load_scenario("scenarios/stochastic.yaml", overrides=overrides)).sel(protocol="sde")
        elapsed = time.perf_counter() - start
        for perturbation in ds.perturbation.values:
            row = ds.sel(perturbation=perturbation)
            figures = [mean_and_error(row[name].values) for name in ("wasserstein_1_change", "response", "loss_cost")]
            numbers = " ".join(f"{m:>{w}.3e} {e:>8.1e}" for (m, e), w in zip(figures, (10, 9, 9), strict=True))
            print(f"{setting['particles']:>9} {setting['steps_per_save']:>5} {setting['time_steps']:>4} "
                  f"{perturbation:>12} {numbers} {elapsed:>5.0f}", flush=True)


if __name__ == "__main__":
    main()
