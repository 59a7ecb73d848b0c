"""The one entry point that runs a scenario into an :class:`xarray.Dataset`.

For every protocol and seed: the true reverse process (P_τ, or the prior with ``reverse_start: prior``,
carried by the process's exact flow), the perturbed reverse processes (each start carried by the
estimator's flow) and, where the true one does not start from P_τ, the forward marginals (P_τ carried by
the exact flow) are transported over the time grid when an observer first reads them; the observers
measure them in order (diffrax-like layering: the equation is the process, the
solver its ``flow``, what is saved the :class:`~stochthermo.trajectory.Trajectory`, the result the Dataset).
"""

from __future__ import annotations

import logging
import sys
import time

import xarray as xr
from tqdm import tqdm

from .dataset import assemble_dataset, check_finite, combine_sweep
from .device import resolve_device, resolve_dtype
from .ensemble import make_ensemble
from .observer import Run
from .scenario import Scenario
from .trajectory import run_flow, run_flows

log = logging.getLogger("stochthermo")


def simulate(scenario: Scenario, *, device: str | None = None, progress: bool = False) -> xr.Dataset:
    """Run ``scenario`` (on ``device``, overriding the scenario's) and return its Dataset; ``progress``
    shows a progress bar over protocols × seeds (× sweep variants) on standard error. A scenario with a
    ``sweep`` runs every variant and stacks their Datasets along one dimension per swept key."""
    variants = scenario.variants or [scenario]
    bar = tqdm(total=len(variants) * len(scenario.protocols) * len(scenario.seeds), desc=scenario.name, unit="run",
               disable=not progress, file=sys.stderr)
    datasets = [_simulate_variant(variant, device, bar) for variant in variants]
    bar.close()
    return combine_sweep(scenario, datasets) if scenario.variants else datasets[0]


def _simulate_variant(scenario: Scenario, device: str | None, bar: tqdm) -> xr.Dataset:
    torch_device = resolve_device(device or scenario.device)
    dtype = resolve_dtype(scenario.dtype)
    times = scenario.times.to(torch_device, dtype)
    perturbations = {name: dist.to(torch_device, dtype) for name, dist in scenario.perturbations.items()}
    results: dict[str, dict[int, dict[str, dict]]] = {}
    for protocol in scenario.protocols.values():
        estimator = protocol.estimator.to(torch_device, dtype)
        process = estimator.process
        results[protocol.name] = {}
        for seed in scenario.seeds:
            bar.set_postfix_str(f"{protocol.name}, seed {seed}")
            start = time.perf_counter()
            process.realise(scenario.particles, seed, device=torch_device, dtype=dtype)
            start_law = (process.end_distribution() if scenario.reverse_start == "end_distribution"
                         else scenario.prior.to(torch_device, dtype))

            def transport(process=process, estimator=estimator, start_law=start_law, seed=seed):
                ensembles = {name: make_ensemble(dist, scenario.particles, seed, device=torch_device, dtype=dtype)
                             for name, dist in perturbations.items()}
                true_start = make_ensemble(start_law, scenario.particles, seed, device=torch_device, dtype=dtype)
                return run_flow(process.flow, true_start, times), run_flows(estimator.flow, ensembles, times)

            def forward_transport(process=process, seed=seed):
                start = make_ensemble(process.end_distribution(), scenario.particles, seed, device=torch_device,
                                      dtype=dtype)
                return run_flow(process.flow, start, times)

            run = Run(protocol.name, seed, process, estimator, times, perturbations, start_law, transport,
                      None if scenario.reverse_start == "end_distribution" else forward_transport)
            measured: dict[str, dict] = {}
            for observer in scenario.observers:
                measured[observer.name] = observer.observe(run, measured)
            check_finite(scenario, measured, protocol.name, seed)
            results[protocol.name][seed] = measured
            log.info("protocol %s, seed %d: %.2f s", protocol.name, seed, time.perf_counter() - start)
            bar.update()
    return assemble_dataset(scenario, results, device=torch_device, dtype=dtype)
