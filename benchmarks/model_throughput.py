"""A network brought by a researcher: the `torch_module` estimator against a bare `inference_mode` loop, and
`stochthermo.run(dict)` against the command line.

1. **Model calls.** The estimator's velocity (``output: epsilon``, float32 model, float64 physics) at every
   time of a 48-step grid on one batch of particles, against a bare loop calling the same model in
   ``torch.inference_mode()`` on the same float32 batches and times: the ratio bare / estimator (goal ≥ 0.9),
   for a real MLP (2-D data, 3 hidden layers of 256, 4096 particles) and a small diffusers ``UNet2DModel``
   (16 × 16 images, 256 particles; skipped without diffusers).
2. **The Python API.** In one interpreter after its imports, the command line's ``main(["run", ...])`` on
   scenarios/gmm.yaml and ``stochthermo.run(dict)`` on the same scenario read as a dict, alternating, best of 3
   (goal: within 5 %); then each end to end in a fresh interpreter, for information.

    python benchmarks/model_throughput.py     # about 2 minutes on 2 cores
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from stochthermo import parse_scenario

ROOT = Path(__file__).parents[1]
TIMES = 48


class Mlp(torch.nn.Module):
    """ε̂(t, x) for 2-D data: (t, x) -> 3 hidden layers of 256 (SiLU) -> 2."""

    def __init__(self):
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Linear(3, 256), torch.nn.SiLU(), torch.nn.Linear(256, 256),
                                          torch.nn.SiLU(), torch.nn.Linear(256, 256), torch.nn.SiLU(),
                                          torch.nn.Linear(256, 2))

    def forward(self, t, x):
        return self.layers(torch.cat([t[:, None], x], dim=1))


class FlatUNet(torch.nn.Module):
    """A diffusers UNet2DModel on 16 x 16 images, called with flat (n, 256) particles."""

    def __init__(self):
        super().__init__()
        from diffusers import UNet2DModel

        self.unet = UNet2DModel(sample_size=16, in_channels=1, out_channels=1, block_out_channels=(32, 64),
                                layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8)

    def forward(self, t, x):
        return self.unet(x.view(-1, 1, 16, 16), t).sample.reshape(len(x), -1)


mlp = Mlp().eval()


def estimator_for(model_name: str, dim: int):
    spec = {"name": "throughput", "seeds": [0], "time_steps": TIMES, "particles": 64,
            "data": {"name": "gaussian", "mean": [0.0] * dim, "std": 0.5},
            "prior": {"name": "gaussian", "mean": [0.0] * dim, "std": 1.0},
            "protocols": {"vp": {"process": {"name": "scheduled", "schedule": "vp_linear"}}},
            "perturbations": {"p": {"name": "gaussian", "mean": [0.0] * dim, "std": 0.9}},
            "estimator": {"name": "torch_module", "model": f"__main__:{model_name}", "output": "epsilon",
                          "time": "unit", "dtype": "float32"},
            "observers": ["thermodynamics"]}
    scenario = parse_scenario(yaml.safe_dump(spec), source="<benchmark>")
    return next(iter(scenario.setup.protocols.values())).estimator


def compare(name: str, model: torch.nn.Module, dim: int, particles: int, repeats: int = 3) -> None:
    estimator = estimator_for(name, dim)
    x = torch.randn(particles, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    times = torch.linspace(0.0, 1.0, TIMES + 1, dtype=torch.float64)[1:]

    def ours():
        for t in times:
            estimator.velocity(float(t), x)

    batch = x.float()

    def bare():
        with torch.inference_mode():
            for t in times:
                model(torch.full((particles,), float(t)), batch)

    ours(), bare()  # warm up
    best = {}
    for label, loop in (("estimator", ours), ("bare", bare)) * repeats:
        start = time.perf_counter()
        loop()
        best[label] = min(best.get(label, float("inf")), time.perf_counter() - start)
    print(f"   {name:5s} ({particles} particles, {TIMES} times): estimator {best['estimator']:.3f} s, "
          f"bare inference_mode loop {best['bare']:.3f} s, "
          f"ratio bare / estimator {best['bare'] / best['estimator']:.3f}")


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    print("1. model calls: torch_module against a bare inference_mode loop (best of 3)")
    compare("mlp", mlp, 2, 4096)
    try:
        global unet
        unet = FlatUNet().eval()
    except ImportError:
        print("   unet: skipped (diffusers is not installed)")
    else:
        compare("unet", unet, 256, 256)
    print("2. the Python API against the command line on scenarios/gmm.yaml")
    with tempfile.TemporaryDirectory() as folder:
        # in one interpreter, after the imports: the command line's main() and stochthermo.run(dict), alternating
        script = ("import time, yaml, stochthermo; from stochthermo.cli import main\n"
                  "spec = yaml.safe_load(open('scenarios/gmm.yaml')); best = {'cli': 1e9, 'api': 1e9}\n"
                  "for _ in range(3):\n"
                  f"    t = time.perf_counter(); main(['run', 'scenarios/gmm.yaml', '-q', '--force', '-o', "
                  f"'{folder}/cli.nc'])\n"
                  "    best['cli'] = min(best['cli'], time.perf_counter() - t)\n"
                  f"    t = time.perf_counter(); stochthermo.run(spec, output='{folder}/api.nc', force=True)\n"
                  "    best['api'] = min(best['api'], time.perf_counter() - t)\n"
                  "print(best['cli'], best['api'])\n")
        out = subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT, capture_output=True, text=True)
        cli, api = (float(v) for v in out.stdout.split()[-2:])
        print(f"   in one interpreter (best of 3): main(['run', ...]) {cli:.2f} s, stochthermo.run(dict) {api:.2f} s, "
              f"ratio {api / cli:.3f}")
        # each in a fresh interpreter, imports and exit included
        command = [sys.executable, "-m", "stochthermo.cli", "run", "scenarios/gmm.yaml", "-q", "--force",
                   "-o", f"{folder}/cli.nc"]
        library = [sys.executable, "-c", "import yaml, stochthermo; spec = yaml.safe_load(open('scenarios/gmm.yaml'));"
                   f" stochthermo.run(spec, output='{folder}/api.nc', force=True)"]
        fresh = {"command": min(timed(command) for _ in range(3)), "library": min(timed(library) for _ in range(3))}
    print(f"   fresh interpreters (best of 3): stochthermo run {fresh['command']:.2f} s, "
          f"python -c 'stochthermo.run(dict)' {fresh['library']:.2f} s, "
          f"ratio {fresh['library'] / fresh['command']:.3f} (the command line also pauses the collector during its "
          "imports and freezes it before exit)")


if __name__ == "__main__":
    main()
