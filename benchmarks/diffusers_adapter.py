"""Benchmark: model evaluations per second through the ``diffusers`` estimator (reshape to images, fractional
timestep tensor, the prediction turned into a velocity) against calling the same diffusers UNet directly in
a bare loop, with the same batch, dtype and inputs, side by side in one run. Target: at least 0.9x.

    python benchmarks/diffusers_adapter.py [--batch 256] [--calls 40]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml

TARGET = 0.9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--calls", type=int, default=40)
    args = parser.parse_args()
    import diffusers

    from stochthermo import parse_scenario

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        torch.manual_seed(0)
        unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=2,
                                     block_out_channels=(32, 64), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                     up_block_types=("AttnUpBlock2D", "UpBlock2D"))
        unet.save_pretrained(root / "unet")
        diffusers.DDPMScheduler().save_pretrained(root / "scheduler")
        (root / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline"}))
        spec = {"data": {"name": "images", "normalise": "standardise"}, "prior": {"name": "gaussian", "dim": 64},
                "protocols": {"ddpm": {"process": {"name": "scheduled",
                                                   "schedule": {"name": "diffusers", "path": str(root)}}}},
                "perturbations": {"narrow": {"name": "gaussian", "dim": 64, "std": 0.9}},
                "estimator": {"name": "diffusers", "path": str(root), "batch": args.batch},
                "observers": ["thermodynamics"]}
        scenario = parse_scenario(yaml.safe_dump(spec))
        estimator = next(iter(scenario.setup.protocols.values())).estimator.to(torch.device("cpu"))
        model = unet.eval()
        x = torch.randn(args.batch, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        images = x.reshape(args.batch, 8, 8, 1).permute(0, 3, 1, 2).float()
        timesteps = torch.full((args.batch,), 402.7)

        def adapter():
            estimator.velocity(0.4037, x)

        def bare():
            with torch.no_grad():
                return model(images, timesteps).sample

        rates = {}
        for name, call in (("adapter", adapter), ("bare", bare), ("adapter ", adapter), ("bare ", bare)):
            call()  # warm-up
            start = time.perf_counter()
            for _ in range(args.calls):
                call()
            rates[name.strip()] = max(rates.get(name.strip(), 0.0), args.calls / (time.perf_counter() - start))
    ratio = rates["adapter"] / rates["bare"]
    print(f"diffusers UNet2DModel on 8x8 images, batch {args.batch}, {args.calls} calls (best of 2 rounds)")
    print(f"  through the diffusers estimator  {rates['adapter']:8.1f} evaluations/s")
    print(f"  the UNet called directly         {rates['bare']:8.1f} evaluations/s")
    print(f"  ratio {ratio:.2f}x   target >= {TARGET}x: {'met' if ratio >= TARGET else 'NOT met'}")


if __name__ == "__main__":
    main()
