"""Exact empirical velocity (chunked softmax posterior) against the bare torch operations of the same shapes.

For N particles, M data points in d dimensions, one evaluation of ȳ(x) = Σ_i softmax_i(−|x − c_i|²/2V) y_i
by :func:`stochthermo.posterior.posterior_average` is timed beside the bare operations — the distance
matmul, a softmax and the weighted sum over the full N × M matrix — in the same run. Peak memory (maximum
resident set size) is printed after the chunked evaluation, before the bare one allocates its full matrix.

    python benchmarks/empirical_velocity.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from stochthermo.posterior import DEFAULT_BUDGET, posterior_average

CASES = ((20000, 20000, 2), (2000, 20000, 784))


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, block budget {DEFAULT_BUDGET} logits "
          f"({DEFAULT_BUDGET * 8 / 2**20:.0f} MiB)")
    for n, m, d in CASES:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(n, d, generator=generator, dtype=torch.float64)
        points = torch.randn(m, d, generator=generator, dtype=torch.float64)
        variance = 0.5 * d
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        chunked = best_time(lambda x=x, p=points, v=variance: posterior_average(x, p, p, v), args.repeat)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        reference = best_time(lambda x=x, p=points, v=variance: bare(x, p, p, v), args.repeat)
        agree = torch.allclose(posterior_average(x, points, points, variance).mean, bare(x, points, points, variance),
                               atol=1e-10)
        print(f"N={n} M={m} d={d}: chunked {chunked:.3f} s, bare {reference:.3f} s, ratio {chunked / reference:.2f} "
              f"(target <= 1.5); peak RSS {after:.2f} GiB after chunked (was {before:.2f}; the bare N x M matrix "
              f"alone is {n * m * 8 / 2**30:.2f} GiB); results agree: {agree}")


if __name__ == "__main__":
    main()
