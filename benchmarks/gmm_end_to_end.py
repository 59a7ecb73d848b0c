"""Benchmark: `stochthermo run scenarios/gmm.yaml` end to end, and the command line's start-up, each side by
side with the bare interpreter work it cannot avoid, measured in the same run.

Targets: the run within 10 s wall and 1.5 GiB peak memory on a 2-core CPU, and within 1.4x of a bare
``python -c "import torch, xarray"``; ``stochthermo --help`` within 0.3 s of ``python -c pass``. Every
command runs as a fresh process ``--repeat`` times (interleaved, so drifts of a noisy machine hit all
alike), after one untimed round that warms the file cache and writes the bytecode caches of the engine's
modules (the children may write them even where PYTHONDONTWRITEBYTECODE is set: an installed package has
them, and the bare import's torch and xarray have theirs); the medians are compared. The run's command line
keeps the cyclic garbage collector off its imported modules (``stochthermo.cli.entry_point``), so the same
bare import with the collector paused is timed too: the floor no command importing torch and xarray can beat.
With ``--before REV`` (default: the engine before the architecture refactor) the same commands of that git
revision run too, interleaved in the same run, from a temporary worktree put first on ``PYTHONPATH``.

    python benchmarks/gmm_end_to_end.py [--repeat 3] [--before REV | --before none]
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
RUN_RATIO_TARGET = 1.4
HELP_OVERHEAD_TARGET_S = 0.3
#: the engine before the architecture refactor (spec -> build -> run, solvers, tasks)
BEFORE_REVISION = "4c3d13f"
HELP = [sys.executable, "-m", "stochthermo.cli", "--help"]
#: the bare import as stochthermo.cli.entry_point imports: collector paused, everything frozen before the exit
FLOOR = "import gc; gc.disable(); import torch, xarray; gc.freeze()"


def _timed(command: list[str], source: Path | None = None) -> float:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONUNBUFFERED"] = "1"
    if source is not None:
        env["PYTHONPATH"] = f"{source}{os.pathsep}{env.get('PYTHONPATH', '')}"
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=source or ROOT, stdout=subprocess.DEVNULL, env=env)
    if proc.returncode:
        sys.exit(f"{' '.join(command)} failed with status {proc.returncode}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--before", default=BEFORE_REVISION, help="git revision to compare with ('none': skip)")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"run": [], "import": [], "floor": [], "help": [], "pass": [],
                                     "run before": [], "help before": []}
    with tempfile.TemporaryDirectory() as tmp:
        before = _worktree(args.before, Path(tmp) / "before") if args.before != "none" else None
        run = [sys.executable, "-m", "stochthermo.cli", "run", str(ROOT / "scenarios/gmm.yaml"), "-q", "-o",
               str(Path(tmp) / "gmm.nc")]
        commands = {"run": (run, None), "import": ([sys.executable, "-c", "import torch, xarray"], None),
                    "floor": ([sys.executable, "-c", FLOOR], None), "help": (HELP, None),
                    "pass": ([sys.executable, "-c", "pass"], None)}
        if before is not None:
            commands |= {"run before": (run, before), "help before": (HELP, before)}
        for key, (command, source) in commands.items():  # warm-up: file cache, bytecode caches
            _timed(command, source)
            if key == "run":  # the first child: ru_maxrss of RUSAGE_CHILDREN is the run's own peak
                peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB -> GiB
        for _ in range(args.repeat):
            for key, (command, source) in commands.items():
                times[key].append(_timed(command, source))
        if before is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, check=True)
    times = {key: values for key, values in times.items() if values}
    median = {key: statistics.median(values) for key, values in times.items()}
    ratio = median["run"] / median["import"]
    overhead = median["help"] - median["pass"]
    print(f"stochthermo run scenarios/gmm.yaml  ({args.repeat} runs each, {os.cpu_count()} cores; medians)")
    for key, label in (("run", "stochthermo run gmm.yaml"), ("run before", f"  ... at {args.before} (before)"),
                       ("import", 'python -c "import torch, xarray"'), ("floor", "  ... collector paused"),
                       ("help", "stochthermo --help"),
                       ("help before", f"  ... at {args.before} (before)"), ("pass", 'python -c "pass"')):
        if key not in times:
            continue
        values = times[key]
        print(f"  {label:34s} min {min(values):6.2f} s  median {median[key]:6.2f} s  max {max(values):6.2f} s")
    if "run before" in median:
        print(f"  before: run / bare import {median['run before'] / median['import']:5.2f}x, --help - python pass "
              f"{median['help before'] - median['pass']:5.2f} s")
    print(f"  run / bare import        {ratio:5.2f}x   target <= {RUN_RATIO_TARGET}x: "
          f"{'met' if ratio <= RUN_RATIO_TARGET else 'NOT met'}")
    print(f"  run / bare import with the collector paused {median['run'] / median['floor']:5.2f}x")
    print(f"  --help - python pass     {overhead:5.2f} s   target <= {HELP_OVERHEAD_TARGET_S} s: "
          f"{'met' if overhead <= HELP_OVERHEAD_TARGET_S else 'NOT met'}")
    print(f"  run wall (max)           {max(times['run']):5.2f} s   target <= {WALL_TARGET_S:.0f} s: "
          f"{'met' if max(times['run']) <= WALL_TARGET_S else 'NOT met'}")
    print(f"  peak memory              {peak:5.3f} GiB target <= {MEMORY_TARGET_GIB} GiB: "
          f"{'met' if peak <= MEMORY_TARGET_GIB else 'NOT met'}")


def _worktree(revision: str, where: Path) -> Path:
    """A checkout of ``revision`` at ``where``, importable as stochthermo and stochthermo_plugins."""
    subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(where), revision], cwd=ROOT, check=True)
    (where / "stochthermo_plugins").symlink_to(where / "plugins")
    return where


if __name__ == "__main__":
    main()
