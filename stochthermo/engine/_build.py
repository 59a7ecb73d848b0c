"""Scenarios: a :class:`~stochthermo.ScenarioSpec` built into ready-to-run objects.

The second stage of spec → build → run. :func:`build_scenario` validates a spec's settings and asks the
:class:`~stochthermo.Registry` to construct every plugin it names (the registry that built a
scenario is the one its Dataset records); a spec with a ``sweep`` builds into a :class:`Sweep` of
scenarios, one per variant. Every error names the file, the dotted key and the problem; unknown keys and
plugin names get a "did you mean" suggestion.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stochthermo.engine._memory import check_sizes
from stochthermo.engine._parameters import SCENARIO_DIRECTORY, coerce
from stochthermo.engine._registry import Registry, default_registry
from stochthermo.engine._settings import SECTION_DEFAULTS, read_settings
from stochthermo.engine._spec import ScenarioSpec, parse_spec, read_spec
from stochthermo.errors import ScenarioError, did_you_mean
from stochthermo.numerics._device import resolve_device, resolve_dtype
from stochthermo.roles._distribution import Distribution
from stochthermo.roles._equation import estimator_equation, process_equation
from stochthermo.roles._observer import Observer, coordinate_values
from stochthermo.roles._protocol import DrivingProtocol, Setup


@dataclass(frozen=True)
class Scenario:
    """A built scenario without a sweep: its spec, the registry that built it, the :class:`Setup` observers
    see, and the observers in the order they are listed (the Dataset's order) and in the order they run."""

    spec: ScenarioSpec
    registry: Registry = field(repr=False)
    setup: Setup
    observers: tuple[Observer, ...]
    #: the observers ordered so that every producer of a consumed variable runs before its consumer
    observation_order: tuple[Observer, ...]
    output: str | None = None
    description: str = ""
    reference: dict = field(default_factory=dict)

    @property
    def variants(self) -> tuple[Scenario, ...]:
        return (self,)

    # the settings, for convenience
    name = property(lambda self: self.setup.name)
    tau = property(lambda self: self.setup.tau)
    times = property(lambda self: self.setup.times)
    time_steps = property(lambda self: self.setup.time_steps)
    particles = property(lambda self: self.setup.particles)
    seeds = property(lambda self: list(self.setup.seeds))
    device = property(lambda self: self.setup.device)
    dtype = property(lambda self: self.setup.dtype)
    reverse_start = property(lambda self: self.setup.reverse_start)
    data = property(lambda self: self.setup.data)
    prior = property(lambda self: self.setup.prior)
    perturbations = property(lambda self: self.setup.perturbations)
    protocols = property(lambda self: self.setup.protocols)


@dataclass(frozen=True)
class Sweep:
    """A spec with a ``sweep``, built: one :class:`Scenario` per variant, row-major over :attr:`axes`."""

    spec: ScenarioSpec
    variants: tuple[Scenario, ...]

    @property
    def axes(self) -> dict[str, list]:
        """Swept key (or axis name) -> the values it takes."""
        return self.spec.sweep

    @property
    def name(self) -> str:
        return self.variants[0].name

    @property
    def registry(self) -> Registry:
        return self.variants[0].registry


def load_scenario(path: str | Path, *, overrides: list[str] | tuple[str, ...] = (),
                  registry: Registry | None = None) -> Scenario | Sweep:
    """Read, validate and build a scenario file; ``overrides`` are ``dotted.key=value`` strings (YAML values)."""
    spec = read_spec(path, overrides=overrides)
    try:
        return build(spec, registry)
    except ScenarioError as exc:
        raise exc.located(file=str(path)) from None


def parse_scenario(text: str, *, source: str | None = None, overrides: list[str] | tuple[str, ...] = (),
                   registry: Registry | None = None) -> Scenario | Sweep:
    """Validate and build scenario text (``source`` names it in errors), with ``overrides`` applied first."""
    return build(parse_spec(text, source=source, overrides=overrides), registry)


def build(spec: ScenarioSpec, registry: Registry | None = None) -> Scenario | Sweep:
    """A :class:`Scenario`, or a :class:`Sweep` of them where the spec has a ``sweep``."""
    registry = registry or default_registry()
    variants = spec.variants()
    if not spec.sweep:
        return build_scenario(spec, registry)
    built = []
    for variant, combination in zip(variants, itertools.product(*spec.sweep.values()), strict=True):
        try:
            built.append(build_scenario(variant, registry))
        except ScenarioError as exc:
            where = ", ".join(f"{k} = {v}" for k, v in zip(spec.sweep, combination, strict=True))
            raise ScenarioError(f"{exc.problem} (sweep: {where})", key=exc.key) from None
    _check_same_coordinates(built, spec.sweep)
    return Sweep(spec, tuple(built))


def _check_same_coordinates(variants: list[Scenario], sweep: dict[str, list]) -> None:
    """The variants' Datasets must stack: every observer's own coordinates equal in every variant."""
    for variant in variants[1:]:
        for i, (observer, reference) in enumerate(zip(variant.observers, variants[0].observers, strict=True)):
            mine, theirs = observer.coordinates(), reference.coordinates()
            for name, values in theirs.items():
                if not np.array_equal(coordinate_values(mine[name]), coordinate_values(values)):
                    raise ScenarioError(f"the sweep over {', '.join(sweep)} changes the coordinate '{name}' of "
                                        f"observer '{observer.name}': the runs cannot be stacked; drop that observer",
                                        key=f"observers[{i}]")


def build_scenario(spec: ScenarioSpec, registry: Registry) -> Scenario:
    """Build a spec without a sweep: settings checked, every plugin constructed by ``registry``."""
    token = SCENARIO_DIRECTORY.set(spec.directory)
    try:
        return _build(spec, registry)
    finally:
        SCENARIO_DIRECTORY.reset(token)


def _build(spec: ScenarioSpec, registry: Registry) -> Scenario:
    raw = spec.raw
    raw.pop("sweep", None)
    for key in ("data", "prior", "protocols", "perturbations"):
        if key not in raw:
            raise ScenarioError("required key is missing", key=key)
    settings = read_settings(raw)
    tau = settings.tau
    data = registry.create("distribution", raw["data"], "data")
    prior = registry.create("distribution", raw["prior"], "prior")
    if prior.dim != data.dim:
        raise ScenarioError(f"prior has dimension {prior.dim} but the data {data.dim}", key="prior")
    perturbations = {}
    for name, entry in _mapping(raw["perturbations"], "perturbations").items():
        dist = registry.create("distribution", entry, f"perturbations.{name}")
        if dist.dim != data.dim:
            raise ScenarioError(f"dimension {dist.dim} differs from the data's {data.dim}", key=f"perturbations.{name}")
        perturbations[name] = dist
    check_sizes(time_steps=settings.time_steps, particles=settings.particles, perturbations=len(perturbations),
                reverse_start=settings.reverse_start, dim=data.dim, device=resolve_device(settings.device),
                dtype=resolve_dtype(settings.dtype))
    starts = {"prior": prior, **{f"perturbations.{name}": law for name, law in perturbations.items()}}
    _check_sampling(settings.particle_sampling, settings.particles, starts)
    protocols = {name: _protocol(registry, name, entry, raw, {"data": data, "prior": prior, "tau": tau})
                 for name, entry in _mapping(raw["protocols"], "protocols").items()}

    observer_specs = raw.get("observers", list(SECTION_DEFAULTS["observers"]))
    if not isinstance(observer_specs, list) or not observer_specs:
        raise ScenarioError("expected a non-empty list of observers", key="observers")
    observers = [registry.create("observer", entry, f"observers[{i}]") for i, entry in enumerate(observer_specs)]
    order = _observation_order(observers)
    setup = Setup(name=settings.name or Path(spec.source or "scenario").stem, tau=tau,
                  time_steps=settings.time_steps, particles=settings.particles,
                  particle_sampling=settings.particle_sampling, seeds=settings.seeds,
                  reverse_start=settings.reverse_start, device=settings.device, dtype=settings.dtype, data=data,
                  prior=prior, perturbations=perturbations, protocols=protocols,
                  solver_factory=lambda solver_spec, key: registry.create("solver", solver_spec, key))
    for i, observer in enumerate(observers):
        try:
            observer.prepare(setup)
        except ScenarioError as exc:
            raise exc.located(key_prefix=f"observers[{i}]") from None
    reference = _check_reference(raw.get("reference", {}), setup, observers)
    return Scenario(spec, registry, setup, tuple(observers), order, settings.output, settings.description,
                    reference)


def _protocol(registry: Registry, name: str, entry: Any, raw: dict, context: dict) -> DrivingProtocol:
    """The process, estimator and solver of ``protocols.<name>``; the estimator and solver default to the
    top-level ``estimator`` and ``solver`` keys."""
    key = f"protocols.{name}"
    entry = _mapping(entry, key)
    for sub in entry:
        if sub not in ("process", "estimator", "solver"):
            raise ScenarioError(f"unknown key{did_you_mean(str(sub), ['process', 'estimator', 'solver'])}",
                                key=f"{key}.{sub}")
    if "process" not in entry:
        raise ScenarioError("required key is missing", key=f"{key}.process")
    process = registry.create("process", entry["process"], f"{key}.process", context)
    estimator_spec = entry.get("estimator", raw.get("estimator", SECTION_DEFAULTS["estimator"]))
    estimator_key = f"{key}.estimator" if "estimator" in entry else "estimator"
    estimator = registry.create("estimator", estimator_spec, estimator_key, {"process": process})
    solver_key = f"{key}.solver" if "solver" in entry else "solver"
    solver_spec = entry.get("solver", raw.get("solver", SECTION_DEFAULTS["solver"]))
    solver = registry.create("solver", solver_spec, solver_key)
    for equation in (process_equation(process), estimator_equation(estimator)):
        problem = solver.check(equation)
        if problem:
            raise ScenarioError(f"solver '{solver.name}' cannot integrate protocol '{name}': {problem}", key=solver_key)
    forward_solver = None
    if solver.stochastic:  # the forward marginals do not depend on the sampler: carried by the default ODE solver
        forward_solver = registry.create("solver", SECTION_DEFAULTS["solver"], solver_key)
        solver_spec = SECTION_DEFAULTS["solver"]
    # one forward process: the same process carried by the same deterministic solver
    group = json.dumps({"process": entry["process"], "solver": solver_spec}, sort_keys=True)
    return DrivingProtocol(name, process, estimator, solver, forward_solver, forward_group=group)


def _observation_order(observers: list[Observer]) -> tuple[Observer, ...]:
    """The observers ordered so that producers run before consumers (stable otherwise); a scenario error
    naming both observers for a missing producer, an undeclared variable or a cycle."""
    by_name: dict[str, Observer] = {}
    for i, observer in enumerate(observers):
        if observer.name in by_name:
            raise ScenarioError(f"observer '{observer.name}' is listed twice", key=f"observers[{i}]")
        by_name[observer.name] = observer
    for i, observer in enumerate(observers):
        for producer, variables in observer.consumes.items():
            if producer not in by_name:
                raise ScenarioError(f"observer '{observer.name}' consumes {', '.join(variables)} of observer "
                                    f"'{producer}', which the scenario does not list: add '{producer}' to observers",
                                    key=f"observers[{i}]")
            declared = by_name[producer].variables()
            for variable in variables:
                if variable not in declared:
                    raise ScenarioError(f"observer '{observer.name}' consumes '{variable}', which observer "
                                        f"'{producer}' does not record", key=f"observers[{i}]")
    order: list[Observer] = []
    visiting: set[str] = set()

    def visit(observer: Observer) -> None:
        if observer in order:
            return
        if observer.name in visiting:
            raise ScenarioError(f"observers consume each other's variables in a cycle through '{observer.name}'",
                                key="observers")
        visiting.add(observer.name)
        for producer in observer.consumes:
            visit(by_name[producer])
        visiting.discard(observer.name)
        order.append(observer)

    for observer in observers:
        visit(observer)
    return tuple(order)


def _mapping(value: Any, key: str) -> dict:
    if not isinstance(value, dict) or not value:
        raise ScenarioError("expected a non-empty mapping of names to specifications", key=key)
    return {str(k): v for k, v in value.items()}


def _check_sampling(sampling: str, particles: int, laws: dict[str, Distribution]) -> None:
    """A structured ``particle_sampling`` needs every d ≥ 2 start law to map the unit cube to its draws;
    ``antithetic`` an even number of particles (mirror pairs: the units of every standard error)."""
    if sampling == "random":
        return
    if sampling == "antithetic" and particles % 2:
        raise ScenarioError(f"antithetic particles come in mirror pairs: needs an even number, got {particles}",
                            key="particles")
    for key, law in laws.items():
        if law.dim > 1 and law.unit_cube_dim() is None:
            raise ScenarioError(f"'{sampling}' needs start laws that map the unit cube to their draws; "
                                f"'{law.name}' ({key}) does not: use particle_sampling: random",
                                key="particle_sampling")


def _check_reference(reference: Any, setup: Setup, observers: list[Observer]) -> dict:
    """Published values to print beside the engine's: ``{variable: nested by the variable's sweep dims}``.
    Only ``source`` (a string) and variables over ``protocol``/``perturbation`` are accepted."""
    if not isinstance(reference, dict):
        raise ScenarioError("expected a mapping of variable names to values", key="reference")
    labels = {"protocol": list(setup.protocols), "perturbation": list(setup.perturbations)}
    declared = {name: var for obs in observers for name, var in obs.variables().items()}
    for var_name, values in reference.items():
        key = f"reference.{var_name}"
        if var_name == "source":
            coerce(values, str, key)
            continue
        if var_name not in declared:
            raise ScenarioError(f"no observer records '{var_name}'{did_you_mean(var_name, declared)}", key=key)
        dims = [d for d in ("protocol", *declared[var_name].dims) if d in labels]
        _check_nested(values, dims, labels, key)
    return reference


def _check_nested(values: Any, dims: list[str], labels: dict, key: str) -> None:
    if not dims:
        coerce(values, float, key)
        return
    if not isinstance(values, dict):
        raise ScenarioError(f"expected a mapping over {dims[0]}s", key=key)
    for label, inner in values.items():
        if label not in labels[dims[0]]:
            raise ScenarioError(f"unknown {dims[0]} '{label}'{did_you_mean(str(label), labels[dims[0]])}",
                                key=f"{key}.{label}")
        _check_nested(inner, dims[1:], labels, f"{key}.{label}")
