"""The plugin registry: built-in and third-party plugins, loaded through the same pluggy hooks.

Built-ins are the modules of the ``stochthermo_plugins`` package (the top-level ``plugins/`` folder);
third-party plugins come from the ``stochthermo.plugins`` entry-point group. A third-party plugin that
fails to import, implements an unknown (misspelt) hook, registers an invalid class or a name that is taken
is *reported by name with the reason* and left out; the other plugins keep working. The same faults in a
built-in plugin are bugs and raise :class:`PluginError`.

Set ``STOCHTHERMO_DISABLE_PLUGINS`` to a comma-separated list of plugin names to block them.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import os
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pluggy
import yaml

from stochthermo import __version__, hookspecs
from stochthermo.engine._parameters import construct, parameters_of
from stochthermo.errors import ConformanceError, PluginError, ScenarioError, did_you_mean
from stochthermo.roles._component import Component
from stochthermo.roles._distribution import Distribution
from stochthermo.roles._estimator import Estimator
from stochthermo.roles._observer import Observer
from stochthermo.roles._process import ForwardProcess
from stochthermo.roles._schedule import Schedule
from stochthermo.roles._solver import Solver

ENTRY_POINT_GROUP = "stochthermo.plugins"
#: the tiny run a third-party observer is held to its declaration on when it loads (built-in plugins only)
OBSERVER_TEST_SCENARIO: dict[str, Any] = {
    "name": "observer_check", "device": "cpu", "dtype": "float64", "seeds": [0], "tau": 1.0,
    "time_steps": 8, "particles": 64,
    "data": {"name": "gaussian_mixture", "weights": [0.5, 0.5], "means": [-0.6, 0.6], "stds": [0.3, 0.3]},
    "prior": {"name": "gaussian", "mean": 0.0, "std": 1.0},
    "protocols": {"cosine": {"process": {"name": "scheduled", "schedule": "cosine"}}},
    "perturbations": {"shifted": {"name": "gaussian", "mean": 1.0, "std": 1.0}},
    "estimator": "exact", "observers": ["thermodynamics", "response", "bounds"]}
#: the import name of the built-in plugins (the repository's ``plugins/`` folder)
BUILTIN_PACKAGE = "stochthermo_plugins"
DISABLE_VARIABLE = "STOCHTHERMO_DISABLE_PLUGINS"

#: kind -> (base class, registration hook)
KINDS: dict[str, tuple[type[Component], str]] = {
    "schedule": (Schedule, "stochthermo_register_schedules"),
    "process": (ForwardProcess, "stochthermo_register_processes"),
    "distribution": (Distribution, "stochthermo_register_distributions"),
    "estimator": (Estimator, "stochthermo_register_estimators"),
    "observer": (Observer, "stochthermo_register_observers"),
    "solver": (Solver, "stochthermo_register_solvers"),
}
SNAKE_CASE = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass
class PluginInfo:
    """One registered plugin: where it comes from and what it provides (kind -> names)."""

    name: str
    version: str
    source: str
    provides: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class PluginFailure:
    plugin: str
    reason: str


class Registry:
    """Classes by kind and name, with the plugins that provided them."""

    def __init__(self, *, builtins: bool = True, entry_points: bool = True, blocked: set[str] | None = None,
                 extra: dict[str, object] | None = None):
        """Load the built-ins (``builtins``: the engine itself needs none of them), then (``entry_points``) the
        installed third-party plugins, then ``extra`` plugin objects by name (modules or objects with hook
        implementations), treated as third-party."""
        if blocked is None:
            blocked = {n.strip() for n in os.environ.get(DISABLE_VARIABLE, "").split(",") if n.strip()}
        self.blocked = blocked
        #: the arguments that rebuild this registry elsewhere (a Dask worker): ``Registry(**recipe)``
        self.recipe = {"builtins": builtins, "entry_points": entry_points, "blocked": set(blocked),
                       "extra": dict(extra or {})}
        self.classes: dict[str, dict[str, type]] = {kind: {} for kind in KINDS}
        self.provider: dict[tuple[str, str], str] = {}
        self.plugins: dict[str, PluginInfo] = {}
        self.failures: list[PluginFailure] = []
        #: (kind, name) of classes left out with their plugin, and why
        self.rejected: dict[tuple[str, str], str] = {}
        self._manager = pluggy.PluginManager(hookspecs.PROJECT)
        self._manager.add_hookspecs(hookspecs)

        if builtins:  # imported by name: the engine's modules never import the built-ins
            for module in importlib.import_module(BUILTIN_PACKAGE).BUILTIN_MODULES:
                name = "builtin." + module.__name__.removeprefix(BUILTIN_PACKAGE + ".")
                if name not in blocked:
                    self._add(module, PluginInfo(name, __version__, "built-in"), builtin=True)
        if entry_points:
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                if ep.name in blocked:
                    continue
                dist = ep.dist
                info = PluginInfo(ep.name, dist.version if dist else "?",
                                  f"entry point {ep.value}" + (f" ({dist.name})" if dist else ""))
                try:
                    plugin = ep.load()
                except Exception as exc:  # a broken third-party plugin must not break the others
                    self.failures.append(PluginFailure(ep.name, f"import failed: {type(exc).__name__}: {exc}"))
                    continue
                self._add(plugin, info, builtin=False)
        for name, plugin in (extra or {}).items():
            self._add(plugin, PluginInfo(name, "?", f"object {type(plugin).__name__}"), builtin=False)
        if builtins:  # the tiny run that checks third-party observers is built from built-in plugins
            self._check_observers()

    # ---- loading ---------------------------------------------------------------------------------
    def _add(self, plugin: object, info: PluginInfo, *, builtin: bool) -> None:
        try:
            self._manager.register(plugin, name=info.name)
            self._manager.check_pending()
            found = self._collect(info.name)
        except (PluginError, pluggy.PluginValidationError, ValueError) as exc:
            if self._manager.is_registered(plugin):
                self._manager.unregister(plugin)
            if builtin:
                raise PluginError(f"built-in plugin {info.name}: {exc}") from exc
            self.failures.append(PluginFailure(info.name, str(exc)))
            return
        if not builtin:
            failure = _conformance_failure(found)
            if failure:
                self._manager.unregister(plugin)
                self.failures.append(PluginFailure(info.name, failure))
                for kind, cls in found:
                    self.rejected[(kind, cls.name)] = f"plugin {info.name} was not loaded: {failure}"
                return
        for kind, cls in found:
            self.classes[kind][cls.name] = cls
            self.provider[(kind, cls.name)] = info.name
            info.provides.setdefault(kind, []).append(cls.name)
        self.plugins[info.name] = info

    def _collect(self, plugin_name: str) -> list[tuple[str, type]]:
        """Call the plugin's registration hooks and validate every class; nothing is kept on error."""
        found: list[tuple[str, type]] = []
        for kind, (base, hook_name) in KINDS.items():
            for impl in getattr(self._manager.hook, hook_name).get_hookimpls():
                if impl.plugin_name != plugin_name:
                    continue
                classes = impl.function()
                if not isinstance(classes, list | tuple):
                    raise PluginError(f"hook {hook_name} must return a list of classes, got {type(classes).__name__}")
                for cls in classes:
                    self._validate(cls, kind, base)
                    taken = self.provider.get((kind, cls.name)) or next(
                        (plugin_name for k, c in found if k == kind and c.name == cls.name), None)
                    if taken:
                        raise PluginError(f"{kind} '{cls.name}' is registered by both {taken} and {plugin_name}")
                    found.append((kind, cls))
        return found

    @staticmethod
    def _validate(cls: object, kind: str, base: type) -> None:
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(f"{cls!r} is not a subclass of {base.__name__} (hook for {kind}s)")
        name = cls.__dict__.get("name")
        if not isinstance(name, str) or not SNAKE_CASE.match(name):
            raise PluginError(f"{cls.__name__}.name must be a snake_case string, got {name!r}")
        if inspect.isabstract(cls):
            missing = ", ".join(sorted(cls.__abstractmethods__))
            raise PluginError(f"{kind} '{name}' ({cls.__name__}) is abstract: missing {missing}")

    def _check_observers(self) -> None:
        """Hold every third-party observer that needs no parameters to its declaration on a tiny run
        (:data:`OBSERVER_TEST_SCENARIO`, :func:`stochthermo.testing.check_observer`): one that fails is left
        out with its plugin, named with the reason. An observer the test scenario cannot host (a
        :class:`ScenarioError` when it is built) is checked while it runs instead, as is one with parameters."""
        from stochthermo.engine._build import build_scenario  # the registry is what builds scenarios
        from stochthermo.engine._spec import parse_spec
        from stochthermo.testing import check_observer

        third_party = [(self.provider[("observer", name)], cls) for name, cls in self.classes["observer"].items()
                       if not self.provider[("observer", name)].startswith("builtin.")
                       and not any(p.required for p in parameters_of(cls))]
        for plugin, cls in third_party:
            if plugin not in self.plugins:  # left out already for another of its classes
                continue
            spec = {**OBSERVER_TEST_SCENARIO, "observers": [*OBSERVER_TEST_SCENARIO["observers"], cls.name]}
            try:
                scenario = build_scenario(parse_spec(yaml.safe_dump(spec), source="<observer check>"), self)
            except ScenarioError:
                continue
            try:
                check_observer(scenario, cls.name)
            except ConformanceError as exc:
                self._reject(plugin, f"observer '{cls.name}' fails conformance: {exc}")
            except Exception as exc:  # any failure of a third-party class is reported, not raised
                self._reject(plugin, f"observer '{cls.name}' fails on a tiny run: {type(exc).__name__}: {exc}")

    def _reject(self, plugin: str, reason: str) -> None:
        """Take a loaded third-party plugin out again, every class it registered, recording ``reason``."""
        info = self.plugins.pop(plugin)
        for kind, names in info.provides.items():
            for name in names:
                del self.classes[kind][name]
                del self.provider[(kind, name)]
                self.rejected[(kind, name)] = f"plugin {plugin} was not loaded: {reason}"
        self._manager.unregister(name=plugin)
        self.failures.append(PluginFailure(plugin, reason))

    # ---- lookup ----------------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted(self.classes[kind])

    def get(self, kind: str, name: str) -> type:
        """The class registered as ``name``; a :class:`ScenarioError` with a suggestion otherwise."""
        if kind not in self.classes:
            raise ScenarioError(f"unknown plugin kind '{kind}'{did_you_mean(kind, self.classes)}")
        try:
            return self.classes[kind][name]
        except KeyError:
            if (kind, name) in self.rejected:
                raise ScenarioError(f"{kind} '{name}' is unavailable: {self.rejected[kind, name]}") from None
            raise ScenarioError(f"unknown {kind} '{name}'{did_you_mean(name, self.classes[kind])}") from None

    # ---- construction ----------------------------------------------------------------------------
    def create(self, kind: str, spec: Any, key: str, context: dict[str, Any] | None = None) -> Component:
        """Instantiate the plugin of ``kind`` that ``spec`` names — a name, or a mapping with ``name`` and the
        plugin's parameters — validating the parameters against its ``__init__``; ``context`` holds the
        arguments the engine supplies (data, prior, τ, process). Errors name the dotted ``key``."""
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
            cls = self.get(kind, name)
        except ScenarioError as exc:
            raise exc.located(key_prefix=key) from None
        return construct(cls, given, key=key, what=f"{kind} '{name}'", context=context, plugin=self.create)


def _conformance_failure(found: list[tuple[str, type]]) -> str | None:
    """The load-time gate on third-party classes: every schedule, solver and distribution that can be built
    without parameters, and every process that can be built on a test law (a 1-D Gaussian mixture, the prior
    N(0, 1), τ = 1) without parameters, must pass its role's conformance check (:mod:`stochthermo.testing`:
    derivatives and T_t ≥ 0, convergence, sampling and moments, the continuity equation). The reason of the
    first failure, or None. A class that needs parameters is checked while it runs (docs/trust.md)."""
    from stochthermo.testing._conformance import check_distribution, check_process, check_schedule, check_solver

    checks = {"schedule": check_schedule, "solver": check_solver, "distribution": check_distribution,
              "process": check_process}
    for kind, cls in found:
        if kind not in checks or any(p.required for p in parameters_of(cls)):
            continue
        try:
            instance = cls(**_test_context(cls))
        except ScenarioError:  # it refuses the test law: nothing to check it on generically
            continue
        except Exception as exc:  # any failure of a third-party class is reported, not raised
            return f"{kind} '{cls.name}' cannot be built: {type(exc).__name__}: {exc}"
        try:
            checks[kind](instance)
        except Exception as exc:  # any failure of a third-party class is reported, not raised
            return f"{kind} '{cls.name}' fails conformance: {exc}"
    return None


def _test_context(cls: type) -> dict[str, Any]:
    """The engine-supplied arguments a class declares (``CONTEXT``), on the test law of the load-time check."""
    context = getattr(cls, "CONTEXT", frozenset())
    if not context:
        return {}
    from stochthermo.measures._laws import GaussianMixture

    laws = {"data": GaussianMixture([0.5, 0.5], [-0.6, 0.6], stds=[0.3, 0.3]),
            "prior": GaussianMixture([1.0], [0.0], stds=[1.0]), "tau": 1.0}
    return {name: laws[name] for name in context if name in laws}


@cache
def default_registry() -> Registry:
    """The registry of this process (built-ins and installed entry points), loaded once."""
    return Registry()
