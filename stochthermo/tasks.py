"""Tasks: the unit of work of a run (one sweep variant, one protocol, one seed), its key, and the store that
keeps every finished task on disk so an interrupted or failed run resumes where it stopped.

A task's *key* hashes everything its numbers depend on: the variant's fully resolved configuration (the
scenario text with overrides and sweep values applied; the seed list, output path, description and
reference values left out, as they do not change a task's numbers), the protocol, the seed, the device
type and dtype, and the versions of stochthermo and of every loaded plugin. Two tasks with one key compute
the same numbers, so a finished task file is reused by any run that asks for that key.

The store is a *run directory* beside the output (``results/gmm.nc`` -> ``results/gmm.tasks/``) holding
one NumPy ``.npz`` file per finished task (every observer variable, bit for bit) written atomically, and a
``manifest.json`` naming the scenario that owns the directory: a directory written by another scenario is
refused rather than mixed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import __version__
from .errors import ScenarioError
from .io import atomic_path

if TYPE_CHECKING:
    import torch

    from .scenario import Scenario, Sweep

#: configuration keys that do not change a task's numbers (left out of its key and of the run's identity)
NOT_IN_KEY = ("seeds", "output", "description", "reference", "sweep")
MANIFEST = "manifest.json"
#: separates an observer's name from its variable's in a task file
SEPARATOR = "/"


@dataclass(frozen=True)
class Task:
    """One (variant, protocol, seed) of a run; ``variant`` indexes :attr:`Sweep.variants`."""

    variant: int
    protocol: str
    seed: int
    key: str
    label: str


def plan_tasks(scenario: Scenario | Sweep, device: torch.device, dtype: str) -> list[Task]:
    """Every task of ``scenario``, variant-major, then protocol, then seed (the order of the Dataset)."""
    tasks = []
    for index, variant in enumerate(scenario.variants):
        config = _configuration(variant)
        versions = {name: info.version for name, info in variant.registry.plugins.items()}
        where = ", ".join(f"{axis}={label}" for axis, label in variant.spec.labels)
        for protocol in variant.protocols:
            for seed in variant.seeds:
                identity = {"configuration": config, "protocol": protocol, "seed": seed, "device": device.type,
                            "dtype": dtype, "stochthermo": __version__, "plugins": versions}
                key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
                label = f"{where + ', ' if where else ''}protocol {protocol}, seed {seed}"
                tasks.append(Task(index, protocol, seed, key, label))
    return tasks


def _configuration(scenario: Scenario | Sweep) -> dict:
    """The resolved configuration without the keys that do not change numbers."""
    config = json.loads(scenario.spec.resolved)
    for key in NOT_IN_KEY:
        config.pop(key, None)
    return config


def run_identity(scenario: Scenario | Sweep) -> str:
    """The hash that names the scenario owning a run directory: its configuration without the keys that do
    not change numbers (so adding seeds or sweep values, or editing comments, resumes; changing the physics
    is refused rather than mixed)."""
    return hashlib.sha256(json.dumps(_configuration(scenario), sort_keys=True).encode()).hexdigest()


def run_directory(output: str | Path) -> Path:
    """The run directory of an output file: ``results/gmm.nc`` -> ``results/gmm.tasks``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.tasks")


class TaskStore:
    """Finished tasks of one scenario in a run directory (module docstring)."""

    def __init__(self, directory: str | Path, identity: str, scenario_name: str):
        self.directory = Path(directory)
        self.identity = identity
        self.scenario_name = scenario_name

    def open(self) -> TaskStore:
        """Check that an existing directory belongs to this scenario; a new one is created with the first
        finished task (a run that fails before leaves nothing behind)."""
        manifest = self.directory / MANIFEST
        if manifest.is_file():
            try:
                owner = json.loads(manifest.read_text())
            except (OSError, ValueError):
                owner = {}
            if owner.get("identity") != self.identity:
                raise ScenarioError(f"run directory {self.directory} holds tasks of another scenario "
                                    f"('{owner.get('scenario', '?')}', or this one with other settings): remove it or "
                                    "write the output elsewhere", key="output")
        elif self.directory.exists() and any(self.directory.iterdir()):
            raise ScenarioError(f"{self.directory} exists and is not a stochthermo run directory: remove it or write "
                                "the output elsewhere", key="output")
        return self

    def path(self, task: Task) -> Path:
        return self.directory / f"{task.key}.npz"

    def finished(self, task: Task) -> bool:
        return self.path(task).is_file()

    def save(self, task: Task, measured: dict[str, dict]) -> None:
        """Write a task's results ``{observer: {variable: array}}`` atomically."""
        arrays = {f"{observer}{SEPARATOR}{name}": np.asarray(value)
                  for observer, variables in measured.items() for name, value in variables.items()}
        manifest = self.directory / MANIFEST
        if not manifest.is_file():
            with atomic_path(manifest) as tmp:
                tmp.write_text(json.dumps({"scenario": self.scenario_name, "identity": self.identity,
                                           "stochthermo_version": __version__}, indent=1))
        with atomic_path(self.path(task)) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)

    def load(self, task: Task) -> dict[str, dict]:
        measured: dict[str, dict] = {}
        with np.load(self.path(task), allow_pickle=False) as stored:
            for name in stored.files:
                observer, variable = name.split(SEPARATOR, 1)
                measured.setdefault(observer, {})[variable] = stored[name]
        return measured

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
