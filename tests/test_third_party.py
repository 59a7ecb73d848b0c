"""Third-party plugins: the example package installed from examples/, plugin faults reported by name, and
every hook documented in docs/extending.md with its exact signature and exercised by a test."""

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stochthermo import Schedule, hookimpl, hookspecs
from stochthermo.cli import main
from stochthermo.engine._registry import Registry

ROOT = Path(__file__).parents[1]
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("stochthermo_"))


def test_example_plugin_is_listed(capsys):
    assert main(["plugins", "--json"]) == 0
    plugins = {p["name"]: p for p in json.loads(capsys.readouterr().out)["plugins"]}
    assert plugins["polynomial"]["provides"] == {"schedule": ["polynomial"]}
    assert plugins["polynomial"]["source"].startswith("entry point stochthermo_polynomial")


def test_scenario_using_the_example_plugin_runs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "stochthermo.cli", "run",
                           str(ROOT / "examples/stochthermo-polynomial/scenario.yaml"), "-o", str(tmp_path / "p.nc")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "polynomial  shifted" in proc.stdout and (tmp_path / "p.nc").exists()


def test_import_error_is_reported_and_others_work(monkeypatch):
    broken = importlib.metadata.EntryPoint("broken", "no_such_module_xyz", "stochthermo.plugins")
    real = importlib.metadata.entry_points
    def entry_points(group):
        return [*real(group=group), broken] if group == "stochthermo.plugins" else real(group=group)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    registry = Registry()
    failure = {f.plugin: f.reason for f in registry.failures}["broken"]
    assert failure.startswith("import failed: ModuleNotFoundError")
    assert "polynomial" in registry.names("schedule") and "cosine" in registry.names("schedule")


class Shrinking(Schedule):
    """σ/m decreases after s = 1/2 (T < 0): fails conformance."""

    name = "shrinking"

    def m(self, s):
        return 1 - s

    def sigma(self, s):
        return s * (1 - s) ** 2

    def dm(self, s):
        return -torch.ones_like(s)

    def dsigma(self, s):
        return (1 - s) ** 2 - 2 * s * (1 - s)


class ShrinkingPlugin:
    @hookimpl
    def stochthermo_register_schedules(self):
        return [Shrinking]


def test_schedule_failing_conformance_is_reported():
    registry = Registry(entry_points=False, extra={"shrinking_plugin": ShrinkingPlugin()})
    (failure,) = registry.failures
    assert failure.plugin == "shrinking_plugin"
    assert "schedule 'shrinking' fails conformance" in failure.reason and "negative temperature" in failure.reason
    assert "shrinking" not in registry.names("schedule")


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_and_tested(hook):
    guide = (ROOT / "docs" / "extending.md").read_text()
    assert f"`{hook}() -> list[type]`" in guide, f"{hook} is not documented with its signature in docs/extending.md"
    signature = re.search(rf"def {hook}\((.*?)\) -> (.*?):", (ROOT / "stochthermo/hookspecs.py").read_text())
    assert signature.groups() == ("", "list[type]")
    used = [p for p in (ROOT / "tests").glob("test_*.py") if hook in p.read_text() and p.name != Path(__file__).name]
    used += [p for p in (ROOT / "plugins").rglob("*.py") if f"def {hook}" in p.read_text()]
    assert used, f"no test or built-in plugin exercises {hook}"


def test_using_a_rejected_schedule_says_why():
    from stochthermo.errors import ScenarioError

    registry = Registry(entry_points=False, extra={"shrinking_plugin": ShrinkingPlugin()})
    with pytest.raises(ScenarioError, match="schedule 'shrinking' is unavailable: plugin shrinking_plugin was not "
                                            "loaded: schedule 'shrinking' fails conformance"):
        registry.get("schedule", "shrinking")
