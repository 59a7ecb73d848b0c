"""Scenario files: YAML validated into typed, ready-to-run objects.

A plugin is named by a string (``cosine``) or by a mapping with a ``name`` key and the plugin's
parameters (``{name: gaussian, mean: 1.0, std: 1.0}``). Every error names the file, the dotted key and
the problem; unknown keys and plugin names get a "did you mean" suggestion.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
SECTIONS = ("data", "prior", "protocols", "perturbations", "estimator", "observers", "reference")


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
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ScenarioError(f"invalid YAML: {where}{problem}", file=source) from None
    if not isinstance(raw, dict):
        raise ScenarioError("a scenario must be a mapping of keys to values", file=source)
    for override in overrides:
        _apply_override(raw, override)
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
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        raise ScenarioError(f"--set {key}: value {value!r} is not valid YAML") from None
    *parents, last = key.strip().split(".")
    target = raw
    for i, part in enumerate(parents):
        nxt = target.setdefault(part, {})
        if isinstance(nxt, str):  # a plugin named by a string becomes a mapping with its name
            nxt = target[part] = {"name": nxt}
        if not isinstance(nxt, dict):
            raise ScenarioError(f"--set: '{'.'.join(parents[:i + 1])}' is not a mapping", key=key)
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
