"""Benchmark: a sweep of ``scenarios/swiss_roll.yaml`` (4 protocols x ``--seeds`` seeds = 8 tasks by default)
run in-process and on a Dask LocalCluster of ``--workers`` worker processes, side by side in one run, each as
the command a user types (a fresh process, cluster start-up included).

Target: at least 1.6x faster with 2 workers on a 2-core machine. Printed: both wall times, the speed-up,
and the overhead per task, (T_cluster - T_in-process / workers) / tasks: what the cluster costs beyond a
perfect split of the in-process time; and the largest relative difference between the two outputs (the
in-process run uses all cores' torch threads per task, a worker cores / workers, so reductions round
differently; with equal thread counts the outputs are bit for bit identical, tests/test_sweeps.py).

    python benchmarks/sweep_scaling.py [--seeds 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPEED_UP_TARGET = 1.6


def _timed(arguments: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "stochthermo.cli", "run", str(ROOT / "scenarios/swiss_roll.yaml"),
                           "-q", *arguments], cwd=ROOT)
    if proc.returncode:
        sys.exit(f"stochthermo run {' '.join(arguments)} failed with status {proc.returncode}")
    return time.perf_counter() - start


def _largest_relative_difference(a, b) -> float:
    """Over every floating-point variable (NaN where both are NaN counts as equal)."""
    largest = 0.0
    for name, variable in a.data_vars.items():
        if variable.dtype.kind != "f":
            if not (variable == b[name]).all():
                sys.exit(f"{name} differs between the runs")
            continue
        x, y = variable.values, b[name].values
        both = np.isfinite(x) & np.isfinite(y)
        if not np.array_equal(np.isfinite(x), np.isfinite(y)):
            sys.exit(f"{name}: non-finite values differ between the runs")
        scale = np.maximum(np.abs(x[both]), np.abs(y[both])).max(initial=0.0)
        if scale > 0:
            largest = max(largest, float(np.abs(x[both] - y[both]).max() / scale))
    return largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    import xarray as xr

    tasks = 4 * args.seeds
    seeds = f"seeds={{count: {args.seeds}}}"
    with tempfile.TemporaryDirectory() as tmp:
        sequential = _timed(["--set", seeds, "-o", f"{tmp}/in_process.nc"])
        cluster = _timed(["--set", seeds, "-o", f"{tmp}/cluster.nc", "--executor", "local", "--workers",
                          str(args.workers)])
        with xr.open_dataset(f"{tmp}/in_process.nc", engine="netcdf4") as a, \
                xr.open_dataset(f"{tmp}/cluster.nc", engine="netcdf4") as b:
            difference = _largest_relative_difference(a.load(), b.load())
    speed_up = sequential / cluster
    overhead = (cluster - sequential / args.workers) / tasks
    print(f"swiss_roll.yaml, {tasks} tasks (4 protocols x {args.seeds} seeds), {os.cpu_count()} cores")
    print(f"  in-process                      {sequential:7.2f} s")
    print(f"  LocalCluster, {args.workers} workers          {cluster:7.2f} s")
    print(f"  largest relative difference     {difference:9.1e}  (torch threads per task differ: rounding only)")
    print(f"  speed-up                        {speed_up:7.2f}x   target >= {SPEED_UP_TARGET}x: "
          f"{'met' if speed_up >= SPEED_UP_TARGET else 'NOT met'}")
    print(f"  overhead per task               {overhead:7.2f} s   (cluster start-up included)")


if __name__ == "__main__":
    main()
