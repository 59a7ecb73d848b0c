"""Tasks, executors and resumable runs (stochthermo.tasks, stochthermo.executors).

A small sweep (2 x 2 variants x 2 protocols x 2 seeds = 16 tasks) gives the same Dataset, every variable and
attribute compared exactly, whether it runs in this process, on a Dask LocalCluster of two workers, or is
interrupted and resumed; a task that fails leaves the others on disk and names itself; a worker killed
mid-task is replaced and the sweep completes. A test-only observer ("probe") drives the faults through
environment variables, which the cluster's worker processes inherit.
"""

import importlib.util
import math
import os
import signal
import sys
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import torch
import xarray as xr
import yaml

from conftest import assert_same_run
from stochthermo import Observer, Variable, hookimpl
from stochthermo.cli import main
from stochthermo.engine._build import parse_scenario
from stochthermo.engine._executors import InProcess, TaskFailures
from stochthermo.engine._registry import Registry
from stochthermo.engine._simulate import simulate
from stochthermo.engine._tasks import TaskStore, plan_tasks, run_directory, run_identity
from stochthermo.engine._zarr_regions import RegionWriter
from stochthermo.errors import ScenarioError
from stochthermo.output._files import open_run

ZARR = all(importlib.util.find_spec(name) for name in ("zarr", "dask"))

distributed = pytest.importorskip("distributed")
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module

FAIL, INTERRUPT, KILL = "STOCHTHERMO_TEST_FAIL", "STOCHTHERMO_TEST_INTERRUPT", "STOCHTHERMO_TEST_KILL_MARKER"
SWEEP = {
    "name": "small_sweep", "tau": 1.0, "time_steps": 8, "particles": 128, "seeds": {"count": 2},
    "data": {"name": "gaussian_mixture", "weights": [0.5, 0.5], "means": [-0.6, 0.6], "stds": [0.3, 0.3]},
    "prior": {"name": "gaussian", "mean": 0.0, "std": 1.0},
    "protocols": {"cosine": {"process": {"name": "scheduled", "schedule": "cosine"}},
                  "ot": {"process": "optimal_transport"}},
    "perturbations": {"shifted": {"name": "gaussian", "mean": 1.0, "std": 1.0}},
    "observers": ["thermodynamics", "response", "probe"],
    "sweep": {"protocols.cosine.process.schedule": ["cosine", "cond_ot"], "data.means": [[-0.6, 0.6], [-0.8, 0.5]]},
}


class Probe(Observer):
    """The mean of the generated ensemble (the true reverse process at t = 0); fails, interrupts or kills its
    process on request."""

    name = "probe"

    def variables(self):
        return {"probe_mean": Variable((), "mean of the generated ensemble", "1", "E[x_0]", "-")}

    def observe(self, run, measured):
        where = f"{run.protocol}:{run.seed}"
        if os.environ.get(FAIL) == where:
            raise RuntimeError(f"probe asked to fail at {where}")
        if os.environ.get(INTERRUPT) == where:
            raise KeyboardInterrupt
        marker = os.environ.get(KILL)
        if marker and where == "ot:1" and not Path(marker).exists():
            Path(marker).write_text("killed once")
            os.kill(os.getpid(), signal.SIGKILL)
        return {"probe_mean": float(run.true.expectation(run.true.positions[0, :, 0]))}


class ProbePlugin:
    @hookimpl
    def stochthermo_register_observers(self):
        return [Probe]


def _registry():
    return Registry(entry_points=False, extra={"probe_plugin": ProbePlugin()})


def _scenario():
    return parse_scenario(yaml.safe_dump(SWEEP, sort_keys=False), source="sweep.yaml", registry=_registry())


def _store(scenario, directory):
    return TaskStore(directory, run_identity(scenario), scenario.name).open()


@pytest.fixture(scope="module")
def sequential():
    return simulate(_scenario(), device="cpu")


@pytest.fixture(scope="module")
def cluster():
    from stochthermo.engine._executors import DaskExecutor

    executor = DaskExecutor.local(2)
    yield executor
    executor.close()


def test_sweep_has_one_dimension_per_swept_key_and_seed_count(sequential):
    assert dict(sequential.sizes) == {"protocols_cosine_process_schedule": 2, "data_means": 2, "protocol": 2,
                                      "seed": 2, "time": 9, "perturbation": 1}
    assert list(sequential["protocols_cosine_process_schedule"].values) == ["cosine", "cond_ot"]
    assert list(sequential.seed.values) == [0, 1]
    assert np.isfinite(sequential.probe_mean).all()
    # the data's mean differs between the variants (0 and -0.15): the stacking puts each task's numbers in place
    assert np.allclose(sequential.probe_mean.sel(data_means="-0.6x0.6"), 0.0, atol=1e-3)
    assert np.allclose(sequential.probe_mean.sel(data_means="-0.8x0.5"), -0.15, atol=1e-3)


def test_local_cluster_gives_the_identical_dataset(sequential, cluster, tmp_path):
    """... and, written region by region into one Zarr store as the workers' tasks arrive, the same store."""
    scenario = _scenario()
    store = _store(scenario, tmp_path / "run")
    regions = RegionWriter(scenario, store.directory) if ZARR else None
    dataset = simulate(scenario, device="cpu", executor=cluster, store=store, on_task=regions)
    assert_same_run(dataset, sequential)
    store.close()  # the run is over: its lock released
    _store(scenario, tmp_path / "run").close()  # the workers' task files are this scenario's: a rerun resumes there
    if ZARR:
        assert_same_run(open_run(regions.finish(dataset, tmp_path / "run.zarr")), sequential)


def test_local_workers_run_without_dask_s_malloc_trim_and_profiler(cluster):
    """The LocalCluster's workers neither fix glibc's trim threshold nor profile tasks (both cost numerical
    tasks about a quarter of their time: stochthermo.executors.WORKER_CONFIG), keep BLAS single-threaded, and
    the scheduler hands each worker thread one task at a time."""
    def settings():
        import dask

        return (os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("OMP_NUM_THREADS"),
                dask.config.get("distributed.worker.profile.enabled"))

    assert set(cluster.client.run(settings).values()) == {(None, "1", False)}
    # one task at a time per worker thread: no task waits queued behind a long one while another worker idles
    assert cluster.client.run_on_scheduler(
        lambda dask_scheduler: dask_scheduler.WORKER_SATURATION) == 1.0


@pytest.mark.skipif(not ZARR, reason="needs the zarr extra")
def test_zarr_regions_are_written_as_tasks_finish(sequential, tmp_path, monkeypatch):
    """Each finished task writes its own region of the store at once: after a run in which the tasks of
    protocol 'ot', seed 1 failed, the store in the run directory holds every other task's numbers and the
    fill value (NaN) in the failed regions; the rerun fills them and the finished store is the run's Dataset."""
    scenario = _scenario()
    store = _store(scenario, tmp_path / "run")
    monkeypatch.setenv(FAIL, "ot:1")
    with pytest.raises(TaskFailures):
        simulate(scenario, device="cpu", store=store, on_task=RegionWriter(scenario, store.directory))
    with xr.open_zarr(store.directory / "regions.zarr", consolidated=False) as partial:
        written = partial.probe_mean.load()
    np.testing.assert_array_equal(written.sel(protocol="cosine").values,
                                  sequential.probe_mean.sel(protocol="cosine").values)
    np.testing.assert_array_equal(written.sel(protocol="ot", seed=0).values,
                                  sequential.probe_mean.sel(protocol="ot", seed=0).values)
    assert written.sel(protocol="ot", seed=1).isnull().all()
    monkeypatch.delenv(FAIL)
    regions = RegionWriter(scenario, store.directory)
    dataset = simulate(scenario, device="cpu", store=store, on_task=regions)
    path = regions.finish(dataset, tmp_path / "run.zarr")
    assert_same_run(open_run(path), sequential)
    assert not (store.directory / "regions.zarr").exists()


def test_two_dimensional_tasks_agree_to_rounding_and_bitwise_at_equal_threads(cluster, tmp_path):
    """In 2-D the grid split solves a sparse system and torch reduces over many particles: with all cores'
    threads here and one per worker there, multithreaded reductions round differently and the numbers agree
    to rounding; at equal thread counts (``--threads``) they are bit for bit identical."""
    spec = {**{k: v for k, v in SWEEP.items() if k != "sweep"}, "particles": 256, "seeds": [3],
            "data": {"name": "swiss_roll", "size": 200, "noise": 0.1, "scale": 0.25, "seed": 0},
            "prior": {"name": "gaussian", "mean": [0.0, 0.0], "std": 1.0},
            "perturbations": {"narrow": {"name": "gaussian", "mean": [0.0, 0.0], "std": 0.9}},
            "protocols": {"g3": {"process": {"name": "rotational", "h": 1.1, "g": 3.0, "temperature_final": 0.5}},
                          "ot": {"process": "optimal_transport"}},
            "reverse_start": "prior", "observers": ["thermodynamics", "response"]}
    scenario = parse_scenario(yaml.safe_dump(spec, sort_keys=False), registry=_registry())
    here = simulate(scenario, device="cpu")
    there = simulate(scenario, device="cpu", executor=cluster, store=_store(scenario, tmp_path / "run"))
    assert here.attrs == there.attrs and list(here.data_vars) == list(there.data_vars)
    assert_same_run(here.coords.to_dataset(), there.coords.to_dataset())
    for name, variable in here.data_vars.items():
        assert variable.attrs == there[name].attrs and variable.dims == there[name].dims
        if variable.dtype.kind == "f":
            # the split's orthogonality residual is zero up to rounding (~1e-13 of ∫|ν|²P): it is that rounding
            atol = 1e-11 if name == "orthogonality_residual" else 1e-13
            np.testing.assert_allclose(variable.values, there[name].values, rtol=1e-11, atol=atol, err_msg=name)
        else:
            np.testing.assert_array_equal(variable.values, there[name].values, err_msg=name)
    equal_threads = simulate(scenario, device="cpu", executor=InProcess(torch_threads=cluster.torch_threads))
    assert_same_run(equal_threads, there)


def test_interrupted_then_resumed_gives_the_identical_dataset(sequential, tmp_path, monkeypatch):
    scenario = _scenario()
    store = _store(scenario, tmp_path / "run")
    monkeypatch.setenv(INTERRUPT, "ot:0")
    with pytest.raises(KeyboardInterrupt):
        simulate(scenario, device="cpu", store=store)
    tasks = plan_tasks(scenario, torch.device("cpu"), "float64")
    assert sum(store.finished(task) for task in tasks) == 2  # cosine seeds 0 and 1 of the first variant
    monkeypatch.delenv(INTERRUPT)
    store.close()  # the interrupted run released its run directory
    resumed = simulate(_scenario(), device="cpu", store=_store(scenario, tmp_path / "run"))
    assert_same_run(resumed, sequential)


def test_a_failing_task_is_named_and_the_others_are_kept(tmp_path, monkeypatch):
    scenario = _scenario()
    store = _store(scenario, tmp_path / "run")
    monkeypatch.setenv(FAIL, "cosine:1")
    with pytest.raises(TaskFailures) as failure:
        simulate(scenario, device="cpu", store=store, retries=1)
    message = str(failure.value)
    assert message.startswith("4 of 16 tasks failed") and "protocol cosine, seed 1" in message
    assert "probe asked to fail at cosine:1" in message and str(store.directory) in message
    tasks = plan_tasks(scenario, torch.device("cpu"), "float64")
    assert sum(store.finished(task) for task in tasks) == 12


def test_a_killed_worker_loses_only_its_task(sequential, tmp_path, monkeypatch):
    from stochthermo.engine._executors import DaskExecutor

    marker = tmp_path / "killed"
    monkeypatch.setenv(KILL, str(marker))
    # a cluster of its own, whose workers inherit the variable when they start (restarting the shared cluster's
    # workers instead timed out after 120 s on a loaded 2-core machine)
    executor = DaskExecutor.local(2)
    try:
        scenario = _scenario()
        dataset = simulate(scenario, device="cpu", executor=executor, store=_store(scenario, tmp_path / "run"))
    finally:
        executor.close()
    assert marker.exists()  # a worker did die mid-task
    assert_same_run(dataset, sequential)


def test_a_run_directory_of_another_scenario_is_refused(tmp_path):
    scenario = _scenario()
    first_task = plan_tasks(scenario, torch.device("cpu"), "float64")[0]
    _store(scenario, tmp_path / "run").save(first_task, {"probe": {"probe_mean": 0.0}})
    other = parse_scenario(yaml.safe_dump({**SWEEP, "particles": 256}, sort_keys=False), registry=_registry())
    with pytest.raises(ScenarioError, match="holds tasks of another scenario"):
        _store(other, tmp_path / "run")
    (tmp_path / "stray").mkdir()
    (tmp_path / "stray" / "notes.txt").write_text("mine")
    with pytest.raises(ScenarioError, match="is not a stochthermo run directory"):
        _store(scenario, tmp_path / "stray")


def test_cli_resumes_from_the_run_directory_and_removes_it(write_scenario, tmp_path, capsys):
    spec = {key: value for key, value in SWEEP.items() if key != "sweep"}
    spec["observers"] = ["thermodynamics", "response"]
    path = write_scenario(spec)
    output = tmp_path / "out" / "run.nc"
    assert main(["run", str(path), "-q", "-o", str(output), "--keep-tasks"]) == 0
    directory = run_directory(output)
    assert len(list(directory.glob("*.npz"))) == 4
    first = open_run(output)
    # a rerun reuses every task file (none is rewritten) ...
    for task_file in directory.glob("*.npz"):
        os.utime(task_file, (0, 0))
    assert main(["run", str(path), "-q", "-o", str(output), "--keep-tasks"]) == 0
    assert all(task_file.stat().st_mtime == 0 for task_file in directory.glob("*.npz"))
    assert_same_run(open_run(output), first)
    # ... and without --keep-tasks the directory goes once the output is written
    assert main(["run", str(path), "-q", "-o", str(output)]) == 0
    assert not directory.exists()
    assert_same_run(open_run(output), first)


@pytest.mark.parametrize("arguments, expected", [
    (["--workers", "0", "--executor", "local"], "--workers: must be >= 1, got 0"),
    (["--workers", "2"], "--workers: a worker count sizes a LocalCluster: only with executor 'local'"),
    (["--retries", "-1"], "--retries: must be >= 0, got -1"),
    (["--scheduler", "tcp://127.0.0.1:9", "--executor", "local"], "--scheduler: give a scheduler (an existing"),
])
def test_bad_executor_options_are_one_line_errors(arguments, expected, write_scenario, tmp_path, capsys):
    path = write_scenario({key: value for key, value in SWEEP.items() if key not in ("sweep", "observers")})
    assert main(["run", str(path), "-o", str(tmp_path / "o.nc"), *arguments]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "o.nc").exists() and not run_directory(tmp_path / "o.nc").exists()


def test_unreachable_scheduler_is_a_one_line_error(write_scenario, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("stochthermo.engine._executors.CONNECT_TIMEOUT", "1s")
    path = write_scenario({key: value for key, value in SWEEP.items() if key not in ("sweep", "observers")})
    assert main(["run", str(path), "-o", str(tmp_path / "o.nc"), "--scheduler", "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--scheduler: cannot reach a Dask scheduler at tcp://127.0.0.1:9" in err, err
    assert not (tmp_path / "o.nc").exists() and not run_directory(tmp_path / "o.nc").exists()


def test_zarr_output_holds_the_same_run(write_scenario, tmp_path):
    pytest.importorskip("zarr")
    spec = {key: value for key, value in SWEEP.items() if key not in ("observers", "sweep")}
    spec["observers"] = ["thermodynamics", "response", "bounds"]
    path = write_scenario(spec)
    assert main(["run", str(path), "-q", "-o", str(tmp_path / "run.nc")]) == 0
    assert main(["run", str(path), "-q", "-o", str(tmp_path / "run.zarr"), "--format", "zarr"]) == 0
    assert main(["run", str(path), "-q", "-o", str(tmp_path / "run.zarr"), "--format", "zarr"]) == 0  # replaced
    assert_same_run(open_run(tmp_path / "run.zarr"), open_run(tmp_path / "run.nc"))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # nothing left aside
    assert main(["report", str(tmp_path / "run.zarr"), "-o", str(tmp_path / "report.html")]) == 0


@pytest.mark.parametrize("worker_name, gpu", [(0, 0), (4, 1), (5, 2), ("tcp://10.0.0.7:40124", 2)])
def test_cuda_workers_spread_over_the_gpus(worker_name, gpu, monkeypatch):
    """A worker of a CUDA run uses GPU (its name mod the GPUs it sees); a name that is an address counts by its
    CRC-32 (crc32(b"tcp://10.0.0.7:40124") = 1063241978 = 2 mod 3), the same in every process. CPU runs ignore
    the worker. (No GPU is needed: the device count and the worker are stand-ins.)"""
    from stochthermo.engine import _executors as executors

    monkeypatch.setattr(executors, "resolve_device", torch.device)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(distributed, "get_worker", lambda: type("Worker", (), {"name": worker_name})())
    assert executors._worker_device("cuda") == torch.device("cuda", gpu)
    assert executors._worker_device("cpu") == torch.device("cpu")


V1 = ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us")


@pytest.mark.parametrize("files, quota", [({"cpu.max": "max 100000\n"}, None), ({"cpu.max": "150000 100000\n"}, 1.5),
                                          (dict(zip(V1, ("-1\n", "100000\n"), strict=True)), None),
                                          (dict(zip(V1, ("50000\n", "100000\n"), strict=True)), 0.5),
                                          ({}, None)])
def test_the_cpus_a_run_may_use_follow_the_cgroup_quota(tmp_path, files, quota):
    """A container's CPU quota (cgroup v2 cpu.max, or v1 cfs quota/period) caps the threads a run starts; the
    affinity mask bounds them otherwise (os.cpu_count() counts the machine's CPUs, not this process's)."""
    import os

    from stochthermo.numerics import available_cpus, cgroup_quota

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_quota(tmp_path) == quota
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(tmp_path) == (affinity if quota is None else max(1, min(affinity, math.ceil(quota))))


def test_the_idle_cpus_are_read_from_the_kernels_counters(tmp_path, monkeypatch):
    """Between two reads of /proc/stat, half of the ticks idle: half the machine's CPUs are free, and the default
    thread count takes no more (at least 1)."""
    import os

    from stochthermo.numerics import _device

    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3 4\n")
    monkeypatch.setattr(_device.time, "sleep", lambda seconds: stat.write_text("cpu  150 0 150 900 0 0 0 0 0 0\n"))
    assert _device.idle_cpus(stat=stat) == pytest.approx(0.5 * os.cpu_count())
    assert _device.idle_cpus(stat=tmp_path / "missing") is None
    monkeypatch.setattr(_device, "idle_cpus", lambda: 0.2)
    assert _device.default_threads() == 1
