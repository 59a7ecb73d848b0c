"""Exact empirical velocity (chunked softmax posterior) against the bare torch operations of the same shapes.

For N particles, M data points in d dimensions, one evaluation of ȳ(x) = Σ_i softmax_i(−|x − c_i|²/2V) y_i
by :func:`stochthermo.numerics.posterior_average` is timed beside the bare operations — the distance
matmul, a softmax and the weighted sum over the full N × M matrix — in the same run. The last case is the
image-scale one (N_D = 60000 images of n_d = 784 pixels, 1000 particles): there the full velocity of the
``scheduled`` cond-OT process at t = τ/2 is timed too. Each case runs in a fresh process, so its peak memory
(maximum resident set size, read after the chunked evaluation and before the bare one allocates its full
matrix) is its own.

    python benchmarks/empirical_velocity.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

import torch

from stochthermo.numerics._posterior import DEFAULT_BUDGET, posterior_average

CASES = ((20000, 20000, 2), (2000, 20000, 784), (1000, 60000, 784))
IMAGE_CASE = (1000, 60000, 784)


def bare(x, centres, values, variance):
    logits = (x @ centres.T) / variance - 0.5 * (centres**2).sum(1) / variance
    return torch.softmax(logits, dim=1) @ values


def best_time(function, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_case(n: int, m: int, d: int, repeat: int) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    points = torch.randn(m, d, generator=generator, dtype=torch.float64)
    variance = 0.5 * d
    before = peak_gib()
    chunked = best_time(lambda: posterior_average(x, points, points, variance), repeat)
    line = ""
    if (n, m, d) == IMAGE_CASE:
        from stochthermo_plugins.distributions import Gaussian, PointCloud
        from stochthermo_plugins.processes.scheduled import Scheduled
        from stochthermo_plugins.schedules import CondOT

        process = Scheduled(data=PointCloud.from_points(points, 0.0), prior=Gaussian(0.0, 1.0, dim=d), tau=1.0,
                            schedule=CondOT())
        velocity = best_time(lambda: process.velocity(0.5, x), repeat)
        line = f"; full velocity of the cond-OT process {velocity:.3f} s"
    after = peak_gib()
    reference = best_time(lambda: bare(x, points, points, variance), repeat)
    agree = torch.allclose(posterior_average(x, points, points, variance).mean, bare(x, points, points, variance),
                           atol=1e-10)
    print(f"N={n} M={m} d={d}: chunked {chunked:.3f} s, bare {reference:.3f} s, ratio {chunked / reference:.2f} "
          f"(target <= 1.5){line}; peak RSS {after:.2f} GiB after the chunked evaluations (inputs alone "
          f"{before:.2f}; target < 4 GiB at N_D = 60000), the bare N x M matrix alone is {n * m * 8 / 2**30:.2f} "
          f"GiB; results agree: {agree}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--case", type=int, nargs=3, metavar=("N", "M", "D"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        run_case(*args.case, args.repeat)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, block budget {DEFAULT_BUDGET} logits "
          f"({DEFAULT_BUDGET * 8 / 2**20:.0f} MiB); one process per case", flush=True)
    for case in CASES:
        subprocess.run([sys.executable, __file__, "--repeat", str(args.repeat), "--case", *map(str, case)],
                       check=True)


if __name__ == "__main__":
    main()
