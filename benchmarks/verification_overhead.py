"""Benchmark: what verifying costs. Every check that keeps a wrong number out of an output, timed against the
same run with the check switched off, interleaved in one process so a noisy machine hits both alike.

* gmm.yaml end to end (``stochthermo.run`` with its output file and run directory): the observers held to their
  declarations, the flows to the process's marginals, the task files' digests, the run directory's lock, the
  output checks and the fsyncs, against a run with all of them replaced by no-ops. Target: <= 3 %.
* a run of 32 small tasks (4 protocols x 8 seeds): the lock and the task files' digests (written, then verified
  on a resume) against the same without. Target: <= 1 %.

    python benchmarks/verification_overhead.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import stochthermo
from stochthermo.engine import _executors, _observation, _run, _tasks
from stochthermo.output import _files

ROOT = Path(__file__).resolve().parents[1]
TASKS = {"tau": 1.0, "time_steps": 16, "particles": 256, "seeds": list(range(8)),
         "data": {"name": "gaussian_mixture", "weights": [0.5, 0.5], "means": [-0.6, 0.6], "stds": [0.3, 0.3]},
         "prior": {"name": "gaussian", "mean": 0.0, "std": 1.0},
         "protocols": {name: {"process": {"name": "scheduled", "schedule": name}}
                       for name in ("cosine", "cond_ot", "vp_linear", "ornstein_uhlenbeck")},
         "perturbations": {"shifted": {"name": "gaussian", "mean": 1.0, "std": 1.0}},
         "observers": ["thermodynamics", "response", "bounds"]}


@contextlib.contextmanager
def unverified(everything: bool):
    """The engine with its checks replaced by no-ops: the task files' digests (and, with ``everything``, the
    observers' and the marginals' checks, the output checks, the lock and the fsyncs)."""
    patches = [mock.patch.object(_tasks, "_arrays_digest", lambda arrays: ""),
               mock.patch.object(_tasks, "_take_lock", lambda path: open(path, "a+"))]
    if everything:
        patches += [mock.patch.object(_observation, "check_marginals", lambda run: None),
                    mock.patch.object(_observation, "check_declared", lambda *args, **kwargs: None),
                    mock.patch.object(_run, "check_output", lambda *args, **kwargs: None),
                    mock.patch.object(_files, "_fsync", lambda path: None),
                    mock.patch.object(_executors, "check_finite", lambda *args: None)]
    with contextlib.ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch)
        yield


def _timed(scenario, output: Path, *, resume: bool = False) -> float:
    start = time.perf_counter()
    stochthermo.run(scenario, output=output, keep_tasks=resume)
    if resume:  # read every task file back (the digests verified), then remove the run directory
        stochthermo.run(scenario, output=output)
    return time.perf_counter() - start


def measure(label: str, scenario, everything: bool, repeat: int, resume: bool) -> float:
    times = {"verified": [], "unverified": []}
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "run.nc"
        _timed(scenario, output, resume=resume)  # warm-up: imports, caches
        for _ in range(repeat):
            times["verified"].append(_timed(scenario, output, resume=resume))
            with unverified(everything):
                times["unverified"].append(_timed(scenario, output, resume=resume))
    on, off = statistics.median(times["verified"]), statistics.median(times["unverified"])
    print(f"{label}: verified {on:.3f} s, unverified {off:.3f} s (medians of {repeat}): overhead "
          f"{100 * (on / off - 1):+.2f} %")
    return on / off - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    gmm = measure("gmm.yaml end to end, every check", ROOT / "scenarios" / "gmm.yaml", True, args.repeat, False)
    tasks = measure("32 tasks, lock and digests (run + resume)", TASKS, False, args.repeat, True)
    print(f"targets: gmm <= 3 % ({'met' if gmm <= 0.03 else 'NOT met'}), 32 tasks <= 1 % "
          f"({'met' if tasks <= 0.01 else 'NOT met'})")


if __name__ == "__main__":
    main()
