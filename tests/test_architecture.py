"""The architecture's contracts: spec → build → run, capabilities instead of class checks (a test-only
third-party process trained by the neural estimator), the solver role, declared observer inputs, the
conformance helpers of every role, presentation contributed by a test-only third-party observer, and the
module graph (no import cycle, no test of a concrete plugin class)."""

import ast
import gc
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_plugin_guide import GaussianInterpolation

from conftest import run_dict, scenario_dict
from stochthermo import ConformanceError, Observer, Variable, hookimpl, load_scenario
from stochthermo.cli import KIND_NAMES, main
from stochthermo.engine._build import Sweep, parse_scenario
from stochthermo.engine._executors import TaskFailures
from stochthermo.engine._registry import KINDS, Registry, default_registry
from stochthermo.engine._simulate import simulate
from stochthermo.engine._spec import parse_spec
from stochthermo.output._files import write_dataset
from stochthermo.present._plotting import available_figures, save_figures
from stochthermo.present._report import render_report
from stochthermo.present._summary import format_summary
from stochthermo.roles._declarations import Column
from stochthermo.testing import check_estimator, check_observer, check_process, check_solver, linear_test_equation
from stochthermo_plugins.distributions import Gaussian

ROOT = Path(__file__).parents[1]
REGISTRY = default_registry()
GMM_2D = {"name": "gaussian_mixture", "weights": [0.5, 0.5], "means": [[-1.0, 0.0], [1.0, 0.5]], "stds": [0.4, 0.4]}


# ---- spec → build → run ------------------------------------------------------------------------------------
def test_spec_is_pure_data_and_hashable():
    text = yaml.safe_dump(scenario_dict(protocols={"c": {"process": {"name": "scheduled", "schedule": "cosin"}}}))
    spec = parse_spec(text, overrides=["particles=64"])  # no plugin is built: the misspelt schedule passes
    assert spec.raw["particles"] == 64 and hash(spec) == hash(parse_spec(text, overrides=["particles=64"]))
    assert spec.key != parse_spec(text).key and spec.sha256 != parse_spec(text).sha256
    with pytest.raises(Exception, match="unknown schedule 'cosin'"):
        parse_scenario(text)


def test_sweep_is_a_transform_of_specs():
    spec = parse_spec(yaml.safe_dump({**scenario_dict(), "sweep": {"tau": [1.0, 2.0]}}).replace("sweep:\n  tau",
                                                                                              "sweep:\n  particles"))
    variants = spec.variants()
    assert [v.labels for v in variants] == [(("particles", 1.0),), (("particles", 2.0),)]
    assert [v.raw["particles"] for v in variants] == [1.0, 2.0] and "sweep" not in variants[0].raw


def test_sweep_builds_into_variants_with_their_registry():
    sweep = parse_scenario(yaml.safe_dump({**scenario_dict(particles=64, time_steps=8),
                                           "sweep": {"protocols.cosine.process.schedule": ["cosine", "cond_ot"]}}))
    assert isinstance(sweep, Sweep) and len(sweep.variants) == 2 and sweep.registry is REGISTRY
    assert sweep.variants[1].protocols["cosine"].process.schedule.name == "cond_ot"


def test_the_registry_that_built_a_run_is_recorded():
    registry = Registry(entry_points=False, extra={"observer_plugin": ObserverPlugin()})
    ds = simulate(parse_scenario(yaml.safe_dump(_with_spread(particles=64, time_steps=8)), registry=registry),
                  device="cpu")
    import json

    assert "observer_plugin" in json.loads(ds.attrs["plugins"])
    assert "polynomial" not in json.loads(ds.attrs["plugins"])  # entry points were off for this registry


# ---- the solver role ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in REGISTRY.names("solver") if not REGISTRY.get("solver", n).stochastic])
def test_solver_conformance(name):
    check_solver(REGISTRY.get("solver", name)(), atol=1e-6)  # RK4 at h = 1/32 and exact maps


def test_check_solver_rejects_an_inaccurate_solver():
    class Euler(REGISTRY.get("solver", "rk4")):
        name = "euler"

        def solve(self, equation, x0, save_times, *, generator=None):
            positions = [x0]
            for a, b in zip(save_times[:-1].tolist(), save_times[1:].tolist(), strict=True):
                positions.append(positions[-1] + (b - a) * equation.velocity(a, positions[-1]))
            positions = torch.stack(positions)
            return positions, torch.stack([equation.velocity(float(t), x) for t, x in zip(save_times, positions,
                                                                                         strict=True)])

    with pytest.raises(ConformanceError, match="error .* against the exact flow"):
        check_solver(Euler(), atol=1e-6)


def test_integration_steps_are_independent_of_the_saved_grid():
    """RK4 with 4 steps per saved time on a grid of 16 agrees with the default 1 step on 64: the saved grid
    sets what is stored, the solver how accurately it is integrated."""
    coarse = run_dict(scenario_dict(time_steps=16, particles=512, solver={"name": "rk4", "steps_per_save": 4}))
    fine = run_dict(scenario_dict(time_steps=64, particles=512))
    assert coarse.sizes["time"] == 17
    np.testing.assert_allclose(coarse.wasserstein_1_change, fine.wasserstein_1_change, rtol=1e-6)
    np.testing.assert_allclose(coarse.wasserstein_1.values, fine.wasserstein_1.values[..., ::4], rtol=1e-6)


def test_per_protocol_solver_and_exact_maps():
    spec = scenario_dict(time_steps=16, particles=512, protocols={
        "ot_exact": {"process": "optimal_transport", "solver": "exact"},
        "ot_rk4": {"process": "optimal_transport", "solver": {"name": "rk4", "steps_per_save": 2}}})
    ds = run_dict(spec)
    eta = ds.response.sel(seed=0)
    np.testing.assert_allclose(eta.sel(protocol="ot_rk4"), eta.sel(protocol="ot_exact"), rtol=1e-6)


# ---- declared inputs ---------------------------------------------------------------------------------------
def test_observers_run_in_the_order_their_inputs_require():
    listed = run_dict(scenario_dict(time_steps=8, particles=256, observers=["bounds", "response", "thermodynamics"]))
    default = run_dict(scenario_dict(time_steps=8, particles=256, observers=["thermodynamics", "response", "bounds"]))
    assert list(listed.data_vars)[0].startswith("slack_")  # the Dataset keeps the listed order
    for name in default.data_vars:
        np.testing.assert_array_equal(listed[name].values, default[name].values)


def test_undeclared_input_is_not_handed_over():
    class Greedy(Observer):
        name = "greedy"
        consumes = {"response": ("response",)}

        def variables(self):
            return {"twice": Variable(("perturbation",), "two responses", "1", "2 eta", "(81)")}

        def observe(self, run, measured):
            return {"twice": 2 * measured["response"]["loss_cost"]}  # not declared

    registry = Registry(entry_points=False, extra={"greedy": _Plugin(observers=[Greedy])})
    (failure,) = registry.failures  # found on the registry's tiny run when it loads
    assert "observer 'greedy' fails on a tiny run: KeyError: 'loss_cost'" in failure.reason

    class GreedyWithParameter(Greedy):  # a required parameter defers the check to the run
        name = "greedy"

        def __init__(self, *, factor: float):
            self.factor = factor

    registry = Registry(entry_points=False, extra={"greedy": _Plugin(observers=[GreedyWithParameter])})
    spec = scenario_dict(observers=["response", {"name": "greedy", "factor": 2.0}])
    scenario = parse_scenario(yaml.safe_dump(spec), registry=registry)
    with pytest.raises(TaskFailures, match="KeyError: 'loss_cost'") as failure:
        simulate(scenario, device="cpu")
    assert isinstance(failure.value.__cause__, KeyError)  # the task's own exception, for its traceback


# ---- capabilities: a third-party process trained by the neural estimator ----------------------------------
class _Plugin:
    def __init__(self, processes=(), observers=()):
        self.processes, self.observers = list(processes), list(observers)

    @hookimpl
    def stochthermo_register_processes(self):
        return self.processes

    @hookimpl
    def stochthermo_register_observers(self):
        return self.observers


def test_third_party_process_conforms():
    check_process(GaussianInterpolation(data=Gaussian(0.5, 0.4), prior=Gaussian(0.0, 1.0), tau=1.0))


def test_neural_estimator_trains_on_a_third_party_process(tmp_path):
    registry = Registry(entry_points=False, extra={"interp": _Plugin(processes=[GaussianInterpolation])})
    spec = scenario_dict(data={"name": "gaussian", "mean": 0.5, "std": 0.4}, protocols={"p": {
        "process": "gaussian_interpolation",
        "estimator": {"name": "neural", "steps": 1500, "batch": 256, "width": 32, "depth": 2, "ema": None,
                      "record_every": 50, "cache": str(tmp_path)}}})
    protocol = parse_scenario(yaml.safe_dump(spec), registry=registry).protocols["p"]
    estimator, process = protocol.estimator, protocol.process
    generator = torch.Generator().manual_seed(1)
    draws = {t: process.marginal(t).sample(2048, generator) for t in (0.1, 0.5, 0.9)}  # the residual is over P_t
    errors = [float(((estimator.velocity(t, x) - process.velocity(t, x)) ** 2).mean()) for t, x in draws.items()]
    scale = [float((process.velocity(t, x) ** 2).mean()) for t, x in draws.items()]
    losses = estimator.training_losses()
    assert losses[-1] < 0.5 * losses[0], losses
    assert max(e / s for e, s in zip(errors, scale, strict=True)) < 0.05, (errors, scale)
    check_estimator(estimator)


def test_neural_refuses_a_process_without_the_capability():
    class Bare(GaussianInterpolation):
        name = "bare"
        conditional_target_sampler = None  # declares nothing

    registry = Registry(entry_points=False, extra={"bare": _Plugin(processes=[Bare])})
    spec = scenario_dict(data={"name": "gaussian", "mean": 0.5, "std": 0.4},
                         protocols={"p": {"process": "bare", "estimator": "neural"}})
    with pytest.raises(Exception, match="gives no conditional training target"):
        parse_scenario(yaml.safe_dump(spec), registry=registry)


# ---- conformance of the built-ins --------------------------------------------------------------------------
PROCESS_CASES = {
    "scheduled-cosine-1d": ({"name": "scheduled", "schedule": "cosine"}, scenario_dict()["data"]),
    "scheduled-vp-2d": ({"name": "scheduled", "schedule": "vp_linear"}, GMM_2D),
    "scheduled-ve-1d": ({"name": "scheduled", "schedule": "ve"}, scenario_dict()["data"]),
    "rotational-2d": ({"name": "rotational", "g": 3.0}, GMM_2D),
    "ot-exact-1d": ("optimal_transport", scenario_dict()["data"]),
    "ot-gaussian-2d": ("optimal_transport", {"name": "gaussian", "mean": [0.5, 0.0], "std": 0.7}),
}


def _built(process_spec, data, **changes):
    dim = 1 if "dim" not in data and np.ndim(data.get("mean", data.get("means", [[0]])[0])) == 0 else 2
    prior = {"name": "gaussian", "mean": [0.0] * dim if dim > 1 else 0.0, "std": 1.0}
    perturbation = {"name": "gaussian", "mean": [0.3] * dim if dim > 1 else 0.3, "std": 0.9}
    spec = scenario_dict(data=data, prior=prior, perturbations={"p": perturbation},
                         protocols={"p": {"process": process_spec}}, **changes)
    return parse_scenario(yaml.safe_dump(spec))


@pytest.mark.parametrize("case", PROCESS_CASES)
def test_process_conformance(case):
    protocol = _built(*PROCESS_CASES[case]).protocols["p"]
    check_process(protocol.process)
    check_estimator(protocol.estimator)


def test_check_process_detects_a_wrong_velocity():
    wrong = GaussianInterpolation(data=Gaussian(0.5, 0.4), prior=Gaussian(0.0, 1.0), tau=1.0)
    wrong.velocity = lambda t, x: 1.1 * GaussianInterpolation.velocity(wrong, t, x)
    with pytest.raises(ConformanceError, match="continuity equation residual"):
        check_process(wrong)


@pytest.mark.parametrize("observers", [["thermodynamics"], ["response"], ["thermodynamics", "response", "bounds"],
                                       [{"name": "snapshots", "times": [0.0, 0.5]}], ["monte_carlo_cost"],
                                       ["response", "estimation"]], ids=lambda o: str(o[-1])[:20])
def test_observer_conformance(observers):
    scenario = _built({"name": "scheduled", "schedule": "cosine"}, scenario_dict()["data"], observers=observers,
                      time_steps=8, particles=256)
    last = observers[-1] if isinstance(observers[-1], str) else observers[-1]["name"]
    check_observer(scenario, last)


def test_check_observer_detects_a_wrong_shape():
    class Short(Observer):
        name = "short"

        def __init__(self, *, length: int):  # required: the registry's own check at load leaves it to this one
            self.length = length

        def variables(self):
            return {"short_series": Variable(("time",), "a series", "1", "s", "-")}

        def observe(self, run, measured):
            return {"short_series": np.zeros(self.length)}

    registry = Registry(entry_points=False, extra={"short": _Plugin(observers=[Short])})
    spec = scenario_dict(time_steps=8, particles=64, observers=[{"name": "short", "length": 3}])
    scenario = parse_scenario(yaml.safe_dump(spec), registry=registry)
    with pytest.raises(ConformanceError, match="returned 'short_series' of shape \\(3,\\); it declares \\(time,\\) "
                                               "= \\(9,\\)"):
        check_observer(scenario, "short")


def test_solver_gate_reports_a_failing_third_party_solver():
    class Lazy(REGISTRY.get("solver", "rk4")):
        name = "lazy"

        def solve(self, equation, x0, save_times, *, generator=None):
            positions = x0.expand(len(save_times), *x0.shape).clone()
            return positions, torch.stack([equation.velocity(float(t), x0) for t in save_times])

    class Plugin:
        @hookimpl
        def stochthermo_register_solvers(self):
            return [Lazy]

    registry = Registry(entry_points=False, extra={"lazy_plugin": Plugin()})
    (failure,) = registry.failures
    assert "solver 'lazy' fails conformance" in failure.reason and "lazy" not in registry.names("solver")


def test_linear_test_equation_is_exact_for_the_exact_solver():
    positions, _ = REGISTRY.get("solver", "exact")().solve(linear_test_equation(), torch.ones(3, 1),
                                                           torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert float(positions[-1, 0, 0]) == pytest.approx(math.exp(0.7))


# ---- presentation contributed by a third-party observer ----------------------------------------------------
class FinalSpread(Observer):
    """Test-only observer: the variance of the true reverse process's end law, with a summary column and a
    figure of its own."""

    name = "final_spread"

    def variables(self):
        return {"final_spread": Variable((), "variance of the generated law", "1", "Var p", "-")}

    def observe(self, run, measured):
        x = run.true.positions[0, :, 0]
        mean = float(x @ run.true.weights)
        return {"final_spread": float(((x - mean) ** 2) @ run.true.weights)}

    @classmethod
    def summary_columns(cls, ds):
        return [Column("spread", "final_spread", 45)] if "final_spread" in ds else []

    @classmethod
    def figures(cls, ds):
        return {"spread": _spread_figure} if "final_spread" in ds else {}


def _spread_figure(ds):
    from stochthermo.present._pyplot import pyplot

    fig, ax = pyplot().subplots()
    ax.bar(range(len(ds.protocol)), ds.final_spread.mean("seed").values)
    return fig


class ObserverPlugin:
    @hookimpl
    def stochthermo_register_observers(self):
        return [FinalSpread]


def _with_spread(**changes):
    return scenario_dict(observers=["thermodynamics", "response", "bounds", "final_spread"], **changes)


def test_third_party_observer_appears_in_table_figures_and_report(tmp_path):
    registry = Registry(entry_points=False, extra={"observer_plugin": ObserverPlugin()})
    ds = simulate(parse_scenario(yaml.safe_dump(_with_spread(particles=512, time_steps=16)), registry=registry),
                  device="cpu")
    assert float(ds.final_spread.sel(protocol="cosine", seed=0)) == pytest.approx(0.45, rel=1e-3)  # 0.6² + 0.3²
    table = format_summary(ds, registry).splitlines()
    assert "spread" in table[0] and table[0].index("c_2") < table[0].index("spread")
    assert "spread" in available_figures(ds, registry) and "spread" not in available_figures(ds, REGISTRY)
    written = save_figures(ds, tmp_path, ("png",), stem="run", registry=registry)
    assert tmp_path / "run_spread.png" in written
    assert '<figure><img alt="spread"' in render_report(ds, registry)


# ---- bad input to every command ----------------------------------------------------------------------------
def test_plot_and_report_refuse_a_foreign_netcdf(tmp_path, capsys):
    import xarray as xr

    foreign = tmp_path / "foreign.nc"
    write_dataset(xr.Dataset({"temperature": ("x", np.arange(3.0))}), foreign)
    for command in (["plot", str(foreign), "-o", str(tmp_path / "figs")], ["report", str(foreign)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{foreign}: not a stochthermo run" in err, err
    assert not (tmp_path / "figs").exists() and not (tmp_path / "foreign.html").exists()


def test_describe_suggests_the_role_and_the_name(capsys):
    assert main(["describe", "solvr", "rk4"]) == 2
    assert "unknown plugin kind 'solvr' (did you mean 'solver'?)" in capsys.readouterr().err
    assert main(["describe", "solver", "rk5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown solver 'rk5' (did you mean 'rk4'?)" in err


def test_a_run_too_large_for_memory_is_refused_before_allocating(write_scenario, tmp_path, capsys):
    path = write_scenario(scenario_dict(particles=10**12))
    assert main(["run", str(path), "-o", str(tmp_path / "big.nc")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}: particles: 1000000000000 particles" in err and "GiB" in err, err
    assert not (tmp_path / "big.nc").exists()


def test_entry_point_keeps_the_collector_off_the_imported_modules(write_scenario, tmp_path, capsys):
    """The console script pauses the cyclic collector while a command imports torch, xarray, scipy and the
    plugins, then freezes those objects and switches the collector back on before the run computes;
    ``main`` called in-process leaves the caller's collector as it was."""
    path = write_scenario(scenario_dict(output=str(tmp_path / "o.nc")))
    probe = ("import gc, sys\n"
             "from stochthermo import cli\n"
             "from stochthermo.engine import _simulate as engine\n"
             "simulate = engine.simulate\n"
             "def spy(*args, **kwargs):\n"
             "    print('collector:', gc.isenabled(), gc.get_freeze_count(), file=sys.stderr)\n"
             "    return simulate(*args, **kwargs)\n"
             "engine.simulate = spy\n"
             f"sys.argv = ['stochthermo', 'run', {str(path)!r}, '-q']\n"
             "cli.entry_point()\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert proc.returncode == 0 and (tmp_path / "o.nc").exists(), proc.stderr
    enabled, frozen = proc.stderr.split("collector:")[1].split()[:2]
    assert enabled == "True" and int(frozen) > 100_000, proc.stderr  # torch alone holds some 10^5 objects
    frozen_before = gc.get_freeze_count()
    assert main(["run", str(path), "-q", "-o", str(tmp_path / "p.nc")]) == 0
    assert gc.isenabled() and gc.get_freeze_count() == frozen_before


# ---- capabilities, not class checks (the module graph itself: tests/test_layout.py) --------------------------
def test_no_class_check_of_a_concrete_plugin_class():
    """Plugins and the engine decide what a plugin can do by capabilities (stochthermo.roles): no
    isinstance of a class another module of plugins/ defines, no getattr/hasattr by attribute name."""
    import importlib

    from stochthermo.roles._component import Component

    sources = [*(ROOT / "plugins").rglob("*.py"), *(ROOT / "stochthermo").rglob("*.py")]
    defined = {}  # module file -> the plugin classes (components) it defines
    for path in (ROOT / "plugins").rglob("*.py"):
        name = ".".join(["stochthermo_plugins", *path.relative_to(ROOT / "plugins").with_suffix("").parts])
        module = importlib.import_module(name.removesuffix(".__init__"))
        defined[path] = {n for n, obj in vars(module).items() if isinstance(obj, type) and issubclass(obj, Component)
                         and obj.__module__ == module.__name__}
    for path in sources:
        tree = ast.parse(path.read_text())
        others = set().union(*(names for p, names in defined.items() if p != path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id == "isinstance" and len(node.args) == 2:
                checked = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
                assert not checked & others, f"{path.name}:{node.lineno}: isinstance of {checked & others}"
            if node.func.id in ("getattr", "hasattr") and ROOT / "plugins" in path.parents:
                attribute = node.args[1]
                assert not isinstance(attribute, ast.Constant), f"{path.name}:{node.lineno}: {node.func.id} by name"


def test_cli_kinds_match_the_registry():
    assert tuple(sorted(KINDS)) == KIND_NAMES


def test_docs_references_resolve():
    """Every "docs/<file>.md §n" or "docs/<file>.md, "Section"" and every test file cited in code, scenarios and
    docs exists."""
    pattern = re.compile(r"docs/(\w+)\.md(?: §(\d+)|, \"([^\"]+)\")?")
    files = [*ROOT.rglob("stochthermo/**/*.py"), *ROOT.rglob("plugins/**/*.py"), *ROOT.glob("scenarios/*.yaml"),
             *ROOT.glob("tests/*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("docs/*.md"), ROOT / "README.md"]
    cited = 0
    for path in files:
        for match in pattern.finditer(path.read_text()):
            doc = ROOT / "docs" / f"{match.group(1)}.md"
            assert doc.exists(), f"{path.name} cites missing {doc.name}"
            text = doc.read_text()
            if match.group(2):
                assert re.search(rf"^#+ {match.group(2)}\. ", text, re.M), f"{path.name}: {doc.name} §{match.group(2)}"
            if match.group(3):
                assert re.search(rf"^#+ .*{re.escape(match.group(3))}", text, re.M), (
                    f"{path.name}: {doc.name} section \"{match.group(3)}\"")
            cited += 1
    assert cited > 40
    outside = re.compile(r"physics\.md|experiments\.md|\.\./shared")
    for path in files:
        if path.name != "test_architecture.py":
            assert not outside.search(path.read_text()), f"{path.name} cites a file outside the repository"
        for test_file in re.findall(r"tests/\w+\.py", path.read_text()):
            assert (ROOT / test_file).exists(), f"{path.name} cites {test_file}, which does not exist"


def test_the_summary_counts_the_independent_relation_checks():
    """gmm.yaml's 84 cells carry 39 independent checks: per protocol (80), (81) η ≤ c_1 and (81) c_1 ≤ w_D for each
    of the 4 starts, and (92) for W_2 once; (82) and (83) repeat (80) and c_1 ≤ w_D (a gradient field in 1-D),
    (92) for L holds by construction."""
    from stochthermo.present._summary import independent_relations

    ds = simulate(load_scenario("scenarios/gmm.yaml", overrides=["particles=512", "time_steps=24"]), device="cpu")
    independent, applicable, reasons = independent_relations(ds)
    assert (independent, applicable) == (39, 84)
    assert "(82) repeats (80)" in reasons and "(83) repeats (81)c1<=wD" in reasons
    assert any(r.startswith("(92)L holds by construction") for r in reasons)
    assert "independent checks: 39 of the 84 cells that apply" in format_summary(ds)
