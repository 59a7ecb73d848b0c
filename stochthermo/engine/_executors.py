"""Executors: where the tasks of a run compute (:class:`~stochthermo.Task`).

* :class:`InProcess` (the default): one after another in this process, no cluster needed;
* :class:`DaskExecutor`: on a Dask cluster (the optional extra ``stochthermo[distributed]``), either a
  ``LocalCluster`` of worker processes on this machine (:meth:`DaskExecutor.local`) or an existing cluster
  reached through its scheduler's address (:meth:`DaskExecutor.connect`).

Whatever the executor, every finished task is written to the run's :class:`~stochthermo.TaskStore` as soon as
it finishes (a Dask worker writes its own task file, so a killed worker loses only the task it was computing), tasks
already in the store are not recomputed, a task that raises is retried ``retries`` times and then reported while the
others go on, and the results come back as ``{task key: {observer: {variable: array}}}`` for the engine to assemble;
``on_task(task, results)``, where given, is called in this process for every finished task as it arrives (those found
in the store first), e.g. to write its region of a Zarr store. The numbers do not depend on the executor: they are
bit for bit the same for the same thread count per task (``--threads``: torch's and the BLAS libraries'); with
different counts, multithreaded reductions round differently and the numbers agree to rounding, which degenerate
exact transport plans (W_1 rates) can amplify (2e-5 relative on the Swiss roll; tests/test_sweeps.py).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from tqdm.auto import tqdm

from stochthermo.engine._dataset import check_finite
from stochthermo.engine._eta import TaskClock, format_seconds, history_path
from stochthermo.engine._observation import observe_run, seed_independent
from stochthermo.engine._tasks import DamagedTaskFile, Task, TaskStore
from stochthermo.errors import ScenarioError, SimulationError, first_line
from stochthermo.numerics._device import available_cpus, compute_threads, resolve_device, resolve_dtype
from stochthermo.numerics._progress import listening

if TYPE_CHECKING:
    from stochthermo.engine._build import Scenario, Sweep

log = logging.getLogger("stochthermo")

#: the shortest interval between two redraws of the bar's text from a loop's progress reports (seconds)
REDRAW_SECONDS = 0.2

#: called with each finished task and its results ``{observer: {variable: array}}``
OnTask = Callable[[Task, dict], None]


@runtime_checkable
class Executor(Protocol):
    """Where the tasks of a run compute. :class:`InProcess` and :class:`DaskExecutor` are the built-in ones; any
    object with these two methods serves (a batch system, a pool of GPUs)."""

    def run(self, scenario: Scenario | Sweep, tasks: list[Task], *, device: torch.device, store: TaskStore | None,
            retries: int = 0, progress: bool = False, on_task: OnTask | None = None) -> dict[str, dict]:
        """Every task's results ``{task.key: {observer: {variable: array}}}``: those in ``store`` read back,
        the others computed (each saved to ``store`` and passed to ``on_task`` as it finishes); a failing task is
        rerun ``retries`` times, then reported with the others in one :class:`TaskFailures`."""
        ...

    def close(self) -> None:
        """Release what the executor holds (a cluster it started)."""
        ...

DISTRIBUTED_HINT = "pip install 'stochthermo[distributed]'"
#: how long to wait for a Dask scheduler to answer
CONNECT_TIMEOUT = "10s"
#: Dask settings of the LocalCluster's workers. Dask's defaults cost a numerical task about a quarter of its
#: time (the Swiss roll's rotational tasks: 79 s in a worker against 62 s in a plain process): the nanny's
#: MALLOC_TRIM_THRESHOLD_ fixes glibc's mmap threshold, so every large temporary array is mapped and unmapped
#: anew, and the profiler samples the task's stack every 10 ms under the GIL. Both off: 60-68 s
#: (benchmarks/sweep_scaling.py). The BLAS/OpenMP single-thread settings are kept. The scheduler (it runs in
#: this process) hands a worker a task only when its thread is free (worker saturation 1.0; Dask's 1.1 rounds
#: up to two tasks per one-thread worker, and a long task's queued successor may wait while the other worker
#: idles at the end of the sweep: 192 s -> 187 s for the Swiss roll's 8 tasks).
WORKER_CONFIG = {"distributed.nanny.pre-spawn-environ": {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1,
                                                         "OPENBLAS_NUM_THREADS": 1},
                 "distributed.worker.profile.enabled": False,
                 "distributed.scheduler.worker-saturation": 1.0}


class TaskFailures(SimulationError):
    """Some tasks failed after their retries; the finished ones are kept in the run directory."""

    def __init__(self, failures: list[tuple[Task, str]], total: int, directory: Path | None):
        self.failures = failures
        if total == 1:  # a run of one task: its error is the run's
            super().__init__(failures[0][1])
            return
        finished = total - len(failures)
        kept = f"; the {finished} finished are kept in {directory} (run again to resume)" if directory and finished \
            else ""
        listed = "; ".join(f"task {task.key[:12]} ({task.label}): {error}" for task, error in failures)
        super().__init__(f"{len(failures)} of {total} tasks failed{kept}: {listed}")


def reuse(store: TaskStore | None, scenario: Scenario | Sweep, task: Task) -> dict | None:
    """The results of ``task`` kept in ``store``, verified (digest, task key, run identity, and no non-finite
    value an observer does not declare); ``None`` when there are none, or when the file was damaged and is
    to be recomputed (:meth:`TaskStore.discard`)."""
    if store is None or not store.finished(task):
        return None
    try:
        measured = store.load(task)
        try:
            check_finite(scenario.variants[task.variant], measured, task.protocol, task.seed)
        except SimulationError as exc:
            raise DamagedTaskFile(store.path(task), f"holds a value no observer declares ({exc})") from None
    except DamagedTaskFile as damage:
        store.discard(damage)
        return None
    return measured


class TaskComputer:
    """Computes tasks of one built scenario in this process, moving each protocol's estimator and the
    perturbations to the device once (a trained estimator is then trained once per protocol)."""

    def __init__(self, scenario: Scenario | Sweep, device: torch.device):
        self.variants = scenario.variants
        self.device = device
        self._moved: dict[tuple[int, str], Any] = {}
        #: the results of a seed-independent protocol (:func:`seed_independent`), by (variant, protocol)
        self._every_seed: dict[tuple[int, str], dict] = {}

    def __call__(self, task: Task) -> dict[str, dict]:
        variant = self.variants[task.variant]
        dtype = resolve_dtype(variant.dtype)
        if (task.variant, "") not in self._moved:
            self._moved[(task.variant, "")] = {name: dist.to(self.device, dtype)
                                               for name, dist in variant.perturbations.items()}
        protocol = variant.setup.protocols[task.protocol]
        key = (task.variant, task.protocol)
        if key in self._every_seed:  # computed for another seed: every seed gives these results
            return copy.deepcopy(self._every_seed[key])
        if key not in self._moved:
            self._moved[key] = protocol.estimator.to(self.device, dtype)
        measured = observe_run(variant, protocol, self._moved[key], self._moved[(task.variant, "")], task.seed,
                               device=self.device)
        if seed_independent(variant, protocol):
            self._every_seed[key] = copy.deepcopy(measured)
        return measured


def _progress(tasks: list[Task], finished: int, name: str, show: bool) -> tqdm:
    """The run's bar: tasks done of all, elapsed time, and a postfix with the running task, its loops' progress and
    the time left as learned per task kind (tqdm's own estimate averages over unlike tasks)."""
    return tqdm(total=len(tasks), initial=finished, desc=name, unit="task", disable=not show, file=sys.stderr,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} tasks [{elapsed}{postfix}]")


class InProcess:
    """Every task in this process, in order; ``torch_threads`` fixes torch's thread count while they run
    (default: as it is — the command line sets it once, at start, from
    :func:`~stochthermo.numerics.default_threads`; changing it around every run of a long-lived process can leave
    MKL's thread team waiting on threads that are gone). numpy's and scipy's OpenBLAS run on one thread
    meanwhile (``compute_threads`` in ``stochthermo.numerics._device``)."""

    name = "in-process"

    def __init__(self, torch_threads: int | None = None):
        self.torch_threads = torch_threads

    def close(self) -> None:
        """Nothing to release."""

    def run(self, scenario: Scenario | Sweep, tasks: list[Task], *, device: torch.device, store: TaskStore | None,
            retries: int = 0, progress: bool = False, on_task: OnTask | None = None) -> dict[str, dict]:
        with compute_threads(self.torch_threads or None):
            return self._run(scenario, tasks, device, store, retries, progress, on_task)

    def _run(self, scenario, tasks, device, store, retries, progress, on_task):
        compute = TaskComputer(scenario, device)
        results: dict[str, dict] = {}
        failures: list[tuple[Task, str]] = []
        cause: Exception | None = None  # the first task exception, chained for its traceback
        for task in tasks:
            reused = reuse(store, scenario, task)
            if reused is not None:
                results[task.key] = reused
                if on_task:
                    on_task(task, reused)
        bar = _progress(tasks, len(results), scenario.name, progress)
        clock = TaskClock(history_path() if progress else None)
        pending = [task for task in tasks if task.key not in results]
        shown = [-math.inf]  # when the bar's text was last made: at most every REDRAW_SECONDS
        for index, task in enumerate(pending):
            def show(what: str = "", done: int = 0, total: int = 0, task=task, later=pending[index + 1:]) -> None:
                now = time.monotonic()
                if what and done < total and now - shown[0] < REDRAW_SECONDS:
                    return  # a loop's step between redraws: not worth summing the pending tasks again
                shown[0] = now
                inside = f", {what} {done}/{total}" if what else ""
                bar.set_postfix_str(f"{task.label}{inside}; {format_seconds(clock.remaining(task, later))}",
                                    refresh=False)
                bar.update(0)  # redraws at tqdm's pace

            for attempt in range(retries + 1):
                try:
                    clock.start()
                    show()
                    with listening(show) if progress else contextlib.nullcontext():
                        results[task.key] = compute(task)
                    log.info("task %s (%s): %.2f s", task.key[:12], task.label, clock.finished(task))
                    break
                except ScenarioError:  # bad input found while running: the user's to fix, not a task fault
                    raise
                except Exception as exc:  # any failure of one task is reported, the others go on
                    log.info("task %s (%s) failed (attempt %d of %d): %s", task.key[:12], task.label, attempt + 1,
                             retries + 1, exc)
                    error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, SimulationError) else str(exc)
                    cause = cause or exc
            else:
                failures.append((task, error))
                continue
            if store is not None:
                store.save(task, results[task.key])
            if on_task:
                on_task(task, results[task.key])
            bar.update()
        bar.close()
        clock.save()
        if failures:
            raise TaskFailures(failures, len(tasks), store.directory if store else None) from cause
        return results


@dataclass(frozen=True)
class TaskJob:
    """What a Dask worker needs to compute one task on its own: the scenario as text (rebuilt there), the
    registry's recipe, the task, where to write it, and how many torch threads to use."""

    text: str
    source: str | None
    overrides: tuple[str, ...]
    registry: dict
    task: Task
    device: str
    store: TaskStore
    torch_threads: int | None


def run_job(job: TaskJob) -> str:
    """Compute one task on a Dask worker and write its file; returns the task's key."""
    computer = _worker_computer(job)
    with compute_threads(job.torch_threads or None, restore=False):  # the worker's threads stay as the job set them
        measured = computer(job.task)
    job.store.save(job.task, measured)
    return job.task.key


_WORKER_COMPUTERS: dict[tuple, TaskComputer] = {}


def _worker_computer(job: TaskJob) -> TaskComputer:
    """The worker's built scenario for ``job`` (built once per worker process and scenario)."""
    key = (job.text, job.source, job.overrides, repr(sorted(job.registry.items())), job.device)
    if key not in _WORKER_COMPUTERS:
        from stochthermo.engine._build import parse_scenario
        from stochthermo.engine._registry import Registry

        scenario = parse_scenario(job.text, source=job.source, overrides=job.overrides,
                                  registry=Registry(**job.registry))
        _WORKER_COMPUTERS[key] = TaskComputer(scenario, _worker_device(job.device))
    return _WORKER_COMPUTERS[key]


def _worker_device(name: str) -> torch.device:
    """The device of this worker: for CUDA, GPU number (worker name mod the GPUs it sees), so that workers on
    one machine spread over its GPUs; a name that is not a number (``dask worker`` names a worker by its
    address) counts by its CRC-32, the same in every process (Python's string hash is salted per process)."""
    device = resolve_device(name)
    if device.type != "cuda":
        return device
    from distributed import get_worker

    worker_name = get_worker().name
    index = worker_name if isinstance(worker_name, int) else zlib.crc32(str(worker_name).encode())
    return torch.device("cuda", index % torch.cuda.device_count())


class DaskExecutor:
    """Tasks as Dask futures (one per task not yet in the store), each retried ``retries`` times; with a
    LocalCluster the cluster is started here and closed by ``close()``."""

    name = "dask"

    def __init__(self, client, *, cluster=None, torch_threads: int | None = None):
        self.client, self.cluster, self.torch_threads = client, cluster, torch_threads

    @classmethod
    def local(cls, workers: int | None = None, torch_threads: int | None = None) -> DaskExecutor:
        """A LocalCluster of ``workers`` processes (default: one per core), one thread each, torch threads
        ``torch_threads`` (default cores // workers, so that the workers share the cores without
        oversubscribing them)."""
        distributed = _require_distributed("executor")
        import dask
        cores = available_cpus()
        workers = workers or cores
        if workers < 1:
            raise ScenarioError(f"must be >= 1, got {workers}", key="workers")
        logging.getLogger("distributed").setLevel(logging.ERROR)  # the scheduler runs here: no INFO chatter
        gpus = {"GPU": 1} if torch.cuda.is_available() else None  # CUDA tasks ask for this resource
        with dask.config.set(WORKER_CONFIG):  # read when the worker processes start
            cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                               # a free port for the scheduler's HTTP server (and the dashboard
                                               # where bokeh is installed): a second local run on the same machine
                                               # would otherwise find 8787 taken and warn
                                               resources=gpus, dashboard_address=":0",
                                               silence_logs=logging.ERROR)
        threads = torch_threads or max(1, cores // workers)
        return cls(distributed.Client(cluster), cluster=cluster, torch_threads=threads)

    @classmethod
    def connect(cls, address: str, torch_threads: int | None = None) -> DaskExecutor:
        """The cluster whose scheduler listens at ``address`` (e.g. ``tcp://10.0.0.5:8786``); torch threads
        per task ``torch_threads`` (default: each worker's own setting)."""
        distributed = _require_distributed("scheduler")
        try:
            client = distributed.Client(address, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as exc:
            reason = first_line(exc, "no answer")
            raise ScenarioError(f"cannot reach a Dask scheduler at {address} ({type(exc).__name__}: {reason})",
                                key="scheduler") from None
        return cls(client, torch_threads=torch_threads)

    @property
    def dashboard(self) -> str | None:
        """The dashboard's address, where the cluster serves one."""
        try:
            return self.client.dashboard_link if self.cluster is None or self.cluster.dashboard_link else None
        except (AttributeError, KeyError):
            return None

    def run(self, scenario: Scenario | Sweep, tasks: list[Task], *, device: torch.device, store: TaskStore | None,
            retries: int = 0, progress: bool = False, on_task: OnTask | None = None) -> dict[str, dict]:
        from distributed import as_completed

        if store is None:
            raise ValueError("a Dask executor needs a task store: its workers write the task files")
        spec = scenario.spec
        results: dict[str, dict] = {}

        def collect(task: Task, measured: dict) -> None:
            results[task.key] = measured
            if on_task:
                on_task(task, measured)

        for task in tasks:
            reused = reuse(store, scenario, task)
            if reused is not None:
                collect(task, reused)
        jobs = [TaskJob(spec.text, spec.source, tuple(spec.overrides), scenario.registry.recipe, task, str(device),
                        store, self.torch_threads) for task in tasks if task.key not in results]
        bar = _progress(tasks, len(tasks) - len(jobs), scenario.name, progress)
        needs_gpu = device.type == "cuda"
        futures = {self.client.submit(run_job, job, key=f"stochthermo-{job.task.key}", retries=retries, pure=False,
                                      resources={"GPU": 1} if needs_gpu else None): job.task for job in jobs}
        failures: list[tuple[Task, str]] = []
        try:
            for future in as_completed(futures):
                task = futures[future]
                if future.status == "error":
                    exc = future.exception()
                    failures.append((task, str(exc) if isinstance(exc, SimulationError) else
                                     f"{type(exc).__name__}: {exc}"))
                else:
                    try:
                        collect(task, store.load(task))
                    except DamagedTaskFile as damage:  # written by the worker just now: a fault of that task
                        failures.append((task, str(damage)))
                    bar.update()
                bar.set_postfix_str(f"running {sum(not f.done() for f in futures)}, failed {len(failures)}")
        except BaseException:
            self.client.cancel(list(futures))
            raise
        finally:
            bar.close()
        if failures:
            raise TaskFailures(failures, len(tasks), store.directory)
        return results

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _require_distributed(option: str):
    try:
        import distributed
    except ImportError:
        raise ScenarioError(f"running on Dask needs the optional extra: {DISTRIBUTED_HINT}", key=option) from None
    return distributed
