"""Training throughput of stochthermo's loop against a minimal hand-written torch loop, and the cost of the
minibatch-OT coupling.

Both loops train the same MLP (the ``neural`` estimator's) on the same conditional-flow-matching batches
of the 1-D Gaussian mixture (cond-OT schedule) with AdamW and the same batch size; stochthermo's loop
adds what makes it trustworthy (learning-rate schedule, EMA weights, loss recording, a checkpoint at the
end). Steps per second are measured side by side in one run, after a warm-up, best of ``--repeat``. Then
the exact OT plan of one minibatch (POT network simplex, 2-D Swiss roll against N(0, I)) is timed per
batch size.

    python benchmarks/training_throughput.py [--steps 300] [--batch 2048] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import ot
import torch
import yaml

from stochthermo import parse_scenario
from stochthermo.numerics._training import TrainingKey, train
from stochthermo_plugins.distributions import SwissRoll
from stochthermo_plugins.estimators.neural import VelocityMLP

SCENARIO = {"data": {"name": "gaussian_mixture", "weights": [0.5, 0.5], "means": [-0.6, 0.6], "stds": [0.3, 0.3]},
            "prior": {"name": "gaussian", "mean": 0.0, "std": 1.0},
            "perturbations": {"p": {"name": "gaussian", "mean": 0.0, "std": 0.8}}}


def make_model():
    torch.manual_seed(0)
    return VelocityMLP(1, 128, 3, 6, 1.0, 0.6, 0.6).double()


def bare_loop(sampler, steps, learning_rate):
    model = make_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        t, x, target = sampler(generator)
        loss = ((model(t, x) - target) ** 2).sum(-1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    spec = {**SCENARIO, "protocols": {"p": {"process": {"name": "scheduled", "schedule": "cond_ot"},
                                            "estimator": {"name": "neural", "steps": args.steps, "batch": args.batch,
                                                          "warmup": 10, "record_every": 25,
                                                          "checkpoint_every": args.steps}}}}
    estimator = parse_scenario(yaml.safe_dump(spec)).protocols["p"].estimator
    sampler = estimator._conditional_sampler(torch.device("cpu"), torch.float64)
    settings = estimator.settings
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; MLP 128 x 3, batch {args.batch}, "
          f"{args.steps} steps, float64")
    bare_loop(sampler, 20, settings.learning_rate)  # warm-up: first-call allocations are not the loop's cost
    ours, bare = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as directory:
            start = time.perf_counter()
            train(make_model(), sampler, settings, key=TrainingKey("a", "b", "c", "d"),
                  path=Path(directory) / "m.pt", device=torch.device("cpu"), progress=False)
            ours.append(args.steps / (time.perf_counter() - start))
        start = time.perf_counter()
        bare_loop(sampler, args.steps, settings.learning_rate)
        bare.append(args.steps / (time.perf_counter() - start))
    print(f"stochthermo.numerics.train: {max(ours):.1f} steps/s; minimal loop: {max(bare):.1f} steps/s; "
          f"ratio {max(ours) / max(bare):.3f} (target >= 0.9)")
    print("minibatch OT coupling (ot.emd, 2-D Swiss roll vs N(0, I)):")
    roll = SwissRoll(size=20000)
    generator = torch.Generator().manual_seed(0)
    for n in (64, 128, 256, 512, 1024):
        y, z = roll.sample(n, generator), torch.randn(n, 2, generator=generator, dtype=torch.float64)
        weights = torch.full((n,), 1.0 / n, dtype=torch.float64)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            ot.emd(weights, weights, ot.dist(y, z))
            times.append(time.perf_counter() - start)
        print(f"  batch {n:>5}: {1000 * min(times):8.2f} ms per coupling")


if __name__ == "__main__":
    main()
