"""The one entry point that runs a built scenario into an :class:`xarray.Dataset`: the run stage of
spec → build → run.

For every protocol and seed the engine fixes the process's random realisation, hands the observers a
:class:`~stochthermo.observer.Run` whose flows (:mod:`stochthermo.transport`) are computed when an
observer first reads them, and runs the observers in the order their declared inputs require
(diffrax-like layering: the equation is the process and estimator, the solver a plugin of its own, what
is saved the :class:`~stochthermo.trajectory.Trajectory` on the scenario's time grid, the result the
Dataset).
"""

from __future__ import annotations

import functools
import logging
import sys
import time

import torch
import xarray as xr
from tqdm import tqdm

from .dataset import assemble_dataset, check_finite, combine_sweep
from .device import resolve_device, resolve_dtype
from .distribution import Distribution
from .estimator import Estimator
from .memory import check_memory
from .observer import Run
from .scenario import Scenario, Sweep
from .setup import Protocol
from .transport import transport

log = logging.getLogger("stochthermo")


def simulate(scenario: Scenario | Sweep, *, device: str | None = None, progress: bool = False) -> xr.Dataset:
    """Run ``scenario`` (on ``device``, overriding the scenario's) and return its Dataset; ``progress``
    shows a progress bar over protocols × seeds (× sweep variants) on standard error. A :class:`Sweep` runs
    every variant and stacks their Datasets along one dimension per swept key."""
    variants = scenario.variants
    for variant in variants:
        check_memory(variant.setup, resolve_device(device or variant.device), resolve_dtype(variant.dtype))
    bar = tqdm(total=sum(len(v.protocols) * len(v.seeds) for v in variants), desc=scenario.name, unit="run",
               disable=not progress, file=sys.stderr)
    datasets = [_simulate_scenario(variant, device, bar) for variant in variants]
    bar.close()
    return combine_sweep(scenario, datasets) if isinstance(scenario, Sweep) else datasets[0]


def _simulate_scenario(scenario: Scenario, device: str | None, bar: tqdm) -> xr.Dataset:
    setup = scenario.setup
    torch_device = resolve_device(device or setup.device)
    dtype = resolve_dtype(setup.dtype)
    perturbations = {name: dist.to(torch_device, dtype) for name, dist in setup.perturbations.items()}
    results: dict[str, dict[int, dict[str, dict]]] = {}
    for protocol in setup.protocols.values():
        estimator = protocol.estimator.to(torch_device, dtype)
        results[protocol.name] = {}
        for seed in setup.seeds:
            bar.set_postfix_str(f"{protocol.name}, seed {seed}")
            start = time.perf_counter()
            results[protocol.name][seed] = observe_run(scenario, protocol, estimator, perturbations, seed,
                                                       device=torch_device)
            log.info("protocol %s, seed %d: %.2f s", protocol.name, seed, time.perf_counter() - start)
            bar.update()
    return assemble_dataset(scenario, results, device=torch_device, dtype=dtype)


def observe_run(scenario: Scenario, protocol: Protocol, estimator: Estimator, perturbations: dict[str, Distribution],
                seed: int, *, device: torch.device) -> dict[str, dict]:
    """Every observer's results for one protocol and seed, ``{observer: {variable: array}}``: the process's
    realisation fixed, the flows computed on first use, the observers run in :attr:`Scenario.observation_order`
    with the inputs they declare, and no non-finite number let through. ``estimator`` and ``perturbations`` are
    already on ``device`` in the scenario's dtype."""
    setup = scenario.setup
    process = estimator.process
    dtype = resolve_dtype(setup.dtype)
    times = setup.times.to(device, dtype)
    process.realise(setup.particles, seed, device=device, dtype=dtype)
    from_prior = setup.reverse_start == "prior"
    true_start = setup.prior.to(device, dtype) if from_prior else process.end_distribution()
    flows = functools.partial(transport, estimator, protocol.solver, true_start=true_start,
                              perturbations=perturbations, separate_forward=from_prior, times=times,
                              particles=setup.particles, seed=seed)
    run = Run(protocol.name, seed, process, estimator, times, perturbations, true_start, setup.reverse_start,
              protocol.solver.stochastic, flows)
    measured: dict[str, dict] = {}
    for observer in scenario.observation_order:
        inputs = {producer: {name: measured[producer][name] for name in names}
                  for producer, names in observer.consumes.items()}
        measured[observer.name] = observer.observe(run, inputs)
    check_finite(scenario, measured, protocol.name, seed)
    return measured
