"""Study: how many particles each W_1 method needs to resolve the Swiss roll's ΔW_1 (scenarios/swiss_roll.yaml).

Three methods at several particle counts, in one run, each over the same seeds:

* ``exact``: two independent samples, exact W_1 (POT network simplex) at both ends;
* ``common_support``: the true start's particles with importance weights P̃/P (random particles);
* ``common_support + sobol``: the same on scrambled-Sobol particles (``particle_sampling: sobol``).

Printed per method, size and protocol: ΔW_1 (mean ± standard error over seeds) and η; the relative error of a
*single run*, e = sqrt(bias² + sd²) / |ΔW_1^ref|, where the reference ΔW_1^ref is the mean of an independent
run of the most precise method (common support on Sobol particles at the largest size, on other seeds; its own
standard error is printed) and the bias is a cell's seed mean minus it; the wall time of each method at equal
particles. Last, per method, the particles needed for e = 10 % on the rotational protocols (the median over g0,
g3, g5): the smallest size that reaches it, and the power law e = a N^(-p) fitted over the sizes, extrapolated.

    python benchmarks/common_support_study.py [--sizes 256 512 1024] [--seeds 4] [--figure PATH]

Each cell's per-seed ΔW_1, η and wall time are kept in ``--cache`` (JSON, default
``results/common_support_study.json``), so an interrupted study resumes; ``--figure`` draws ΔW_1 ± its
standard error against the particle count for every method and protocol.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from stochthermo import load_scenario, simulate

ROOT = Path(__file__).resolve().parents[1]
METHODS = {"exact": ("exact", "random"), "common_support": ("common_support", "random"),
           "common_support+sobol": ("common_support", "sobol")}
ROTATIONAL = ("g0", "g3", "g5")
TARGET = 0.10
#: a fitted exponent below this is no decay: the error is bias-dominated and no particle count is extrapolated
FLAT = 0.1


#: the reference run's seeds start here (independent of the study's seeds 0, 1, ...)
REFERENCE_SEEDS = 1000


def measure(scenario: str, method: str, sampling: str, size: int, seeds: list[int], cache: Path) -> dict:
    """``{"wall": s, "change": {protocol: [ΔW_1 per seed]}, "eta": {...}}`` of one cell, from the cache or run."""
    key = f"{Path(scenario).name}|{method}|{sampling}|{size}|{seeds}"
    stored = json.loads(cache.read_text()) if cache.is_file() else {}
    if key in stored:
        return stored[key]
    overrides = [f"particles={size}", f"seeds={seeds}", "reference={}", f"particle_sampling={sampling}",
                 f"observers=[{{name: response, wasserstein: {method}}}]"]
    start = time.perf_counter()
    ds = simulate(load_scenario(scenario, overrides=overrides)).isel(perturbation=0)
    cell = {"wall": time.perf_counter() - start,
            "change": {str(p): ds.wasserstein_1_change.sel(protocol=p).values.tolist() for p in ds.protocol.values},
            "eta": {str(p): ds.response.sel(protocol=p).values.tolist() for p in ds.protocol.values}}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({**stored, key: cell}, indent=1))
    return cell


def draw(changes: dict, sizes: list[int], reference: dict, path: str) -> None:
    """ΔW_1 ± standard error against the particle count, one panel per protocol, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocols = list(reference)
    fig, axes = plt.subplots(1, len(protocols), figsize=(3.2 * len(protocols), 3.1), sharex=True)
    for ax, protocol in zip(axes, protocols, strict=True):
        for offset, label in zip((0.94, 1.0, 1.06), METHODS, strict=True):
            values = [np.array(changes[label, n][protocol]) for n in sizes]
            ax.errorbar([n * offset for n in sizes], [v.mean() for v in values], capsize=3, marker="o", ms=4,
                        yerr=[v.std(ddof=1) / math.sqrt(len(v)) for v in values], label=label)
        ref = np.array(reference[protocol])
        half = ref.std(ddof=1) / math.sqrt(len(ref))
        ax.axhspan(ref.mean() - half, ref.mean() + half, color="0.85", zorder=0, label="reference (Sobol, other seeds)")
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set_xscale("log", base=2)
        ax.set_title(protocol)
        ax.set_xlabel("particles")
    axes[0].set_ylabel(r"$\Delta W_1$ (mean $\pm$ s.e. over seeds)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def particles_for_target(sizes: list[int], errors: list[float]) -> tuple[str, float, float]:
    """(smallest measured size with error <= TARGET or '>max', fitted exponent p, extrapolated N)."""
    reached = [n for n, e in zip(sizes, errors, strict=True) if e <= TARGET]
    slope, intercept = np.polyfit(np.log(sizes), np.log(errors), 1)
    exponent = (math.log(TARGET) - intercept) / slope if slope < -FLAT else math.inf
    needed = math.exp(exponent) if exponent < 700 else math.inf  # a flat error never reaches the target
    return (str(min(reached)) if reached else f">{max(sizes)}"), -slope, needed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--scenario", default=str(ROOT / "scenarios/swiss_roll.yaml"))
    parser.add_argument("--cache", type=Path, default=ROOT / "results/common_support_study.json")
    parser.add_argument("--figure", help="write the convergence figure here (PNG)")
    args = parser.parse_args()
    sizes = sorted(args.sizes)
    changes: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    print(f"{Path(args.scenario).name}: Delta W_1 and eta, mean +- standard error over {args.seeds} seeds", flush=True)
    for size in sizes:
        for label, (method, sampling) in METHODS.items():
            cell = measure(args.scenario, method, sampling, size, list(range(args.seeds)), args.cache)
            changes[label, size] = {p: np.array(v) for p, v in cell["change"].items()}
            wall = cell["wall"]
            cells = []
            for protocol, change in changes[label, size].items():
                eta = np.array(cell["eta"][protocol])
                se = change.std(ddof=1) / math.sqrt(len(change))
                cells.append(f"{protocol} {change.mean():+.4f}+-{se:.4f} eta {eta.mean():.2e}+-"
                             f"{eta.std(ddof=1) / math.sqrt(len(eta)):.1e}")
            print(f"  n={size:5d} {label:21s} {wall:6.1f} s | " + " | ".join(cells), flush=True)
    cell = measure(args.scenario, "common_support", "sobol", sizes[-1],
                   list(range(REFERENCE_SEEDS, REFERENCE_SEEDS + args.seeds)), args.cache)
    reference = {p: np.array(v) for p, v in cell["change"].items()}
    protocols = list(reference)
    print(f"\nreference Delta W_1 (common_support+sobol, n={sizes[-1]}, seeds {REFERENCE_SEEDS}...): " + ", ".join(
        f"{p} {reference[p].mean():+.5f}+-{reference[p].std(ddof=1) / math.sqrt(args.seeds):.5f}" for p in protocols))
    print("relative error of one run, sqrt(bias^2 + sd^2) / |reference|:")
    for label in METHODS:
        errors = {p: [] for p in protocols}
        for size in sizes:
            for p in protocols:
                change, ref = changes[label, size][p], reference[p].mean()
                errors[p].append(math.sqrt((change.mean() - ref) ** 2 + change.var(ddof=1)) / abs(ref))
        print(f"  {label:21s} " + " | ".join(f"{p} " + " ".join(f"{e:5.0%}" for e in errors[p]) for p in protocols))
        found = [particles_for_target(sizes, errors[p]) for p in ROTATIONAL if p in errors]
        needed = float(np.median([f[2] for f in found]))
        print(f"  {'':21s} rotational, e = {TARGET:.0%}: reached at n = " + ", ".join(f[0] for f in found)
              + "; fitted exponents p = " + ", ".join(f"{f[1]:.2f}" for f in found)
              + f"; extrapolated median N = {needed:.3g}" + (" (the error does not decay: bias)" if math.isinf(needed)
                                                               else ""), flush=True)
    if args.figure:
        draw(changes, sizes, reference, args.figure)
        print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
