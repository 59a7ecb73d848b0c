"""The plugin registry: built-in and third-party plugins, loaded through the same pluggy hooks.

Built-ins are the modules of the ``stochthermo_plugins`` package (the top-level ``plugins/`` folder);
third-party plugins come from the ``stochthermo.plugins`` entry-point group. A third-party plugin that
fails to import, implements an unknown (misspelt) hook, registers an invalid class or a name that is taken
is *reported by name with the reason* and left out; the other plugins keep working. The same faults in a
built-in plugin are bugs and raise :class:`PluginError`.

Set ``STOCHTHERMO_DISABLE_PLUGINS`` to a comma-separated list of plugin names to block them.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import os
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pluggy

from . import __version__, hookspecs
from .component import Component
from .distribution import Distribution
from .errors import PluginError, ScenarioError, did_you_mean
from .estimator import Estimator
from .observer import Observer
from .parameters import coerce, parameters_of, plugin_base
from .process import ForwardProcess
from .schedule import Schedule
from .solver import Solver

ENTRY_POINT_GROUP = "stochthermo.plugins"
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

    def __init__(self, *, entry_points: bool = True, blocked: set[str] | None = None,
                 extra: dict[str, object] | None = None):
        """Load the built-ins, then (``entry_points``) the installed third-party plugins, then ``extra``
        plugin objects by name (modules or objects with hook implementations), treated as third-party."""
        if blocked is None:
            blocked = {n.strip() for n in os.environ.get(DISABLE_VARIABLE, "").split(",") if n.strip()}
        self.blocked = blocked
        #: the arguments that rebuild this registry elsewhere (a Dask worker): ``Registry(**recipe)``
        self.recipe = {"entry_points": entry_points, "blocked": set(blocked), "extra": dict(extra or {})}
        self.classes: dict[str, dict[str, type]] = {kind: {} for kind in KINDS}
        self.provider: dict[tuple[str, str], str] = {}
        self.plugins: dict[str, PluginInfo] = {}
        self.failures: list[PluginFailure] = []
        #: (kind, name) of classes left out with their plugin, and why
        self.rejected: dict[tuple[str, str], str] = {}
        self._manager = pluggy.PluginManager(hookspecs.PROJECT)
        self._manager.add_hookspecs(hookspecs)

        import stochthermo_plugins

        for module in stochthermo_plugins.BUILTIN_MODULES:
            name = "builtin." + module.__name__.rsplit(".", 1)[-1]
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
        params = {p.name: p for p in parameters_of(cls)}
        values = {}
        for param_key, value in given.items():
            if param_key not in params:
                raise ScenarioError(f"{kind} '{name}' has no parameter '{param_key}'"
                                    f"{did_you_mean(str(param_key), params)}", key=f"{key}.{param_key}")
            annotation = params[param_key].annotation
            base = plugin_base(annotation)
            if base is not None:
                values[param_key] = self.create(base.kind, value, f"{key}.{param_key}")
            else:
                values[param_key] = coerce(value, annotation, f"{key}.{param_key}")
        missing = [p for p in params.values() if p.required and p.name not in given]
        if missing:
            raise ScenarioError(f"{kind} '{name}' needs parameter '{missing[0].name}' ({missing[0].type_name})",
                                key=key)
        try:
            return cls(**(context or {}), **values)
        except ScenarioError as exc:
            raise exc.located(key_prefix=key) from None


def _conformance_failure(found: list[tuple[str, type]]) -> str | None:
    """The load-time gate on third-party classes that can be built without parameters: schedules must pass
    :func:`stochthermo.conformance.check_schedule` and solvers :func:`~stochthermo.conformance.check_solver`. The
    reason of the first failure, or None."""
    from .conformance import check_schedule, check_solver

    checks = {"schedule": check_schedule, "solver": check_solver}
    for kind, cls in found:
        if kind in checks and not any(p.required for p in parameters_of(cls)):
            try:
                checks[kind](cls())
            except Exception as exc:  # any failure of a third-party class is reported, not raised
                return f"{kind} '{cls.name}' fails conformance: {exc}"
    return None


@cache
def default_registry() -> Registry:
    """The registry of this process (built-ins and installed entry points), loaded once."""
    return Registry()
