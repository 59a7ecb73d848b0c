"""Semi-discrete OT solve: stochthermo's solver against POT's, called directly with the same settings, in one
run (docs/theory.md §9).

Two problems: N(0, I) → 1000 weighted points in 2-D, and N(0, I) → 10000 weighted points in 64-D (random
points, Dirichlet-like weights, seeded). For each, the wall time and the final largest |cell mass − weight|
(counted on the same 2^18 fresh source draws) of

* ``stochthermo pot``: ``pot_dual_weights`` (the engine's semi-discrete solver) (POT's averaged SGD drawing from
  our ``Distribution``), timed apart from its Monte Carlo mass check (:func:`checked_solution`);
* ``POT direct``: ``ot.semidiscrete.solve_semidiscrete`` on the same points, weights, iterations, batch and a
  normal sampler, timed alone, its masses counted the same way;
* ``stochthermo newton`` (2-D only): the exact damped Newton solver (masses in closed form).

    python benchmarks/semidiscrete.py [--iterations 10000] [--batch 64] [--skip-newton] [--skip-64d]
"""

from __future__ import annotations

import argparse
import functools
import time

import torch

from stochthermo import default_registry
from stochthermo.measures._semidiscrete import (
    CHECK_SAMPLES,
    SemiDiscreteMap,
    checked_solution,
    pot_dual_weights,
    solve_semidiscrete,
)


def problem(count: int, dim: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    points = 1.5 * torch.randn(count, dim, generator=generator, dtype=torch.float64)
    weights = -torch.log(torch.rand(count, generator=generator, dtype=torch.float64))
    return points, weights / weights.sum()


def normal(n: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(n, dim, generator=generator, dtype=torch.float64)


def mass_error(solved: SemiDiscreteMap, dim: int) -> float:
    generator = torch.Generator().manual_seed(12345)
    counts = torch.zeros(len(solved.points), dtype=torch.float64)
    for _ in range(CHECK_SAMPLES // 2**14):
        z = torch.randn(2**14, dim, generator=generator, dtype=torch.float64)
        counts += torch.bincount(solved.assign(z), minlength=len(counts))
    return float((counts / CHECK_SAMPLES - solved.weights).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--skip-newton", action="store_true")
    parser.add_argument("--skip-64d", action="store_true")
    args = parser.parse_args()
    from ot.semidiscrete import solve_semidiscrete as pot_solve

    cases = [(1000, 2)] + ([] if args.skip_64d else [(10_000, 64)])
    print(f"{'problem':<16} {'solver':<20} {'time s':>8} {'max|mass-w|':>12} {'min weight':>11}")
    for count, dim in cases:
        points, weights = problem(count, dim, seed=count + dim)
        source = default_registry().create("distribution", {"name": "gaussian", "mean": [0.0] * dim, "std": 1.0},
                                           "source")
        label = f"{count} pts {dim}-D"
        start = time.perf_counter()
        dual = pot_dual_weights(source, points, weights, seed=0, iterations=args.iterations, batch=args.batch)
        solved = time.perf_counter()
        ours = checked_solution(SemiDiscreteMap(points, weights, dual), source, "pot", seed=0,
                                check_samples=CHECK_SAMPLES)
        checked = time.perf_counter()
        print(f"{label:<16} {'stochthermo pot':<20} {solved - start:8.1f} {mass_error(ours.map, dim):12.2e} "
              f"{float(weights.min()):11.2e}   (+{checked - solved:.1f} s for its own check: {ours.mass_error:.2e} "
              f"± {ours.mass_standard_error:.1e}, converged {ours.converged})")
        sampler = functools.partial(normal, dim=dim, generator=torch.Generator().manual_seed(0))
        start = time.perf_counter()
        dual = pot_solve(points, sampler, a_target=weights, metric="sqeuclidean", max_iter=args.iterations,
                         batch_size=args.batch)
        elapsed = time.perf_counter() - start
        print(f"{label:<16} {'POT direct':<20} {elapsed:8.1f} "
              f"{mass_error(SemiDiscreteMap(points, weights, dual), dim):12.2e}")
        if dim == 2 and not args.skip_newton:
            start = time.perf_counter()
            exact = solve_semidiscrete(source, points, weights, method="newton")
            elapsed = time.perf_counter() - start
            print(f"{label:<16} {'stochthermo newton':<20} {elapsed:8.1f} {mass_error(exact.map, dim):12.2e}"
                  f"   (closed-form masses: {exact.mass_error:.1e}, converged {exact.converged})")


if __name__ == "__main__":
    main()
