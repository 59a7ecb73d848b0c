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

import xarray as xr

from .dataset import assemble_dataset, combine_sweep
from .device import resolve_device, resolve_dtype
from .executors import DaskExecutor, InProcess, OnTask
from .memory import check_memory
from .scenario import Scenario, Sweep
from .tasks import TaskStore, plan_tasks


def simulate(scenario: Scenario | Sweep, *, device: str | None = None, progress: bool = False,
             executor: InProcess | DaskExecutor | None = None, store: TaskStore | None = None,
             retries: int = 0, on_task: OnTask | None = None) -> xr.Dataset:
    """Run ``scenario`` (on ``device``, overriding the scenario's) and return its Dataset.

    The run is split into tasks, one per sweep variant, protocol and seed (:mod:`stochthermo.tasks`), computed
    by ``executor`` (default: :class:`~stochthermo.executors.InProcess`), which keeps each finished task in
    ``store`` when one is given and reuses those already there; ``retries`` reruns a failing task before it is
    reported (:class:`~stochthermo.executors.TaskFailures`); ``on_task(task, results)`` is called for each
    finished task as it arrives (:class:`~stochthermo.zarr_regions.RegionWriter`). ``progress`` shows a bar
    over tasks on standard error. A :class:`Sweep` stacks its variants' Datasets along one dimension per swept key."""
    variants = scenario.variants
    torch_device = resolve_device(device or variants[0].device)
    for variant in variants:
        check_memory(variant.setup, torch_device, resolve_dtype(variant.dtype))
    tasks = plan_tasks(scenario, torch_device, variants[0].dtype)
    results = (executor or InProcess()).run(scenario, tasks, device=torch_device, store=store, retries=retries,
                                            progress=progress, on_task=on_task)
    datasets = []
    for index, variant in enumerate(variants):
        nested: dict[str, dict[int, dict]] = {name: {} for name in variant.protocols}
        for task in tasks:
            if task.variant == index:
                nested[task.protocol][task.seed] = results[task.key]
        datasets.append(assemble_dataset(variant, nested, device=torch_device, dtype=resolve_dtype(variant.dtype)))
    return combine_sweep(scenario, datasets) if isinstance(scenario, Sweep) else datasets[0]
