"""Tasks: the unit of work of a run (one sweep variant, one protocol, one seed), its key, and the store that
keeps every finished task on disk so an interrupted or failed run resumes where it stopped.

A task's *key* hashes everything its numbers depend on: the variant's fully resolved configuration (the
scenario text with overrides and sweep values applied; the seed list, output path, description and
reference values left out, as they do not change a task's numbers), the protocol, the seed, the device
type and dtype, the versions of stochthermo and of every loaded plugin, and a digest of the source code of the
engine and of every registered plugin's module (:func:`code_digest`): a plugin changed without a new version
never reuses a task of its old code. Two tasks with one key compute the same numbers, so a finished task
file is reused by any run that asks for that key.

The store is a *run directory* beside the output (``results/gmm.nc`` -> ``results/gmm.tasks/``) holding
one NumPy ``.npz`` file per finished task (every observer variable, bit for bit) written atomically and
fsync'ed, a ``manifest.json`` naming the scenario that owns the directory (a directory written by another
scenario is refused rather than mixed), and a ``lock`` that one run holds while it uses the directory (a
second run of the same output is refused in one line). Each task file carries its task key, the run's
identity and a SHA-256 digest of its arrays; a file that fails any of them, or cannot be read, is named in
one line and recomputed (or refused, where the run asks for ``recompute=False``), never used.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import shutil
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stochthermo import __version__
from stochthermo.errors import ScenarioError
from stochthermo.output._files import atomic_path, remove_stale_temporaries

if TYPE_CHECKING:
    import torch

    from stochthermo.engine._build import Scenario, Sweep

#: configuration keys that do not change a task's numbers (left out of its key and of the run's identity)
NOT_IN_KEY = ("seeds", "output", "description", "reference", "sweep")
MANIFEST = "manifest.json"
LOCK = "lock"
#: the member of a task file that holds its task key, the run's identity and the digest of its arrays
META = "__meta__"
log = logging.getLogger("stochthermo")
#: separates an observer's name from its variable's in a task file
SEPARATOR = "/"


@dataclass(frozen=True)
class Task:
    """One (variant, protocol, seed) of a run; ``variant`` indexes ``Sweep.variants``."""

    variant: int
    protocol: str
    seed: int
    key: str
    label: str
    #: what decides the task's work except its seed (a digest): tasks of one kind take about as long
    #: (the run's progress estimate, ``stochthermo.engine._eta``)
    kind: str = ""


def plan_tasks(scenario: Scenario | Sweep, device: torch.device, dtype: str) -> list[Task]:
    """Every task of ``scenario``, variant-major, then protocol, then seed (the order of the Dataset)."""
    tasks = []
    for index, variant in enumerate(scenario.variants):
        config = _configuration(variant)
        versions = {name: info.version for name, info in variant.registry.plugins.items()}
        code = code_digest(plugin_classes(variant))
        inputs = scenario_inputs(variant)
        where = ", ".join(f"{axis}={label}" for axis, label in variant.spec.labels)
        for protocol in variant.protocols:
            for seed in variant.seeds:
                identity = {"configuration": config, "protocol": protocol, "seed": seed, "device": device.type,
                            "dtype": dtype, "stochthermo": __version__, "plugins": versions, "code": code,
                            "inputs": inputs}
                key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
                identity.pop("seed")
                kind = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
                label = f"{where + ', ' if where else ''}protocol {protocol}, seed {seed}"
                tasks.append(Task(index, protocol, seed, key, label, kind))
    return tasks


def scenario_inputs(scenario: Scenario) -> dict[str, dict[str, str]]:
    """The :meth:`~stochthermo.roles.Component.inputs` of every component a scenario built that reports any,
    by scenario key (``data``, ``perturbations.narrow``, ``protocols.ddpm.estimator``, ...)."""
    setup = scenario.setup
    components = {"data": setup.data, "prior": setup.prior,
                  **{f"perturbations.{name}": law for name, law in setup.perturbations.items()}}
    for name, protocol in setup.protocols.items():
        components[f"protocols.{name}.process"] = protocol.process
        components[f"protocols.{name}.estimator"] = protocol.estimator
    return {key: found for key, component in components.items() if (found := component.inputs())}


def plugin_classes(scenario: Scenario | Sweep) -> tuple[type, ...]:
    """Every plugin class the scenario's registry holds (any of them may be built by a scenario or a plugin)."""
    return tuple(cls for classes in scenario.registry.classes.values() for cls in classes.values())


def code_digest(classes: tuple[type, ...]) -> str:
    """SHA-256 of the source of the engine's modules and of the modules defining ``classes``."""
    import stochthermo

    files = {Path(inspect.getfile(cls)) for cls in classes}
    files |= set(Path(stochthermo.__file__).parent.rglob("*.py"))
    stamps = []
    for file in sorted(files):
        status = file.stat()
        stamps.append((str(file), status.st_mtime_ns, status.st_size))
    return _digest_files(tuple(stamps))


@cache
def _digest_files(stamps: tuple[tuple[str, int, int], ...]) -> str:
    """The digest of the files' contents, cached by (path, modification time, size): an edited file is read
    again, also in a long-lived notebook."""
    digest = hashlib.sha256()
    for name, _, _ in stamps:
        digest.update(name.encode() + b"\0" + Path(name).read_bytes() + b"\0")
    return digest.hexdigest()


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
    """Finished tasks of one scenario in a run directory (module docstring). :meth:`open` takes the directory's
    lock; :meth:`close` releases it. ``recompute`` says what a damaged task file leads to: recomputing the task
    (the default) or a :class:`ScenarioError`."""

    def __init__(self, directory: str | Path, identity: str, scenario_name: str, *, recompute: bool = True):
        self.directory = Path(directory)
        self.identity = identity
        self.scenario_name = scenario_name
        self.recompute = recompute
        self._lock = None

    def __getstate__(self):  # shipped to Dask workers, which write task files but hold no lock
        return {**self.__dict__, "_lock": None}

    def open(self) -> TaskStore:
        """Check that an existing directory belongs to this scenario and take its lock (a
        :class:`ScenarioError` when another run holds it); remove what a killed run left half-written."""
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
        elif self.directory.exists() and not self.directory.is_dir():
            raise ScenarioError(f"{self.directory} exists and is not a directory: remove it or write the output "
                                "elsewhere", key="output")
        elif self.directory.exists() and any(p.name != LOCK for p in self.directory.iterdir()):
            raise ScenarioError(f"{self.directory} exists and is not a stochthermo run directory: remove it or write "
                                "the output elsewhere", key="output")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = _take_lock(self.directory / LOCK)
        remove_stale_temporaries(self.directory)
        return self

    def close(self) -> None:
        """Release the lock; a directory that holds no finished task is removed (a run that fails before its
        first task leaves nothing behind)."""
        if self._lock is None:
            return
        if self.directory.is_dir() and not any(self.directory.glob("*.npz")):
            shutil.rmtree(self.directory, ignore_errors=True)
        self._lock.close()
        self._lock = None

    def path(self, task: Task) -> Path:
        return self.directory / f"{task.key}.npz"

    def finished(self, task: Task) -> bool:
        return self.path(task).is_file()

    def save(self, task: Task, measured: dict[str, dict]) -> None:
        """Write a task's results ``{observer: {variable: array}}`` atomically, with its key, the run's identity
        and the digest of its arrays."""
        arrays = {f"{observer}{SEPARATOR}{name}": np.asarray(value)
                  for observer, variables in measured.items() for name, value in variables.items()}
        meta = {"task": task.key, "identity": self.identity, "digest": _arrays_digest(arrays)}
        manifest = self.directory / MANIFEST
        if not manifest.is_file():
            with atomic_path(manifest) as tmp:
                tmp.write_text(json.dumps({"scenario": self.scenario_name, "identity": self.identity,
                                           "stochthermo_version": __version__}, indent=1))
        with atomic_path(self.path(task)) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays, **{META: np.array(json.dumps(meta))})

    def load(self, task: Task) -> dict[str, dict]:
        """The verified results of a finished task; a :class:`DamagedTaskFile` naming the file and what is wrong
        with it otherwise."""
        path = self.path(task)
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in stored.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise DamagedTaskFile(path, f"unreadable ({type(exc).__name__})") from None
        try:
            meta = json.loads(str(arrays.pop(META)))
        except (KeyError, ValueError):
            raise DamagedTaskFile(path, "no verification record") from None
        if meta.get("task") != task.key or meta.get("identity") != self.identity:
            raise DamagedTaskFile(path, "written for another task or scenario")
        if meta.get("digest") != _arrays_digest(arrays):
            raise DamagedTaskFile(path, "its arrays do not match their digest (edited or corrupted)")
        measured: dict[str, dict] = {}
        for name, value in arrays.items():
            observer, variable = name.split(SEPARATOR, 1)
            measured.setdefault(observer, {})[variable] = value
        return measured

    def discard(self, damage: DamagedTaskFile) -> None:
        """Remove a damaged task file so that its task is computed again (a warning names it), or refuse it
        where the run asked for ``recompute=False``."""
        if not self.recompute:
            raise ScenarioError(f"{damage}: refused (the run was asked not to recompute damaged tasks); delete it "
                                "to recompute", option="no-recompute") from None
        log.warning("%s: recomputed", damage)
        Path(damage.path).unlink(missing_ok=True)

    def remove(self) -> None:
        """Delete the run directory (after success) and release its lock."""
        shutil.rmtree(self.directory, ignore_errors=True)
        self.close()


class DamagedTaskFile(Exception):
    """A task file that cannot be used: unreadable, edited, or written for another task."""

    def __init__(self, path: Path, reason: str):
        self.path = path
        super().__init__(f"task file {path}: {reason}")


def _arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the arrays' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _take_lock(path: Path):
    """An open file holding an exclusive lock on ``path``; a :class:`ScenarioError` if another process holds it."""
    import fcntl

    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ScenarioError(f"another run is writing {path.parent}: wait for it to finish, or write the output "
                            "elsewhere", key="output") from None
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
