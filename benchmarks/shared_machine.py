"""stochastic.yaml, the reverse-SDE scenario, on a shared machine: quiet against under a competing load.

Runs `stochthermo run scenarios/stochastic.yaml` (full size) four times in a fresh process each: quiet with the
default threads, quiet with --threads 1, then with as many busy-looping processes as this process may use CPUs
(the "competing load") with the default threads and with --threads 1; prints the wall times and the ratios loaded
/ quiet. The default threads (stochthermo.numerics.default_threads: the CPUs this process may use that are idle
when the run starts) should keep the loaded run within 3x of the quiet one (issue: torch's thread pool spinning on
busy CPUs made it 17x).

    python benchmarks/shared_machine.py     # about 1 minute on 2 cores
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stochthermo.numerics import available_cpus

ROOT = Path(__file__).parents[1]


def timed(output: Path, *options: str) -> float:
    command = [sys.executable, "-m", "stochthermo.cli", "run", str(ROOT / "scenarios" / "stochastic.yaml"), "-q",
               "--force", "-o", str(output), *options]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "stochastic.nc"
        quiet = {"default": timed(output), "--threads 1": timed(output, "--threads", "1")}
        load = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(available_cpus())]
        try:
            time.sleep(1.0)
            loaded = {"default": timed(output), "--threads 1": timed(output, "--threads", "1")}
        finally:
            for process in load:
                process.kill()
    print(f"competing load: {available_cpus()} busy processes on the {available_cpus()} CPUs this process may use")
    for name in quiet:
        print(f"{name:>12}: quiet {quiet[name]:6.2f} s, loaded {loaded[name]:6.2f} s, "
              f"ratio {loaded[name] / quiet[name]:.2f}")


if __name__ == "__main__":
    main()
