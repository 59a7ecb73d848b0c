"""Refuse a run whose particle trajectories cannot fit in memory, before anything is allocated.

The flows of one (protocol, seed) keep positions and velocities of every ensemble at every saved time:
``2 × (time_steps + 1) × particles × n_ensembles × d`` numbers, where the ensembles are the true start,
each perturbed start and, with ``reverse_start: prior``, the forward one. Reversing them onto the forward
grid copies them once more, so the peak is about twice that. A run asking for more than the memory
available on its device is a scenario error naming ``particles``.
"""

from __future__ import annotations

import os

import torch

from stochthermo.errors import ScenarioError
from stochthermo.roles._protocol import Setup

GIB = 2**30
#: the trajectories are held twice at the peak (solver output and its copy on the forward grid)
PEAK_COPIES = 2


def trajectory_bytes(*, time_steps: int, particles: int, perturbations: int, reverse_start: str, dim: int,
                     dtype: torch.dtype) -> int:
    """Peak bytes of one (protocol, seed)'s flows."""
    ensembles = 1 + perturbations + (reverse_start == "prior")
    numbers = 2 * (time_steps + 1) * particles * ensembles * dim
    return PEAK_COPIES * numbers * torch.finfo(dtype).bits // 8


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device`` (CUDA: the driver's count; CPU: MemAvailable of /proc/meminfo, else the
    physical memory); ``None`` where it cannot be told."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(setup: Setup, device: torch.device, dtype: torch.dtype) -> None:
    """A :class:`ScenarioError` (key ``particles``) when the flows need more memory than ``device`` has free."""
    check_sizes(time_steps=setup.time_steps, particles=setup.particles, perturbations=len(setup.perturbations),
                reverse_start=setup.reverse_start, dim=setup.data.dim, device=device, dtype=dtype)


def check_sizes(*, time_steps: int, particles: int, perturbations: int, reverse_start: str, dim: int,
                device: torch.device, dtype: torch.dtype) -> None:
    """:func:`check_memory` from the scenario's sizes alone: called when a scenario is built, before any
    plugin or observer allocates an array of the time grid or of the particles."""
    needed = trajectory_bytes(time_steps=time_steps, particles=particles, perturbations=perturbations,
                              reverse_start=reverse_start, dim=dim, dtype=dtype)
    free = available_bytes(device)
    if free is not None and needed > free:
        raise ScenarioError(f"{particles} particles x {time_steps + 1} saved times need about {needed / GIB:.3g} GiB "
                            f"for the trajectories, but {free / GIB:.3g} GiB are free on {device}: the run does not "
                            "fit in memory; lower particles or time_steps", key="particles")
