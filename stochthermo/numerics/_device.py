"""Device and dtype resolution (``auto`` means CUDA when present, else CPU), and the CPUs a run may use."""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from threadpoolctl import ThreadpoolController, threadpool_limits

from stochthermo.errors import ScenarioError

DTYPES = {"float64": torch.float64, "float32": torch.float32}
DEVICE_NAME = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device_name(name: str) -> None:
    if not DEVICE_NAME.match(name):
        raise ScenarioError(f"unknown device '{name}' (use auto, cpu, cuda or cuda:N)", key="device")


def resolve_device(name: str) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> :class:`torch.device`."""
    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ScenarioError(f"device '{name}' requested but CUDA is not available here", key="device")
    return torch.device(name)


def resolve_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise ScenarioError(f"unknown dtype '{name}' (use float64 or float32)", key="dtype") from None


#: where a Linux container's CPU quota is read (cgroup v2, then v1)
CGROUP = Path("/sys/fs/cgroup")


def available_cpus(cgroup: Path = CGROUP) -> int:
    """The CPUs this process may use: its affinity mask (``taskset``, a batch scheduler's allocation) capped by
    a cgroup CPU quota (a container's ``--cpus``), rounded up, at least 1. ``os.cpu_count()`` counts the
    machine's CPUs instead, and torch starts that many threads: oversubscribed, they spin and the run
    collapses."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    quota = cgroup_quota(cgroup)
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)


def cgroup_quota(cgroup: Path = CGROUP) -> float | None:
    """CPUs' worth of the cgroup quota (quota / period), or ``None`` where there is none or it cannot be read."""
    try:
        fields = (cgroup / "cpu.max").read_text().split()  # v2: "max 100000" or "150000 100000"
        quota, period = fields[0], fields[1]
    except (OSError, IndexError):
        try:  # v1: quota -1 means none
            quota = (cgroup / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (cgroup / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    try:
        quota_value, period_value = float(quota), float(period)
    except ValueError:  # "max": no quota
        return None
    return quota_value / period_value if quota_value > 0 and period_value > 0 else None


def idle_cpus(window: float = 0.05, stat: Path = Path("/proc/stat")) -> float | None:
    """How many CPUs' worth of the machine sat idle over the next ``window`` seconds (``/proc/stat``), or ``None``
    where that cannot be read. Other work on a shared machine shows here at once; a run that starts as many
    threads as there are CPUs while they are busy spins in torch's thread pool instead of computing."""
    def sample() -> tuple[int, int]:
        fields = [int(v) for v in stat.read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + (fields[4] if len(fields) > 4 else 0), sum(fields)  # idle + iowait, total

    try:
        idle_before, total_before = sample()
        time.sleep(window)
        idle_after, total_after = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total_after <= total_before:
        return None
    return (idle_after - idle_before) / (total_after - total_before) * (os.cpu_count() or 1)


def default_threads() -> int:
    """The torch threads a run starts with by default: the CPUs it may use (:func:`available_cpus`), fewer where
    other work keeps some of them busy (:func:`idle_cpus`, rounded), at least 1."""
    threads = available_cpus()
    idle = idle_cpus()
    if idle is not None:
        threads = min(threads, max(1, round(idle)))
    return threads


@contextmanager
def compute_threads(threads: int | None, *, restore: bool = True) -> Iterator[None]:
    """While the block runs: torch (and the OpenMP runtimes) on ``threads`` threads (as they are where ``None``),
    and the OpenBLAS libraries of numpy and scipy on one thread; the OpenBLAS threads restored after, torch's only
    where ``restore`` (a Dask worker keeps the threads its job set).

    The engine computes with torch; numpy and scipy serve small products around it (the grid split's weighted
    sums, POT's cost matrices). Left at the CPU count, their OpenBLAS threads busy-wait for milliseconds after
    each such call and take the cores torch's threads need next: on 2 cores the Swiss roll's factorised grid
    kernel took 0.81 s inside a run against 0.23 s replayed alone, 0.31 s with one BLAS thread. Only OpenBLAS is
    limited (selected by threadpoolctl's internal API): a BLAS torch itself may load from a shared library (MKL on
    some installs) keeps its threads. scipy's OpenBLAS is loaded first (threadpoolctl limits only the libraries
    loaded when the block starts). torch's threads are changed only where ``threads`` is given: resetting them
    around every run of a long-lived process once left MKL's thread team spinning on a lost thread."""
    import scipy.linalg  # noqa: F401  (loads scipy's own OpenBLAS, so that it is limited too)

    saved = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with (ThreadpoolController().select(internal_api="openblas").limit(limits=1),
              threadpool_limits(limits=threads, user_api="openmp")):
            yield
    finally:
        if threads is not None and restore:
            torch.set_num_threads(saved)
