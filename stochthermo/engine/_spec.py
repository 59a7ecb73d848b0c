"""Scenario specifications: the pure-data first stage of spec → build → run.

A :class:`ScenarioSpec` is what a scenario file says, with its ``--set`` overrides applied: a plain
mapping of YAML values. No plugin is constructed here, so a spec is cheap, hashable and can be shipped to
another process; :func:`stochthermo.build` turns one into ready-to-run objects with a
:class:`~stochthermo.Registry`. A sweep is a transform of specs (:meth:`ScenarioSpec.variants`),
not a special scenario.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stochthermo.engine._settings import SETTING_NAMES
from stochthermo.errors import ScenarioError, did_you_mean, first_line

#: the largest scenario file read: a scenario is a page of YAML, and a larger file is not one
MAX_FILE_BYTES = 2**20
#: the deepest nesting of mappings and lists in a scenario
MAX_DEPTH = 32
#: the most values a scenario may hold once its aliases are expanded (a guard against alias bombs)
MAX_VALUES = 100_000


class ScenarioLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats (``5e-3`` and ``1E6`` are numbers; YAML 1.1, PyYAML's default,
    reads a float without a dot as a string), bounded: a key given twice in one mapping, nesting deeper than
    :data:`MAX_DEPTH` and aliases that expand to more than :data:`MAX_VALUES` values are refused with the line
    numbers, before anything is built."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        if self._depth > MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise ScenarioError(f"line {mark.line + 1}: mappings and lists nested deeper than {MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node):
        size, depth = _expanded(node, {})
        if size > MAX_VALUES:
            raise ScenarioError(f"the document expands to more than {MAX_VALUES} values through its aliases")
        if depth > MAX_DEPTH:
            raise ScenarioError(f"mappings and lists nested deeper than {MAX_DEPTH} levels (through aliases)")
        return super().construct_document(node)

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: PyYAML merges it
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: PyYAML's own error says so
                continue
            if first is not None:
                where = f"lines {first} and {line}" if first != line else f"line {line}"
                raise ScenarioError(f"key '{key}' given twice ({where})")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _expanded(node: yaml.Node, memo: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """How many values ``node`` stands for and how deep it nests with every alias expanded (each node computed
    once, so an alias bomb costs its size in nodes, not in values)."""
    if id(node) not in memo:
        memo[id(node)] = (0, 0)  # a recursive alias counts as nothing more; PyYAML refuses it anyway
        children = [] if isinstance(node, yaml.ScalarNode) else (
            [part for pair in node.value for part in pair] if isinstance(node, yaml.MappingNode) else node.value)
        parts = [_expanded(child, memo) for child in children]
        memo[id(node)] = (1 + sum(size for size, _ in parts), 1 + max((depth for _, depth in parts), default=0))
    return memo[id(node)]


ScenarioLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)[eE][-+]?\d+$"),
    list("-+0123456789."))

SECTIONS = ("data", "prior", "protocols", "perturbations", "estimator", "solver", "observers", "reference",
            "sweep")
#: top-level keys a sweep may not vary: they fix the Dataset's coordinates or the run's identity (inside
#: ``protocols`` and ``perturbations`` the entries' parameters may vary, not the set of names)
UNSWEPT = ("name", "description", "output", "device", "dtype", "seeds", "tau", "time_steps", "observers",
           "reference", "sweep")
NAMED_ENTRIES = ("protocols", "perturbations")


@dataclass(frozen=True)
class ScenarioSpec:
    """A scenario as data: the file's ``text``, where it came from, the overrides, and the mapping they give.

    Equal specs have equal :attr:`key`; :attr:`sha256` identifies the text and overrides the user gave (it is
    recorded in every Dataset)."""

    text: str
    source: str | None = None
    overrides: tuple[str, ...] = ()
    #: the mapping as canonical JSON (overrides and, for a variant, its sweep values applied)
    resolved: str = field(default="{}", repr=False)
    #: for a variant of a sweep: swept key -> the value this variant takes, in sweep order
    labels: tuple[tuple[str, Any], ...] = ()
    #: dotted keys whose values were Python objects handed to :func:`stochthermo.run` in a mapping (held in
    #: this process, ``stochthermo.engine._objects``), with what each was
    objects: tuple[tuple[str, str], ...] = ()

    @property
    def raw(self) -> dict:
        """A fresh copy of the resolved mapping."""
        return json.loads(self.resolved)

    @property
    def directory(self) -> Path:
        """Relative paths in the scenario are resolved against this folder."""
        return Path(self.source).parent if self.source and not self.source.startswith("<") else Path(".")

    @property
    def sha256(self) -> str:
        """Hash of the scenario text and its overrides."""
        return hashlib.sha256("\n".join([self.text, *self.overrides]).encode()).hexdigest()

    @property
    def key(self) -> str:
        """Hash of the fully resolved mapping (what a run of this spec computes)."""
        return hashlib.sha256(self.resolved.encode()).hexdigest()

    @property
    def sweep(self) -> dict[str, list]:
        """``{axis: [values...]}`` of the spec's ``sweep`` (validated); empty without one."""
        return _check_sweep(self.raw.get("sweep", {}))

    def variants(self) -> list[ScenarioSpec]:
        """One spec per combination of sweep values, row-major over :attr:`sweep`; ``[self]`` without a sweep."""
        sweep = self.sweep
        if not sweep:
            return [self]
        base = self.raw
        base.pop("sweep")
        out = []
        for combination in itertools.product(*sweep.values()):
            variant = copy.deepcopy(base)
            for axis, value in zip(sweep, combination, strict=True):
                for dotted, setting in (value.items() if isinstance(value, dict) else [(axis, value)]):
                    if dotted != "label":
                        set_key(variant, dotted, setting)
            labels = tuple((axis, sweep_label(value)) for axis, value in zip(sweep, combination, strict=True))
            out.append(ScenarioSpec(self.text, self.source, self.overrides, _canonical(variant), labels))
        return out


def read_spec(path: str | Path, *, overrides: list[str] | tuple[str, ...] = ()) -> ScenarioSpec:
    """The spec of a scenario file; errors name the file."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ScenarioError(f"larger than {MAX_FILE_BYTES // 2**20} MiB: not a scenario file", file=str(path))
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario: {exc.strerror}", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"not UTF-8 text (byte {exc.start}): not a scenario file", file=str(path)) from None
    try:
        return parse_spec(text, source=str(path), overrides=overrides)
    except ScenarioError as exc:
        raise exc.located(file=str(path)) from None


def parse_spec(text: str, *, source: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ScenarioSpec:
    """The spec of scenario text (``source`` names it in errors), ``overrides`` (``dotted.key=value``, YAML
    values) applied. Checks the YAML and the top-level keys only: plugins are checked when it is built."""
    try:
        raw = yaml.load(text, Loader=ScenarioLoader)
    except ScenarioError as exc:
        raise exc.located(file=source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or first_line(exc)
        raise ScenarioError(f"invalid YAML: {where}{problem}", file=source) from None
    if not isinstance(raw, dict):
        raise ScenarioError("a scenario must be a mapping of keys to values", file=source)
    for override in overrides:
        _apply_override(raw, override)
    for key in raw:
        if key not in SETTING_NAMES and key not in SECTIONS:
            raise ScenarioError(f"unknown key{did_you_mean(str(key), [*SETTING_NAMES, *SECTIONS])}", key=str(key))
    _check_sweep(raw.get("sweep", {}))
    if isinstance(raw.get("seeds"), dict):
        raw["seeds"] = _seed_count(raw["seeds"])
    return ScenarioSpec(text, source, tuple(overrides), _canonical(raw))


def _seed_count(seeds: dict) -> list[int]:
    """``seeds: {count: N}`` -> [0, 1, ..., N − 1]."""
    count = seeds.get("count")
    if set(seeds) != {"count"} or isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ScenarioError(f"expected a list of seeds, one seed, or {{count: N}} with N >= 1, got {seeds}",
                            key="seeds")
    return list(range(count))


def _canonical(raw: dict) -> str:
    try:
        return json.dumps(raw, default=_not_json)
    except (TypeError, ValueError) as exc:  # e.g. a YAML date, or number and string keys mixed
        raise ScenarioError(str(exc)) from None


def _not_json(value: Any) -> Any:
    raise ValueError(f"unsupported value {value!r} ({type(value).__name__}): use numbers, strings, lists and "
                     "mappings")


def _apply_override(raw: dict, override: str) -> None:
    """Set ``a.b.c=value`` (value parsed as YAML) in the raw mapping, creating mappings on the way."""
    key, sep, value = override.partition("=")
    if not sep or not key.strip():
        raise ScenarioError(f"an override must read KEY=VALUE, got {override!r}")
    try:
        parsed = yaml.load(value, Loader=ScenarioLoader)
    except yaml.YAMLError:
        raise ScenarioError(f"override {key}: value {value!r} is not valid YAML") from None
    set_key(raw, key.strip(), parsed)


def set_key(raw: dict, key: str, parsed: Any) -> None:
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
    if top not in SETTING_NAMES and top not in SECTIONS:
        raise ScenarioError(f"unknown key '{key}'{did_you_mean(top, [*SETTING_NAMES, *SECTIONS])}", key=where)


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
