"""Benchmark: `stochthermo run scenarios/gmm.yaml` end to end, interpreter start included.

Targets (issue: engine core): at most 10 s wall and 1.5 GiB peak memory on a 2-core CPU. Runs the CLI as a
fresh process ``--repeat`` times and prints wall time (min / median / max) and the peak resident memory.

    python benchmarks/gmm_end_to_end.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WALL_TARGET_S = 10.0
MEMORY_TARGET_GIB = 1.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    walls, peaks = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            out = Path(tmp) / f"gmm{i}.nc"
            start = time.perf_counter()
            # a fresh child per run: ru_maxrss of RUSAGE_CHILDREN is the largest child so far
            proc = subprocess.run([sys.executable, "-m", "stochthermo.cli", "run", str(ROOT / "scenarios/gmm.yaml"),
                                   "-q", "-o", str(out)], cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            walls.append(time.perf_counter() - start)
            if proc.returncode:
                sys.exit(f"run failed with status {proc.returncode}")
            peaks.append(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20)  # KiB -> GiB
    peak = max(peaks)
    print(f"stochthermo run scenarios/gmm.yaml  ({args.repeat} runs, {os.cpu_count()} cores)")
    print(f"  wall time   min {min(walls):.2f} s  median {statistics.median(walls):.2f} s  max {max(walls):.2f} s"
          f"   target <= {WALL_TARGET_S:.0f} s: {'met' if max(walls) <= WALL_TARGET_S else 'NOT met'}")
    print(f"  peak memory {peak:.3f} GiB   target <= {MEMORY_TARGET_GIB} GiB: "
          f"{'met' if peak <= MEMORY_TARGET_GIB else 'NOT met'}")


if __name__ == "__main__":
    main()
