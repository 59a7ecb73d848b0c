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

import pluggy

from . import __version__, hookspecs
from .component import Component
from .distribution import Distribution
from .errors import PluginError, ScenarioError, did_you_mean
from .estimator import Estimator
from .observer import Observer
from .process import ForwardProcess
from .schedule import Schedule

ENTRY_POINT_GROUP = "stochthermo.plugins"
DISABLE_VARIABLE = "STOCHTHERMO_DISABLE_PLUGINS"

#: kind -> (base class, registration hook)
KINDS: dict[str, tuple[type[Component], str]] = {
    "schedule": (Schedule, "stochthermo_register_schedules"),
    "process": (ForwardProcess, "stochthermo_register_processes"),
    "distribution": (Distribution, "stochthermo_register_distributions"),
    "estimator": (Estimator, "stochthermo_register_estimators"),
    "observer": (Observer, "stochthermo_register_observers"),
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


def _conformance_failure(found: list[tuple[str, type]]) -> str | None:
    """Run :func:`stochthermo.testing.check_schedule` on third-party schedules that take no required
    parameters; the reason of the first failure, or None."""
    from .parameters import parameters_of
    from .testing import check_schedule

    for kind, cls in found:
        if kind == "schedule" and not any(p.required for p in parameters_of(cls)):
            try:
                check_schedule(cls())
            except Exception as exc:  # any failure of a third-party class is reported, not raised
                return f"schedule '{cls.name}' fails conformance: {exc}"
    return None


@cache
def default_registry() -> Registry:
    """The registry of this process (built-ins and installed entry points), loaded once."""
    return Registry()
