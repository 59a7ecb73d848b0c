"""The Swiss roll (scenarios/swiss_roll.yaml) against its former code paths and against the hardware's floor.

Three parts, in one process on one machine:

1. **End to end, side by side.** The scenario run with the former kernels (every logit exponentiated, subnormal
   results included; no screen; no factorised grid kernel; the common-support W_1 on all n x n pairs, its
   per-time problems one after another; SuperLU's default ordering) and with today's (logits floored at 700
   below their row's maximum before the exponential, the box screen of ``stochthermo.numerics._screening``,
   the grid split's and the snapshots' grids factorised by axis (``stochthermo.numerics._product_grid``), W_1
   on one support solved between the net surplus and the net deficit over the torch threads, a minimum-degree
   ordering): wall times, their ratio, and the largest relative difference of every variable of the two
   Datasets, and of every number of the printed summary table.
2. **Stages and floor.** Today's run split into its stages (the time inside the posterior kernel during the
   particle flows and during the grid split, the rest of the grid split, its sparse solves, the W_1 simplex
   problems), each with the number of exponentials it formed and the time a bare torch loop takes for the
   same shapes (point by point: ``addmm`` + ``softmax`` + ``matmul``, one call per recorded call; on a grid:
   the two factor tables and one matrix product), or POT's ``emd`` on the same sizes one after another: each
   stage printed as a multiple of that floor.
3. **Scaling.** The cost of one kernel call for N = 512 ... 8192 particles against M = 2000 data points and for
   M = 500 ... 8000 data points against 1024 particles (at the variances the scenario's flows meet), of one
   factorised grid call against M points, and of one common-support W_1 problem at N particles: the fitted
   exponents, and the largest N and M whose whole scenario (the counts of part 2 times the unit costs) fits
   in 5 minutes.

    python benchmarks/two_dimensional_floor.py     # about 7 minutes on 2 cores
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

import stochthermo
import stochthermo.measures._wasserstein as wasserstein
import stochthermo.numerics._helmholtz as helmholtz
import stochthermo.numerics._posterior as posterior
import stochthermo.numerics._product_grid as product_grid

ROOT = Path(__file__).parents[1]
SCENARIO = ROOT / "scenarios" / "swiss_roll.yaml"
BUDGET_S = 300.0


@contextmanager
def former_paths():
    """The kernels as they were before the issue: no exponent floor, no screen, no factorised grid kernel, the
    common-support W_1 on all n x n pairs one time after another, COLAMD. (The lifted matrix products of the
    point-by-point kernel stay: the former addmm cannot be switched back, so the ratio understates the gain.)"""
    saved = (posterior.EXP_FLOOR, posterior.SCREEN_MIN_COMPONENTS, product_grid.MIN_GRID_POINTS,
             wasserstein.SOLVER_THREADS, wasserstein.common_support_coupling, helmholtz.ORDERING)
    posterior.EXP_FLOOR, posterior.SCREEN_MIN_COMPONENTS, product_grid.MIN_GRID_POINTS = -math.inf, 1 << 62, 1 << 62
    wasserstein.SOLVER_THREADS, helmholtz.ORDERING = 1, "COLAMD"
    wasserstein.common_support_coupling = _all_pairs_coupling
    try:
        yield
    finally:
        (posterior.EXP_FLOOR, posterior.SCREEN_MIN_COMPONENTS, product_grid.MIN_GRID_POINTS,
         wasserstein.SOLVER_THREADS, wasserstein.common_support_coupling, helmholtz.ORDERING) = saved


def _all_pairs_coupling(x, wx, wy):
    """The former common-support coupling: the simplex over all n x n pairs of the one support."""
    return wasserstein._simplex_coupling(x, wx, x, wy, "euclidean")


class Stages:
    """Wall time and kernel shapes per stage, recorded by wrapping the stage functions where they are called."""

    def __init__(self):
        self.time = defaultdict(float)
        self.kernel_time = defaultdict(float)  # stage -> seconds inside the posterior kernel
        self.kernel_shapes = defaultdict(list)  # stage -> [(n, K, p), ...] of point-by-point calls
        self.grid_shapes = defaultdict(list)  # stage -> [(n1, n2, K, p), ...] of factorised grid calls
        self.screened_pairs = defaultdict(int)
        self.emd_sizes = []
        self.current = "other"

    def install(self):
        import stochthermo.engine._flows as flows
        import stochthermo_plugins.observers.response as response
        import stochthermo_plugins.observers.thermodynamics as thermodynamics

        stages = self
        original_posterior, original_split = posterior.posterior_average, thermodynamics.helmholtz_split
        original_solve, original_flows = helmholtz.solve_normal_equations, flows.run_flows
        original_w1, original_emd = response.w1_and_rate, wasserstein._simplex_coupling
        original_screen = posterior._screened_softmax

        def in_stage(name, function):
            def wrapped(*args, **kwargs):
                outer, stages.current = stages.current, name
                start = time.perf_counter()
                try:
                    return function(*args, **kwargs)
                finally:
                    stages.time[name] += time.perf_counter() - start
                    stages.current = outer
            return wrapped

        def kernel(x, centres, values, *args, **kwargs):
            axes = product_grid.product_axes(x)
            if axes is None:
                stages.kernel_shapes[stages.current].append((len(x), len(centres), values.shape[1]))
            else:
                stages.grid_shapes[stages.current].append((*map(len, axes), len(centres), values.shape[1]))
            start = time.perf_counter()
            try:
                return original_posterior(x, centres, values, *args, **kwargs)
            finally:
                stages.kernel_time[stages.current] += time.perf_counter() - start

        def screen(x, centres, *args):
            result = original_screen(x, centres, *args)
            if result is not None:
                stages.screened_pairs[stages.current] += 1
            return result

        def coupling(x, *args, **kwargs):
            stages.emd_sizes.append((len(x), len(args[1])))
            return original_emd(x, *args, **kwargs)

        posterior.posterior_average = kernel
        posterior._screened_softmax = screen
        for module in _kernel_users():
            module.posterior_average = kernel
        thermodynamics.helmholtz_split = in_stage("grid split", original_split)
        helmholtz.solve_normal_equations = in_stage("grid split: sparse solve", original_solve)
        flows.run_flows = in_stage("particle flows", original_flows)
        response.w1_and_rate = in_stage("W_1 at every time", original_w1)
        wasserstein._simplex_coupling = coupling


def _kernel_users():
    import stochthermo.measures._laws as laws
    import stochthermo_plugins.processes.linear as linear
    import stochthermo_plugins.processes.optimal_transport as optimal_transport

    return [linear, optimal_transport, laws]


def run(overrides=()):
    start = time.perf_counter()
    dataset = stochthermo.run(SCENARIO, overrides=list(overrides), write=False)
    return dataset, time.perf_counter() - start


def differences(a, b) -> dict[str, tuple[float, float]]:
    """Per variable that differs at all: the largest difference relative to each value, and relative to the
    variable's largest magnitude (the measure for quantities that are zero up to rounding, e.g. residuals)."""
    found = {}
    for variable in a.data_vars:
        x, y = np.asarray(a[variable].values), np.asarray(b[variable].values)
        if x.dtype.kind != "f":
            continue
        finite = np.isfinite(x) & np.isfinite(y)
        if not finite.any() or np.array_equal(x[finite], y[finite]):
            continue
        gap = np.abs(x[finite] - y[finite])
        found[variable] = (float((gap / np.maximum(np.abs(x[finite]), 1e-300)).max()),
                           float(gap.max() / np.abs(x[finite]).max()))
    return found


def table_difference(a, b) -> float:
    """Largest relative difference between the numbers of the two summary tables (``ds.stochthermo.summary()``,
    the table the command line prints)."""
    tables = [ds.stochthermo.summary().select_dtypes("number").to_numpy(dtype=float) for ds in (a, b)]
    finite = np.isfinite(tables[0]) & np.isfinite(tables[1])
    scale = np.maximum(np.abs(tables[0][finite]), 1e-300)
    return float((np.abs(tables[0][finite] - tables[1][finite]) / scale).max())


def bare_kernel_time(shapes) -> float:
    """A bare torch loop: addmm + softmax + matmul for every recorded (n, K, p), logits of moderate range."""
    generator = torch.Generator().manual_seed(0)
    total = 0.0
    for n, k, p in shapes:
        x = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        c = torch.randn(k, 2, generator=generator, dtype=torch.float64)
        v = torch.randn(k, max(p, 1), generator=generator, dtype=torch.float64)
        bias = torch.zeros(k, dtype=torch.float64)
        start = time.perf_counter()
        torch.softmax(torch.addmm(bias, x, c.T), dim=1) @ v
        total += time.perf_counter() - start
    return total


def bare_grid_time(shapes) -> float:
    """A bare torch loop for the factorised grid kernel, for every recorded (n1, n2, K, p): the two factor
    tables (squared differences, scaled, exponentiated), the first times each value, and one matrix product
    ((p + 1) n1 x K) @ (K x n2)."""
    generator = torch.Generator().manual_seed(0)
    total = 0.0
    for n1, n2, k, p in shapes:
        u, w = torch.randn(n1, 1, generator=generator, dtype=torch.float64), torch.randn(n2, 1, dtype=torch.float64)
        c = torch.randn(2, k, generator=generator, dtype=torch.float64)
        values = torch.randn(p, 1, k, generator=generator, dtype=torch.float64)
        start = time.perf_counter()
        first, second = ((u - c[0]) ** 2).mul_(-0.5).exp_(), ((w - c[1]) ** 2).mul_(-0.5).exp_()
        torch.cat([first[None], first * values]).flatten(0, 1) @ second.T
        total += time.perf_counter() - start
    return total


def bare_emd_time(sizes) -> float:
    """POT's emd alone, one (n, m) problem after another, equal weights on each side."""
    import ot

    rng = np.random.default_rng(0)
    total = 0.0
    for n, m in sizes:
        x, y = rng.normal(size=(n, 2)), rng.normal(size=(m, 2))
        start = time.perf_counter()
        ot.emd(np.full(n, 1.0 / n), np.full(m, 1.0 / m), ot.dist(x, y, metric="euclidean"),
               numItermax=wasserstein.EMD_ITERATIONS)
        total += time.perf_counter() - start
    return total


def grid_unit_cost(m: int, repeats: int = 3) -> float:
    """Mean time of one factorised grid call (170 x 190 faces, the scenario's largest) over an m-point roll, at
    the variances the grid split meets."""
    generator = torch.Generator().manual_seed(1)
    angle = 1.5 * math.pi * (1 + 2 * torch.rand(m, generator=generator, dtype=torch.float64))
    roll = 0.25 * torch.stack([angle * torch.cos(angle), angle * torch.sin(angle)], 1)
    u, w = torch.linspace(-4, 4, 170, dtype=torch.float64), torch.linspace(-4, 4, 190, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(u, w, indexing="ij"), -1).reshape(-1, 2)
    posterior.posterior_average(grid, roll, roll, 0.01)  # warm up
    start = time.perf_counter()
    for _ in range(repeats):
        for variance in (0.01, 0.05, 0.2):
            posterior.posterior_average(grid, roll, roll, variance)
    return (time.perf_counter() - start) / (3 * repeats)


def common_support_unit_cost(n: int, repeats: int = 3) -> float:
    """Mean time of one common-support W_1 problem at n particles: equal weights against importance weights
    of a unit log-normal spread, as at the scenario's times (net surplus and deficit about n/2 each)."""
    generator = torch.Generator().manual_seed(2)
    total = 0.0
    for _ in range(repeats):
        x = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        uniform = torch.full((n,), 1.0 / n, dtype=torch.float64)
        weights = torch.softmax(torch.randn(n, generator=generator, dtype=torch.float64), 0)
        start = time.perf_counter()
        wasserstein.common_support_coupling(x, uniform, weights)
        total += time.perf_counter() - start
    return total / repeats


def exponent(sizes, times) -> float:
    return float(np.polyfit(np.log(sizes), np.log(times), 1)[0])


def kernel_unit_cost(n: int, m: int, variances=(0.01, 0.05, 0.2), repeats: int = 3) -> float:
    """Mean time of one posterior call, n queries near an m-point roll, over the flows' variances."""
    generator = torch.Generator().manual_seed(1)
    angle = 1.5 * math.pi * (1 + 2 * torch.rand(m, generator=generator, dtype=torch.float64))
    roll = 0.25 * torch.stack([angle * torch.cos(angle), angle * torch.sin(angle)], 1)
    x = roll[torch.randint(0, m, (n,), generator=generator)] + 0.2 * torch.randn(n, 2, generator=generator,
                                                                                 dtype=torch.float64)
    values = roll.clone()
    posterior.posterior_average(x, roll, values, variances[0])  # warm up (allocations, thread pool)
    start = time.perf_counter()
    for _ in range(repeats):
        for variance in variances:
            posterior.posterior_average(x, roll, values, variance)
    return (time.perf_counter() - start) / (repeats * len(variances))


def main() -> None:
    print(f"torch threads: {torch.get_num_threads()}")
    with former_paths():
        former, former_time = run()
    today, today_time = run()
    print("\n1. end to end (scenarios/swiss_roll.yaml, in one process)")
    print(f"   former paths {former_time:7.2f} s   today {today_time:7.2f} s   ratio {former_time / today_time:.2f}x")
    print(f"   largest relative difference of a number in the summary table: {table_difference(former, today):.2e}")
    changed = differences(former, today)
    print(f"   Dataset variables that differ at all: {len(changed)} of {len(today.data_vars)}")
    for variable, (relative, to_scale) in sorted(changed.items(), key=lambda item: -item[1][1]):
        print(f"     {variable:32s} relative {relative:.2e}   relative to its largest magnitude {to_scale:.2e}")

    stages = Stages()
    stages.install()
    _, staged_time = run()
    print(f"\n2. stages of today's run ({staged_time:.2f} s in all) against a bare torch / POT loop")
    print(f"   {'stage':28s} {'time':>8s} {'calls':>6s} {'exponentials':>18s} {'floor':>8s} {'multiple':>8s}")
    for stage in ("particle flows", "grid split"):
        shapes, grids = stages.kernel_shapes[stage], stages.grid_shapes[stage]
        evaluations = sum(n * k for n, k, _ in shapes) + sum((n1 + n2) * k for n1, n2, k, _ in grids)
        kernel_time = stages.kernel_time[stage]
        floor = bare_kernel_time(shapes) + bare_grid_time(grids)
        print(f"   {stage + ' (kernel)':28s} {kernel_time:7.2f}s {len(shapes) + len(grids):6d} {evaluations:18.3e} "
              f"{floor:7.2f}s {kernel_time / floor:7.2f}x   ({len(grids)} factorised on a grid, "
              f"{stages.screened_pairs[stage]} screened)")
    assembly = stages.time["grid split"] - stages.kernel_time["grid split"] - stages.time["grid split: sparse solve"]
    print(f"   {'grid split: the rest':28s} {assembly:7.2f}s (faces, the process's velocity around the kernel, the "
          "normal equations' assembly)")
    print(f"   {'grid split: sparse solve':28s} {stages.time['grid split: sparse solve']:7.2f}s "
          "(SuperLU itself: the floor)")
    emd_floor = bare_emd_time(stages.emd_sizes)
    pairs = np.mean([n * m for n, m in stages.emd_sizes]) ** 0.5
    print(f"   {'W_1 at every time':28s} {stages.time['W_1 at every time']:7.2f}s {len(stages.emd_sizes):6d} "
          f"{'-':>18s} {emd_floor:7.2f}s {stages.time['W_1 at every time'] / emd_floor:7.2f}x   (simplex problems "
          f"of {pairs:.0f} x {pairs:.0f} on average: the net surplus against the net deficit)")

    print("\n3. scaling (fitted exponent of the cost of one call; 2 cores)")
    particles, points = [512, 1024, 2048, 4096, 8192], [500, 1000, 2000, 4000, 8000]
    by_n = [kernel_unit_cost(n, 2000) for n in particles]
    by_m = [kernel_unit_cost(1024, m) for m in points]
    emd_sizes = [512, 1024, 2048, 4096, 8192]
    by_emd = [common_support_unit_cost(n, repeats=1 if n > 2048 else 3) for n in emd_sizes]
    print("   kernel, N particles x 2000 points: "
          + ", ".join(f"{n}: {t * 1e3:.1f} ms" for n, t in zip(particles, by_n, strict=True)))
    print(f"      exponent in N: {exponent(particles, by_n):.2f}")
    print("   kernel, 1024 particles x M points: "
          + ", ".join(f"{m}: {t * 1e3:.1f} ms" for m, t in zip(points, by_m, strict=True)))
    print(f"      exponent in M: {exponent(points, by_m):.2f}")
    by_grid = [grid_unit_cost(m) for m in points]
    print("   factorised grid kernel, 170 x 190 faces x M points: "
          + ", ".join(f"{m}: {t * 1e3:.1f} ms" for m, t in zip(points, by_grid, strict=True)))
    print(f"      exponent in M: {exponent(points, by_grid):.2f}")
    print("   common-support W_1, N particles: "
          + ", ".join(f"{n}: {t:.2f} s" for n, t in zip(emd_sizes, by_emd, strict=True)))
    emd_exponent = exponent(emd_sizes, by_emd)
    print(f"      exponent in N: {emd_exponent:.2f}")
    # a whole run at N particles and M points: the flows carry 3N particles (true, perturbed and the second
    # sample) against M points, the grid split's kernel grows with M, one simplex problem per time at N
    flow_calls = len(stages.kernel_shapes["particle flows"])
    flow_rows = max(n for n, _, _ in stages.kernel_shapes["particle flows"]) / 1024
    grid_kernel = stages.kernel_time["grid split"]  # grows with M; the grid's solve and assembly do not
    other = staged_time - stages.time["particle flows"] - grid_kernel - stages.time["W_1 at every time"]

    def projected(n: int, m: int) -> float:
        emd = by_emd[-1] * (n / emd_sizes[-1]) ** emd_exponent / max(1, torch.get_num_threads())
        grid = grid_kernel * by_grid[points.index(m)] / by_grid[points.index(2000)]
        return (other + grid + flow_calls * kernel_unit_cost(int(flow_rows * n), m, repeats=1)
                + len(stages.emd_sizes) * emd)

    fits_n = [n for n in particles if projected(n, 2000) <= BUDGET_S]
    fits_m = [m for m in points if projected(1024, m) <= BUDGET_S]
    print(f"   largest sizes whose whole scenario is projected under {BUDGET_S:.0f} s: "
          f"N = {max(fits_n) if fits_n else '< 512'} (M = 2000), M = {max(fits_m) if fits_m else '< 500'} (N = 1024)")


if __name__ == "__main__":
    main()
