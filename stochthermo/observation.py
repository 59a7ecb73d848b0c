"""One task of a run: every observer's results for one protocol and seed (docs/architecture.md, "Data flow").

The process's random realisation is fixed by the seed, the observers are handed a
:class:`~stochthermo.observer.Run` whose flows (:mod:`stochthermo.transport`) are computed when an observer
first reads them, and they run in the order their declared inputs require; no undeclared non-finite number
gets through.
"""

from __future__ import annotations

import functools

import torch

from .dataset import check_finite
from .device import resolve_dtype
from .distribution import Distribution
from .estimator import Estimator
from .observer import Run
from .scenario import Scenario
from .setup import Protocol
from .transport import transport


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
                              particles=setup.particles, sampling=setup.particle_sampling, seed=seed)
    run = Run(protocol.name, seed, process, estimator, times, perturbations, true_start, setup.reverse_start,
              protocol.solver.stochastic, flows)
    measured: dict[str, dict] = {}
    for observer in scenario.observation_order:
        inputs = {producer: {name: measured[producer][name] for name in names}
                  for producer, names in observer.consumes.items()}
        measured[observer.name] = observer.observe(run, inputs)
    check_finite(scenario, measured, protocol.name, seed)
    return measured
