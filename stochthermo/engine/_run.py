"""The library's run: a scenario (a file, YAML text, a mapping, a spec or a built scenario) into its Dataset,
with the task store that makes a run resumable, the executors and the output writers.

:func:`run` is what a notebook calls; the command line's ``stochthermo run`` parses its arguments and calls
:func:`execute`, which also returns where the result was written. Both go through the same steps:

1. build the scenario (:func:`stochthermo.build`) unless it is built already;
2. open the run directory of the output (``results/gmm.nc`` → ``results/gmm.tasks``): a :class:`TaskStore`
   keeps every finished task there, so the same call after an interruption or a failed task resumes;
3. compute the missing tasks with the executor (:class:`InProcess` by default, a Dask cluster with
   ``executor="local"`` or ``scheduler=ADDRESS``, or any object with the :class:`Executor` interface);
4. write the Dataset atomically (netCDF, or Zarr region by region as tasks finish) and remove the run directory.

Without an output (none given and no ``output`` key in the scenario) the run happens in memory: no task
store, no file.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib.util
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from stochthermo.engine._build import Scenario, Sweep, build
from stochthermo.engine._dataset import record_run
from stochthermo.engine._executors import DaskExecutor, Executor, InProcess
from stochthermo.engine._objects import not_held, with_objects_held
from stochthermo.engine._simulate import simulate
from stochthermo.engine._spec import ScenarioSpec, parse_spec, read_spec
from stochthermo.engine._tasks import TaskStore, run_directory, run_identity
from stochthermo.errors import ScenarioError
from stochthermo.output._files import FORMATS, check_output, remove_stale_temporaries, write_dataset

if TYPE_CHECKING:
    import xarray as xr

    from stochthermo.engine._registry import Registry

#: the executors by name
EXECUTORS = ("in-process", "local")


@dataclass(frozen=True)
class RunResult:
    """What ``execute`` (the command line's entry) produced: the Dataset, the file or store it was written to
    (``None`` in memory), and the scenario that was run (its registry presents the Dataset)."""

    dataset: xr.Dataset
    path: Path | None
    scenario: Scenario | Sweep


def run(scenario: str | Path | dict | ScenarioSpec | Scenario | Sweep, *, overrides: list[str] | tuple[str, ...] = (),
        output: str | Path | None = None, write: bool = True, format: str = "netcdf", device: str | None = None,
        executor: str | Executor = "in-process", workers: int | None = None, scheduler: str | None = None,
        threads: int | None = None, retries: int = 0, keep_tasks: bool = False, progress: bool = False,
        force: bool = False, recompute: bool = True, registry: Registry | None = None) -> xr.Dataset:
    """Run a scenario and return its Dataset (the same numbers as ``stochthermo run``).

    ``scenario`` is a path to a YAML file (a ``Path``, or a string naming an existing file or ending in ``.yaml``),
    YAML text, a mapping of the same keys, a
    :class:`~stochthermo.ScenarioSpec`, or an already built :class:`~stochthermo.Scenario` or
    :class:`~stochthermo.Sweep`; ``overrides`` are ``dotted.key=value`` strings (YAML values) applied first.
    The Dataset is written to ``output`` (default: the scenario's ``output`` key) unless ``write`` is false or
    neither names a file; the tasks of a written run are kept in its run directory while it goes on, so the
    same call resumes an interrupted run. ``format`` is ``netcdf`` or ``zarr`` (needs ``stochthermo[zarr]``);
    ``device`` overrides the scenario's; ``executor`` is ``in-process``, ``local`` (a Dask LocalCluster of
    ``workers`` processes) or an :class:`Executor`; ``scheduler`` is the address of an existing Dask cluster;
    ``threads`` the torch threads per task; ``retries`` reruns a failing task before it is reported;
    ``keep_tasks`` keeps the run directory after success; ``progress`` shows a bar (a widget in a notebook).

    Nothing wrong reaches the output: an output that is the scenario file, a directory or a special file is
    refused, and so is an existing file that is not a result of this tool unless ``force``; a damaged task file
    (edited, truncated, from another task) is named and recomputed, or refused with ``recompute=False``; a second
    run of the same output is refused while this one holds its run directory."""
    return execute(scenario, overrides=overrides, output=output, write=write, format=format, device=device,
                   executor=executor, workers=workers, scheduler=scheduler, threads=threads, retries=retries,
                   keep_tasks=keep_tasks, progress=progress, force=force, recompute=recompute,
                   registry=registry).dataset


def rerun(result: str | Path | xr.Dataset, *overrides: str, **settings: Any) -> xr.Dataset:
    """Run again the scenario a result was made from, in memory: ``result`` is a Dataset of :func:`run` or the
    path of a result file; ``overrides`` (``dotted.key=value``) and ``settings`` (top-level keys, e.g.
    ``particles=8192``) are applied after the run's own overrides. With none, the Dataset is the run's own."""
    import xarray as xr

    from stochthermo.output._files import open_run

    dataset = result if isinstance(result, xr.Dataset) else open_run(result)
    objects = json.loads(dataset.attrs.get("scenario_objects", "{}"))
    if objects and not_held(dataset.attrs.get("scenario_text", "")):
        raise ScenarioError("the run held Python objects (" + ", ".join(f"{k}: {v}" for k, v in objects.items())
                            + "), which its text alone cannot re-create in this process: pass them again in a "
                            "mapping to stochthermo.run", key=next(iter(objects)))
    own = json.loads(dataset.attrs.get("scenario_overrides", "[]"))
    extra = [f"{key}={json.dumps(value)}" for key, value in settings.items()]
    spec = parse_spec(dataset.attrs["scenario_text"], source=dataset.attrs.get("scenario_path") or None,
                      overrides=(*own, *overrides, *extra))
    spec = dataclasses.replace(spec, objects=tuple(objects.items()))
    return run(spec, write=False)


def execute(scenario: str | Path | dict | ScenarioSpec | Scenario | Sweep, *,
            overrides: list[str] | tuple[str, ...] = (), output: str | Path | None = None, write: bool = True,
            format: str = "netcdf", device: str | None = None, executor: str | Executor = "in-process",
            workers: int | None = None, scheduler: str | None = None, threads: int | None = None, retries: int = 0,
            keep_tasks: bool = False, progress: bool = False, force: bool = False, recompute: bool = True,
            registry: Registry | None = None, require_output: bool = False,
            before_compute: Callable[[], None] | None = None) -> RunResult:
    """:func:`run`, returning the :class:`RunResult` (the Dataset, where it was written, the scenario);
    ``require_output`` refuses a run that would write no file, ``before_compute`` is called once the scenario is
    built and before any task computes (the command line's garbage-collector policy)."""
    _check_options(format=format, executor=executor, workers=workers, scheduler=scheduler, threads=threads,
                   retries=retries)
    import scipy.integrate  # noqa: F401  (every run integrates over time: imported before ``before_compute``)

    built, source = _built(scenario, overrides, registry)
    output = (output or built.variants[0].output) if write else None
    if require_output and not output:
        raise ScenarioError("no output file: name one, or give the scenario an 'output' key", file=source,
                            key="output")
    if output is None and (scheduler or executor == "local"):
        raise ScenarioError("a Dask executor needs an output: its workers write the run's task files beside it",
                            key="executor")
    if before_compute is not None:
        before_compute()
    # the objects alive before the computation (modules, the registry, the scenario: hundreds of thousands)
    # are moved to the collector's permanent generation while it runs, so its searches for reference cycles
    # skip them (17 % of gmm.yaml's run time); reference counting frees everything as usual
    gc.freeze()
    try:
        if output:
            check_output(output, inputs=(source,), format=format, force=force)
        return _execute(built, output, format, device, executor, workers, scheduler, threads, retries, keep_tasks,
                        progress, recompute, source)
    except ScenarioError as exc:
        raise exc.located(file=source) from None
    finally:
        gc.unfreeze()


def _execute(scenario: Scenario | Sweep, output, format, device, executor, workers, scheduler, threads, retries,
             keep_tasks, progress, recompute, source) -> RunResult:
    started = time.perf_counter()
    store = regions = None
    if output is not None:
        store = TaskStore(run_directory(output), run_identity(scenario), scenario.name, recompute=recompute).open()
    try:
        if store is not None:  # the store's lock keeps any other run from writing these
            remove_stale_temporaries(Path(output).parent, Path(output).name)
        if format == "zarr" and store is not None:
            from stochthermo.engine._zarr_regions import RegionWriter

            regions = RegionWriter(scenario, store.directory)
        runner = _executor(executor, workers, scheduler, threads)
        if progress and isinstance(runner, DaskExecutor) and runner.dashboard:
            print(f"Dask dashboard: {runner.dashboard}", file=sys.stderr)
        try:
            dataset = simulate(scenario, device=device, progress=progress, executor=runner, store=store,
                               retries=retries, on_task=regions)
        finally:
            runner.close()
        record_run(dataset, source=source, wall_time=time.perf_counter() - started)
        if output is None:
            return RunResult(dataset, None, scenario)
        path = regions.finish(dataset, output) if regions else write_dataset(dataset, output, format=format)
        if not keep_tasks:
            store.remove()
        return RunResult(dataset, path, scenario)
    finally:
        if store is not None:
            store.close()


def _built(scenario, overrides, registry) -> tuple[Scenario | Sweep, str | None]:
    """The built scenario and the file its errors name."""
    if isinstance(scenario, Scenario | Sweep):
        if overrides:
            raise ScenarioError("overrides apply to a scenario that is not built yet: pass its spec or text",
                                key="overrides")
        return scenario, scenario.spec.source
    if isinstance(scenario, ScenarioSpec):
        spec = dataclasses.replace(parse_spec(scenario.text, source=scenario.source,
                                              overrides=(*scenario.overrides, *overrides)), objects=scenario.objects)
    elif isinstance(scenario, dict):
        plain, held = with_objects_held(scenario)
        spec = parse_spec(yaml.safe_dump(plain, sort_keys=False), source="<dict>", overrides=overrides)
        spec = dataclasses.replace(spec, objects=tuple(held.items()))
    elif isinstance(scenario, Path) or (isinstance(scenario, str) and "\n" not in scenario
                                        and (scenario.endswith((".yaml", ".yml")) or Path(scenario).is_file())):
        spec = read_spec(scenario, overrides=overrides)
    elif isinstance(scenario, str):
        spec = parse_spec(scenario, source="<text>", overrides=overrides)
    else:
        raise ScenarioError(f"expected a scenario file, YAML text, a mapping, a spec or a built scenario, got "
                            f"{type(scenario).__name__}", key="scenario")
    try:
        return build(spec, registry), spec.source
    except ScenarioError as exc:
        raise exc.located(file=spec.source) from None


def _check_options(*, format: str, executor: Any, workers: int | None, scheduler: str | None,
                   threads: int | None, retries: int) -> None:
    """The run options, checked before anything is built or computed; errors name the option."""
    if format not in FORMATS:
        raise ScenarioError(f"must be one of {', '.join(FORMATS)}, got '{format}'", key="format")
    if format == "zarr" and not all(importlib.util.find_spec(name) for name in ("zarr", "dask")):
        raise ScenarioError("a Zarr store needs zarr and dask: pip install 'stochthermo[zarr]'", key="format")
    if retries < 0:
        raise ScenarioError(f"must be >= 0, got {retries}", key="retries")
    for option, value in (("workers", workers), ("threads", threads)):
        if value is not None and value < 1:
            raise ScenarioError(f"must be >= 1, got {value}", key=option)
    if isinstance(executor, str) and executor not in EXECUTORS:
        raise ScenarioError(f"must be one of {', '.join(EXECUTORS)} or an Executor, got '{executor}'", key="executor")
    if scheduler and executor == "local":
        raise ScenarioError("give a scheduler (an existing cluster) or executor 'local', not both", key="scheduler")
    if workers is not None and executor != "local":
        raise ScenarioError("a worker count sizes a LocalCluster: only with executor 'local'", key="workers")


def _executor(executor: str | Executor, workers: int | None, scheduler: str | None,
              threads: int | None) -> Executor:
    """The executor the options name."""
    if not isinstance(executor, str):
        return executor
    if scheduler:
        return DaskExecutor.connect(scheduler, threads)
    if executor == "local":
        return DaskExecutor.local(workers, threads)
    return InProcess(threads)
