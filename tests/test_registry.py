"""The plugin registry: built-ins through the public hooks, duplicates, misspelt hooks, invalid classes,
blocking, and the `plugins` / `describe` commands."""

import json
import re
import types

import pytest

from stochthermo import Schedule, hookimpl
from stochthermo.cli import main
from stochthermo.engine._registry import KINDS, Registry
from stochthermo.errors import PluginError, ScenarioError
from stochthermo_plugins.schedules import Cosine


def _plugin(**hooks):
    return types.SimpleNamespace(**{name: hookimpl(function) for name, function in hooks.items()})


class Linear(Cosine):
    name = "cosine"  # clashes with the built-in


def test_builtins_register_through_hooks():
    registry = Registry(entry_points=False)
    assert registry.names("schedule") == ["cond_ot", "cosine", "diffusers", "edm", "ornstein_uhlenbeck", "ve",
                                          "ve_geometric", "vp_linear"]
    assert registry.names("process") == ["optimal_transport", "rotational", "scheduled"]
    assert {"swiss_roll", "moons", "eight_gaussians", "empirical",
            "weighted_points"} <= set(registry.names("distribution"))
    assert set(registry.names("observer")) == {"bounds", "response", "snapshots", "thermodynamics", "monte_carlo_cost",
                                               "image_snapshots", "estimation", "trajectory_thermodynamics",
                                               "fokker_planck_residual", "ode_sde_gap", "prior_error",
                                               "long_time_limit", "ot_bridge", "observable_speed"}
    assert registry.names("estimator") == ["diffusers", "exact", "neural", "torch_module"]
    assert registry.names("solver") == ["auto", "euler_maruyama", "exact", "rk4", "stochastic_heun"]
    assert "images" in registry.names("distribution")
    assert registry.provider[("schedule", "cosine")] == "builtin.schedules.standard"
    assert not registry.failures


def test_duplicate_name_names_both_plugins():
    registry = Registry(entry_points=False, extra={"mine": _plugin(stochthermo_register_schedules=lambda: [Linear])})
    (failure,) = registry.failures
    assert failure.plugin == "mine"
    assert failure.reason == "schedule 'cosine' is registered by both builtin.schedules.standard and mine"
    assert registry.get("schedule", "cosine") is Cosine  # the others keep working


def test_misspelt_hook_fails_loudly_by_name():
    registry = Registry(entry_points=False, extra={"typo": _plugin(stochthermo_register_schedule=lambda: [])})
    (failure,) = registry.failures
    assert failure.plugin == "typo" and "stochthermo_register_schedule" in failure.reason
    assert "typo" not in registry.plugins


@pytest.mark.parametrize("bad, message", [
    (int, "is not a subclass of Schedule"),
    (type("NoName", (Cosine,), {}), "NoName.name must be a snake_case string"),
    (type("Camel", (Cosine,), {"name": "MySchedule"}), "must be a snake_case string, got 'MySchedule'"),
    (type("Abstract", (Schedule,), {"name": "abstract"}), "is abstract: missing dm, dsigma, m, sigma"),
])
def test_invalid_classes_are_reported(bad, message):
    registry = Registry(entry_points=False, extra={"bad": _plugin(stochthermo_register_schedules=lambda: [bad])})
    assert message in registry.failures[0].reason


def test_hook_must_return_a_list():
    registry = Registry(entry_points=False, extra={"bad": _plugin(stochthermo_register_schedules=lambda: Cosine)})
    assert "must return a list of classes" in registry.failures[0].reason


def test_broken_builtin_is_a_bug(monkeypatch):
    import stochthermo_plugins

    broken = types.ModuleType("stochthermo_plugins.broken")
    broken.stochthermo_register_schedules = hookimpl(lambda: [Linear])
    monkeypatch.setattr(stochthermo_plugins, "BUILTIN_MODULES", (*stochthermo_plugins.BUILTIN_MODULES, broken))
    with pytest.raises(PluginError, match="built-in plugin builtin.broken: schedule 'cosine' is registered by both"):
        Registry(entry_points=False)


def test_blocking_by_environment(monkeypatch):
    monkeypatch.setenv("STOCHTHERMO_DISABLE_PLUGINS", "builtin.processes.optimal_transport, other")
    registry = Registry(entry_points=False)
    assert registry.names("process") == ["rotational", "scheduled"]
    with pytest.raises(ScenarioError, match="unknown process 'optimal_transport'"):
        registry.get("process", "optimal_transport")


def test_unknown_name_suggests():
    with pytest.raises(ScenarioError, match=r"unknown schedule 'cond-ot' \(did you mean 'cond_ot'\?\)"):
        Registry(entry_points=False).get("schedule", "cond-ot")


def test_every_hook_has_a_kind():
    from stochthermo import hookspecs

    hooks = {name for name in dir(hookspecs) if name.startswith("stochthermo_")}
    assert hooks == {hook for _, hook in KINDS.values()}


def test_plugins_command(capsys):
    assert main(["plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    builtin = {p["name"]: p for p in listing["plugins"]}["builtin.schedules.standard"]
    assert builtin["provides"] == {"schedule": ["cosine", "cond_ot", "vp_linear", "ornstein_uhlenbeck"]}
    assert builtin["source"] == "built-in"
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert not re.search(r"builtin\.processes(?!\.)", out)  # modules are named individually
    roles = [line for line in out.splitlines() if not line.startswith(" ")]
    assert roles[:6] == ["distributions:", "estimators:", "observers:", "processes:", "schedules:", "solvers:"]
    assert "  cosine (builtin.schedules.standard 0.1.0)" in out.splitlines()


def test_describe_command(capsys):
    assert main(["describe", "schedule", "vp_linear"]) == 0
    out = capsys.readouterr().out
    assert "beta_min: float (default 0.1)" in out and "beta_max: float (default 20.0)" in out
    assert main(["describe", "schedule", "cosin"]) == 2
    assert "did you mean 'cosine'" in capsys.readouterr().err
