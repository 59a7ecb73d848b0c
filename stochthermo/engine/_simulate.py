"""The one entry point that runs a built scenario into an :class:`xarray.Dataset`: the run stage of
spec → build → run.

For every protocol and seed the engine fixes the process's random realisation, hands the observers a
:class:`~stochthermo.Run` whose flows are computed when an
observer first reads them, and runs the observers in the order their declared inputs require
(diffrax-like layering: the equation is the process and estimator, the solver a plugin of its own, what
is saved the :class:`~stochthermo.Trajectory` on the scenario's time grid, the result the
Dataset).
"""

from __future__ import annotations

import xarray as xr

from stochthermo.engine._build import Scenario, Sweep
from stochthermo.engine._dataset import assemble_dataset, combine_sweep
from stochthermo.engine._executors import Executor, InProcess, OnTask
from stochthermo.engine._memory import check_memory
from stochthermo.engine._tasks import TaskStore, plan_tasks
from stochthermo.numerics._device import resolve_device, resolve_dtype


def simulate(scenario: Scenario | Sweep, *, device: str | None = None, progress: bool = False,
             executor: Executor | None = None, store: TaskStore | None = None,
             retries: int = 0, on_task: OnTask | None = None) -> xr.Dataset:
    """Run ``scenario`` (on ``device``, overriding the scenario's) and return its Dataset.

    The run is split into tasks, one per sweep variant, protocol and seed , computed
    by ``executor`` (default: :class:`~stochthermo.InProcess`), which keeps each finished task in
    ``store`` when one is given and reuses those already there; ``retries`` reruns a failing task before it is
    reported (``TaskFailures``); ``on_task(task, results)`` is called for each
    finished task as it arrives (the Zarr region writer). ``progress`` shows a bar
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
