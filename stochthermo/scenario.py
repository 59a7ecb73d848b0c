"""Scenario files: YAML validated into typed, ready-to-run objects.

A plugin is named by a string (``cosine``) or by a mapping with a ``name`` key and the plugin's
parameters (``{name: gaussian, mean: 1.0, std: 1.0}``). Every error names the file, the dotted key and
the problem; unknown keys and plugin names get a "did you mean" suggestion.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from .device import check_device_name, resolve_dtype
from .distribution import Distribution
from .errors import ScenarioError, did_you_mean
from .estimator import Estimator
from .observer import Observer
from .parameters import SCENARIO_DIRECTORY, coerce, parameters_of, plugin_base
from .process import ForwardProcess
from .registry import Registry, default_registry


class ScenarioLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats: ``5e-3`` and ``1E6`` are numbers (YAML 1.1, PyYAML's
    default, reads a float without a dot as a string)."""


ScenarioLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)[eE][-+]?\d+$"),
    list("-+0123456789."))

DEFAULT_OBSERVERS = ["thermodynamics", "response", "bounds", "snapshots"]


@dataclass
class Protocol:
    """A forward process and the estimator the reverse process uses with it."""

    name: str
    process: ForwardProcess
    estimator: Estimator


@dataclass
class Scenario:
    text: str
    path: str | None
    name: str
    description: str
    output: str | None
    device: str
    dtype: str
    seeds: list[int]
    tau: float
    time_steps: int
    particles: int
    reverse_start: str
    data: Distribution
    prior: Distribution
    perturbations: dict[str, Distribution]
    protocols: dict[str, Protocol]
    observers: list[Observer]
    reference: dict = field(default_factory=dict)
    #: ``--set key=value`` overrides applied on top of ``text``
    overrides: list[str] = field(default_factory=list)
    #: ``sweep``: dotted key -> the values it takes; the run is the Cartesian product of them
    sweep: dict[str, list] = field(default_factory=dict)
    #: one scenario per combination of sweep values, in row-major order (empty without a sweep)
    variants: list[Scenario] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        """Hash of the scenario text and its overrides."""
        return hashlib.sha256("\n".join([self.text, *self.overrides]).encode()).hexdigest()

    @property
    def times(self) -> torch.Tensor:
        """The forward time grid t_k = k τ / time_steps (float64, CPU)."""
        return torch.linspace(0.0, self.tau, self.time_steps + 1, dtype=torch.float64)


# ---- top-level keys: name -> (annotation, default); a default of ... means required -------------------
SETTINGS: dict[str, tuple[Any, Any]] = {
    "name": (str | None, None),
    "description": (str, ""),
    "output": (str | None, None),
    "device": (str, "auto"),
    "dtype": (str, "float64"),
    "seeds": (list[int] | int, [0]),
    "tau": (float, 1.0),
    "time_steps": (int, 256),
    "particles": (int, 2048),
    "reverse_start": (str, "end_distribution"),
}
#: what the true reverse process starts from: the actual P_τ, or the prior the generator is given
REVERSE_STARTS = ("end_distribution", "prior")
SECTIONS = ("data", "prior", "protocols", "perturbations", "estimator", "observers", "reference", "sweep")
#: top-level keys a sweep may not vary: they fix the Dataset's coordinates or the run's identity (inside
#: ``protocols`` and ``perturbations`` the entries' parameters may vary, not the set of names)
UNSWEPT = ("name", "description", "output", "device", "dtype", "seeds", "tau", "time_steps", "observers",
           "reference", "sweep")
NAMED_ENTRIES = ("protocols", "perturbations")


def load_scenario(path: str | Path, *, overrides: list[str] = (), registry: Registry | None = None) -> Scenario:
    """Read and validate a scenario file; ``overrides`` are ``dotted.key=value`` strings (YAML values)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario: {exc.strerror}", file=str(path)) from None
    directory = SCENARIO_DIRECTORY.set(path.parent)
    try:
        return parse_scenario(text, source=str(path), overrides=overrides, registry=registry)
    except ScenarioError as exc:
        raise exc.located(file=str(path)) from None
    finally:
        SCENARIO_DIRECTORY.reset(directory)


def parse_scenario(text: str, *, source: str | None = None, overrides: list[str] = (),
                   registry: Registry | None = None) -> Scenario:
    """Validate scenario text (``source`` names it in errors), with ``overrides`` applied first."""
    registry = registry or default_registry()
    try:
        raw = yaml.load(text, Loader=ScenarioLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ScenarioError(f"invalid YAML: {where}{problem}", file=source) from None
    if not isinstance(raw, dict):
        raise ScenarioError("a scenario must be a mapping of keys to values", file=source)
    for override in overrides:
        _apply_override(raw, override)
    sweep = _check_sweep(raw.pop("sweep", {}))
    if not sweep:
        return _build_scenario(raw, text, source, overrides, registry)
    variants = []
    for combination in itertools.product(*sweep.values()):
        variant = copy.deepcopy(raw)
        for key, value in zip(sweep, combination, strict=True):
            for dotted, setting in (value.items() if isinstance(value, dict) else [(key, value)]):
                if dotted != "label":
                    _set_key(variant, dotted, setting)
        try:
            variants.append(_build_scenario(variant, text, source, overrides, registry))
        except ScenarioError as exc:
            where = ", ".join(f"{k} = {v}" for k, v in zip(sweep, combination, strict=True))
            raise ScenarioError(f"{exc.problem} (sweep: {where})", key=exc.key) from None
    _check_same_coordinates(variants, sweep)
    first = copy.copy(variants[0])
    first.sweep, first.variants = sweep, variants
    return first


def _check_same_coordinates(variants: list[Scenario], sweep: dict[str, list]) -> None:
    """The variants' Datasets must stack: every observer's own coordinates equal in every variant."""
    for variant in variants[1:]:
        for i, (observer, reference) in enumerate(zip(variant.observers, variants[0].observers, strict=True)):
            mine, theirs = observer.coordinates(), reference.coordinates()
            for name, values in theirs.items():
                if not np.array_equal(np.asarray(mine[name]), np.asarray(values)):
                    raise ScenarioError(f"the sweep over {', '.join(sweep)} changes the coordinate '{name}' of "
                                        f"observer '{observer.name}': the runs cannot be stacked; drop that observer",
                                        key=f"observers[{i}]")


def _check_sweep(sweep: Any) -> dict[str, list]:
    """``{axis: [values...]}``: an axis is a dotted key taking each value, or a name whose values are mappings
    ``{label: ..., dotted.key: value, ...}`` that set several keys together. Lists non-empty, labels distinct,
    no key that fixes the Dataset's coordinates."""
    if not isinstance(sweep, dict):
        raise ScenarioError("expected a mapping of dotted keys to lists of values", key="sweep")
    for axis, values in sweep.items():
        if not isinstance(axis, str) or not axis:
            raise ScenarioError(f"expected a dotted key or an axis name, got {axis!r}", key="sweep")
        if not isinstance(values, list) or not values:
            raise ScenarioError(f"expected a non-empty list of values, got {values!r}", key=f"sweep.{axis}")
        linked = [v for v in values if isinstance(v, dict)]
        if linked and len(linked) != len(values):
            raise ScenarioError("give every value as a mapping of keys, or none", key=f"sweep.{axis}")
        keys = {k for v in linked for k in v if k != "label"} if linked else {axis}
        for key in keys:
            _check_swept_key(str(key), f"sweep.{axis}")
        for value in linked:
            if "label" not in value:
                raise ScenarioError(f"each value sets several keys: give it a 'label' (got {value})",
                                    key=f"sweep.{axis}")
        labels = [sweep_label(v) for v in values]
        if len(set(labels)) != len(labels):
            raise ScenarioError(f"labels must be distinct, got {labels}", key=f"sweep.{axis}")
    return {str(k): v for k, v in sweep.items()}


def _check_swept_key(key: str, where: str) -> None:
    parts = key.split(".")
    top = parts[0]
    if top in UNSWEPT or (top in NAMED_ENTRIES and len(parts) < 3):
        raise ScenarioError(f"'{top}' cannot be swept (it fixes the Dataset's coordinates or the run's identity)",
                            key=where)
    if top not in SETTINGS and top not in SECTIONS:
        raise ScenarioError(f"unknown key '{key}'{did_you_mean(top, [*SETTINGS, *SECTIONS])}", key=where)


def sweep_label(value: Any) -> Any:
    """The coordinate label of a sweep value: numbers and strings as they are, lists joined by 'x', a mapping's
    ``label``."""
    if isinstance(value, dict):
        value = value.get("label")
    if isinstance(value, list):
        return "x".join(str(v) for v in value)
    if isinstance(value, bool | int | float | str):
        return value
    raise ScenarioError(f"sweep values must be numbers, strings or lists, got {value!r}", key="sweep")


def _build_scenario(raw: dict, text: str, source: str | None, overrides, registry: Registry) -> Scenario:
    """Validate a raw mapping (overrides applied, no sweep) into a :class:`Scenario`."""
    for key in raw:
        if key not in SETTINGS and key not in SECTIONS:
            raise ScenarioError(f"unknown key{did_you_mean(str(key), [*SETTINGS, *SECTIONS])}", key=str(key))
    for key in ("data", "prior", "protocols", "perturbations"):
        if key not in raw:
            raise ScenarioError("required key is missing", key=key)

    settings = {key: coerce(raw.get(key, default), annotation, key) for key, (annotation, default) in SETTINGS.items()}
    _check_settings(settings)
    tau = settings["tau"]
    data = build(registry, "distribution", raw["data"], "data", {})
    prior = build(registry, "distribution", raw["prior"], "prior", {})
    if prior.dim != data.dim:
        raise ScenarioError(f"prior has dimension {prior.dim} but the data {data.dim}", key="prior")
    perturbations = {}
    for name, spec in _mapping(raw["perturbations"], "perturbations").items():
        dist = build(registry, "distribution", spec, f"perturbations.{name}", {})
        if dist.dim != data.dim:
            raise ScenarioError(f"dimension {dist.dim} differs from the data's {data.dim}", key=f"perturbations.{name}")
        perturbations[name] = dist
    default_estimator = raw.get("estimator", "exact")
    protocols = {}
    for name, spec in _mapping(raw["protocols"], "protocols").items():
        key = f"protocols.{name}"
        spec = _mapping(spec, key)
        for sub in spec:
            if sub not in ("process", "estimator"):
                raise ScenarioError(f"unknown key{did_you_mean(str(sub), ['process', 'estimator'])}",
                                    key=f"{key}.{sub}")
        if "process" not in spec:
            raise ScenarioError("required key is missing", key=f"{key}.process")
        process = build(registry, "process", spec["process"], f"{key}.process",
                        {"data": data, "prior": prior, "tau": tau})
        estimator = build(registry, "estimator", spec.get("estimator", default_estimator),
                          f"{key}.estimator" if "estimator" in spec else "estimator", {"process": process})
        protocols[name] = Protocol(name, process, estimator)

    observer_specs = raw.get("observers", DEFAULT_OBSERVERS)
    if not isinstance(observer_specs, list) or not observer_specs:
        raise ScenarioError("expected a non-empty list of observers", key="observers")
    observers = [build(registry, "observer", spec, f"observers[{i}]", {}) for i, spec in enumerate(observer_specs)]
    _check_observer_order(observers)
    scenario = Scenario(text=text, path=source, name=settings["name"] or Path(source or "scenario").stem,
                        description=settings["description"], output=settings["output"],
                        device=settings["device"], dtype=settings["dtype"],
                        seeds=[settings["seeds"]] if isinstance(settings["seeds"], int) else settings["seeds"],
                        tau=tau, time_steps=settings["time_steps"], particles=settings["particles"],
                        reverse_start=settings["reverse_start"],
                        data=data, prior=prior, perturbations=perturbations, protocols=protocols,
                        observers=observers, overrides=list(overrides))
    for i, observer in enumerate(observers):
        try:
            observer.prepare(scenario)
        except ScenarioError as exc:
            raise exc.located(key_prefix=f"observers[{i}]") from None
    scenario.reference = _check_reference(raw.get("reference", {}), scenario)
    return scenario


def _apply_override(raw: dict, override: str) -> None:
    """Set ``a.b.c=value`` (value parsed as YAML) in the raw mapping, creating mappings on the way."""
    key, sep, value = override.partition("=")
    if not sep or not key.strip():
        raise ScenarioError(f"--set expects KEY=VALUE, got {override!r}")
    try:
        parsed = yaml.load(value, Loader=ScenarioLoader)
    except yaml.YAMLError:
        raise ScenarioError(f"--set {key}: value {value!r} is not valid YAML") from None
    _set_key(raw, key.strip(), parsed)


def _set_key(raw: dict, key: str, parsed: Any) -> None:
    """Set the dotted ``key`` to ``parsed`` in the raw mapping, creating mappings on the way."""
    *parents, last = key.split(".")
    target = raw
    for i, part in enumerate(parents):
        nxt = target.setdefault(part, {})
        if isinstance(nxt, str):  # a plugin named by a string becomes a mapping with its name
            nxt = target[part] = {"name": nxt}
        if not isinstance(nxt, dict):
            raise ScenarioError(f"'{'.'.join(parents[:i + 1])}' is not a mapping", key=key)
        target = nxt
    target[last] = parsed


def build(registry: Registry, kind: str, spec: Any, key: str, context: dict[str, Any]):
    """Instantiate the plugin of ``kind`` that ``spec`` names, validating its parameters."""
    if isinstance(spec, str):
        name, given = spec, {}
    elif isinstance(spec, dict):
        if "name" not in spec:
            raise ScenarioError(f"a {kind} needs a 'name' key", key=key)
        name, given = spec["name"], {k: v for k, v in spec.items() if k != "name"}
        if not isinstance(name, str):
            raise ScenarioError(f"expected the name of a {kind}, got {name!r}", key=f"{key}.name")
    else:
        raise ScenarioError(f"expected a {kind} name or a mapping with 'name', got {spec!r}", key=key)
    try:
        cls = registry.get(kind, name)
    except ScenarioError as exc:
        raise exc.located(key_prefix=key) from None
    params = {p.name: p for p in parameters_of(cls)}
    values = {}
    for param_key, value in given.items():
        if param_key not in params:
            raise ScenarioError(f"{kind} '{name}' has no parameter '{param_key}'{did_you_mean(str(param_key), params)}",
                                key=f"{key}.{param_key}")
        annotation = params[param_key].annotation
        base = plugin_base(annotation)
        if base is not None:
            values[param_key] = build(registry, base.kind, value, f"{key}.{param_key}", {})
        else:
            values[param_key] = coerce(value, annotation, f"{key}.{param_key}")
    missing = [p for p in params.values() if p.required and p.name not in given]
    if missing:
        raise ScenarioError(f"{kind} '{name}' needs parameter '{missing[0].name}' ({missing[0].type_name})",
                            key=key)
    try:
        return cls(**context, **values)
    except ScenarioError as exc:
        raise exc.located(key_prefix=key) from None


def _mapping(value: Any, key: str) -> dict:
    if not isinstance(value, dict) or not value:
        raise ScenarioError("expected a non-empty mapping of names to specifications", key=key)
    return {str(k): v for k, v in value.items()}


def _check_settings(settings: dict) -> None:
    if settings["tau"] <= 0:
        raise ScenarioError(f"must be > 0, got {settings['tau']}", key="tau")
    if settings["time_steps"] < 2 or settings["time_steps"] % 2:
        raise ScenarioError(f"must be an even number >= 2 (Simpson's rule), got {settings['time_steps']}",
                            key="time_steps")
    if settings["particles"] < 16:
        raise ScenarioError(f"must be >= 16, got {settings['particles']}", key="particles")
    seeds = settings["seeds"] if isinstance(settings["seeds"], list) else [settings["seeds"]]
    if len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise ScenarioError(f"seeds must be distinct non-negative integers, got {seeds}", key="seeds")
    if settings["reverse_start"] not in REVERSE_STARTS:
        raise ScenarioError(f"must be one of {', '.join(REVERSE_STARTS)}, got '{settings['reverse_start']}'"
                            f"{did_you_mean(settings['reverse_start'], REVERSE_STARTS)}", key="reverse_start")
    resolve_dtype(settings["dtype"])
    check_device_name(settings["device"])


def _check_observer_order(observers: list[Observer]) -> None:
    seen: set[str] = set()
    for i, observer in enumerate(observers):
        if observer.name in seen:
            raise ScenarioError(f"observer '{observer.name}' is listed twice", key=f"observers[{i}]")
        for needed in observer.requires:
            if needed not in seen:
                raise ScenarioError(f"observer '{observer.name}' needs '{needed}' listed before it",
                                    key=f"observers[{i}]")
        seen.add(observer.name)


def _check_reference(reference: Any, scenario: Scenario) -> dict:
    """Published values to print beside the engine's: ``{variable: nested by the variable's sweep dims}``.
    Only ``source`` (a string) and variables over ``protocol``/``perturbation`` are accepted."""
    if not isinstance(reference, dict):
        raise ScenarioError("expected a mapping of variable names to values", key="reference")
    labels = {"protocol": list(scenario.protocols), "perturbation": list(scenario.perturbations)}
    declared = {name: var for obs in scenario.observers for name, var in obs.variables().items()}
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
