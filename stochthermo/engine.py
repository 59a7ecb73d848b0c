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
from typing import TYPE_CHECKING

import torch
import xarray as xr

from .dataset import assemble_dataset, check_finite, combine_sweep
from .device import resolve_device, resolve_dtype
from .distribution import Distribution
from .estimator import Estimator
from .memory import check_memory
from .observer import Run
from .scenario import Scenario, Sweep
from .setup import Protocol
from .tasks import TaskStore, plan_tasks
from .transport import transport

if TYPE_CHECKING:
    from .executors import DaskExecutor, InProcess


def simulate(scenario: Scenario | Sweep, *, device: str | None = None, progress: bool = False,
             executor: InProcess | DaskExecutor | None = None, store: TaskStore | None = None,
             retries: int = 0) -> xr.Dataset:
    """Run ``scenario`` (on ``device``, overriding the scenario's) and return its Dataset.

    The run is split into tasks, one per sweep variant, protocol and seed (:mod:`stochthermo.tasks`), computed
    by ``executor`` (default: :class:`~stochthermo.executors.InProcess`), which keeps each finished task in
    ``store`` when one is given and reuses those already there; ``retries`` reruns a failing task before it is
    reported (:class:`~stochthermo.executors.TaskFailures`). ``progress`` shows a bar over tasks on standard
    error. A :class:`Sweep` stacks its variants' Datasets along one dimension per swept key."""
    from .executors import InProcess

    variants = scenario.variants
    torch_device = resolve_device(device or variants[0].device)
    for variant in variants:
        check_memory(variant.setup, torch_device, resolve_dtype(variant.dtype))
    tasks = plan_tasks(scenario, torch_device, variants[0].dtype)
    results = (executor or InProcess()).run(scenario, tasks, device=torch_device, store=store, retries=retries,
                                            progress=progress)
    datasets = []
    for index, variant in enumerate(variants):
        nested: dict[str, dict[int, dict]] = {name: {} for name in variant.protocols}
        for task in tasks:
            if task.variant == index:
                nested[task.protocol][task.seed] = results[task.key]
        datasets.append(assemble_dataset(variant, nested, device=torch_device, dtype=resolve_dtype(variant.dtype)))
    return combine_sweep(scenario, datasets) if isinstance(scenario, Sweep) else datasets[0]


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
