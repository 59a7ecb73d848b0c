"""Nothing wrong reaches an output: verified task files, protected paths, bounded input, one-line failures and
plugins checked while they run. One test per way in which a careless or hostile input used to get through (the
crafted model files are in tests/test_torch_module.py)."""

from __future__ import annotations

import errno
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import assert_same_run, scenario_dict, use_registry
from stochthermo import ForwardProcess, Observer, ScenarioError, Variable, hookimpl, open_run
from stochthermo.cli import main
from stochthermo.engine._registry import Registry
from stochthermo.engine._tasks import run_directory

SMALL = scenario_dict(time_steps=8, particles=64, seeds=[0, 1])


def _one_line(capsys, *fragments):
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def _kept_run(write_scenario, tmp_path, capsys):
    """A finished run with its task files kept, and the scenario that made it."""
    path = write_scenario(SMALL)
    output = tmp_path / "o.nc"
    assert main(["run", str(path), "-q", "-o", str(output), "--keep-tasks"]) == 0
    capsys.readouterr()
    return path, output, sorted(run_directory(output).glob("*.npz"))


# ---- task files ---------------------------------------------------------------------------------------------
def _edit(task_file, change):
    """Rewrite one array of a task file with ``change(array)``, keeping everything else (digest included)."""
    with np.load(task_file, allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    name = next(n for n in arrays if n.endswith("/kinetic_cost"))
    arrays[name] = change(arrays[name].copy())
    with open(task_file, "wb") as handle:
        np.savez(handle, **arrays)


@pytest.mark.parametrize("damage", ["edited", "nan", "truncated", "foreign"])
def test_a_damaged_task_file_is_named_and_recomputed(damage, write_scenario, tmp_path, capsys, caplog):
    path, output, files = _kept_run(write_scenario, tmp_path, capsys)
    clean = open_run(output)
    target = files[0]
    if damage == "edited":
        _edit(target, lambda a: a + 1.0)
    elif damage == "nan":
        _edit(target, lambda a: a * np.nan)
    elif damage == "truncated":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    else:  # a valid task file of another task copied over this one
        target.write_bytes(files[1].read_bytes())
    assert main(["run", str(path), "-q", "-o", str(output), "--keep-tasks", "--no-recompute"]) == 2
    _one_line(capsys, target.name, "--no-recompute")
    assert main(["run", str(path), "-o", str(output), "-q"]) == 0
    warning = capsys.readouterr().err + caplog.text  # the command line logs warnings to standard error
    assert target.name in warning and "recomputed" in warning, warning
    assert_same_run(open_run(output), clean)


def test_task_keys_hold_the_code_that_computed_them(write_scenario, tmp_path, monkeypatch):
    """A changed plugin (same version) never reuses a task of the old code."""
    import yaml

    from stochthermo.engine import _tasks
    from stochthermo.engine._build import parse_scenario

    scenario = parse_scenario(yaml.safe_dump(SMALL))
    import torch

    before = [t.key for t in _tasks.plan_tasks(scenario, torch.device("cpu"), "float64")]
    digest = _tasks.code_digest(_tasks.plugin_classes(scenario))
    assert len(digest) == 64 and digest == _tasks.code_digest(_tasks.plugin_classes(scenario))
    monkeypatch.setattr(_tasks, "code_digest", lambda classes: "another code")
    after = [t.key for t in _tasks.plan_tasks(scenario, torch.device("cpu"), "float64")]
    assert set(before).isdisjoint(after)


def test_a_second_run_of_the_same_output_is_refused_while_the_first_holds_it(write_scenario, tmp_path, capsys):
    path = write_scenario(SMALL)
    output = tmp_path / "o.nc"
    from stochthermo.engine._tasks import TaskStore

    holder = TaskStore(run_directory(output), "identity", "other").open()
    try:
        assert main(["run", str(path), "-q", "-o", str(output)]) == 2
        _one_line(capsys, "another run is writing", str(run_directory(output)))
    finally:
        holder.close()
    assert main(["run", str(path), "-q", "-o", str(output)]) == 0


def test_a_killed_runs_temporary_files_are_removed_by_the_next_run(write_scenario, tmp_path, capsys):
    path = write_scenario(SMALL)
    output = tmp_path / "o.nc"
    stale = tmp_path / ".o.nc.abc123.tmp.nc"
    other = tmp_path / ".o.v2.nc.abc123.tmp.nc"  # another output's: left alone
    other.write_bytes(b"another run's half file")
    stale.write_bytes(b"half a file")
    assert main(["run", str(path), "-q", "-o", str(output)]) == 0
    assert not stale.exists() and output.exists() and other.exists()


def test_merge_keys_still_load():
    from stochthermo.engine._spec import parse_spec

    text = "tau: 1.0\nperturbations:\n  base: &b {name: gaussian, mean: 1.0}\n  other: {<<: *b, std: 2.0}\n"
    assert parse_spec(text).raw["perturbations"]["other"] == {"name": "gaussian", "mean": 1.0, "std": 2.0}


def test_a_scenario_file_of_any_name_runs(write_scenario, tmp_path, capsys):
    path = write_scenario(SMALL, name="scenario.txt")
    assert main(["run", str(path), "-q", "-o", str(tmp_path / "o.nc")]) == 0


def test_marginal_moments_are_exact_for_mixtures_and_point_clouds():
    """The check of a process's marginals uses E|x|² and Var|x|² computed exactly from the law's components (an
    imbalanced mixture's Var|x|² is far above the Gaussian value): against a large Monte Carlo sample."""
    import torch

    from stochthermo.engine._checks import square_norm_moments
    from stochthermo.measures import GaussianMixture, PointCloud

    mixture = GaussianMixture([0.99, 0.01], [[0.0, 0.0], [20.0, 0.0]], stds=[1.0, 0.5])
    points = torch.randn(50, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    cloud = PointCloud.from_points(points, 0.3)
    for law in (mixture, cloud):
        x = law.sample(400_000, torch.Generator().manual_seed(0))
        squares = (x**2).sum(1)
        second, variance = square_norm_moments(law)
        assert second == pytest.approx(float(squares.mean()), rel=0.01)
        assert variance == pytest.approx(float(squares.var()), rel=0.05)


# ---- paths --------------------------------------------------------------------------------------------------
def test_the_output_may_not_be_an_input_a_directory_or_a_special_file(write_scenario, tmp_path, capsys):
    path = write_scenario(SMALL)
    text = path.read_text()
    assert main(["run", str(path), "-q", "-o", str(path)]) == 2
    _one_line(capsys, "is the scenario file itself")
    assert path.read_text() == text
    (tmp_path / "folder").mkdir()
    assert main(["run", str(path), "-q", "-o", str(tmp_path / "folder")]) == 2
    _one_line(capsys, "is a directory")
    assert main(["run", str(path), "-q", "-o", "/dev/null"]) == 2
    _one_line(capsys, "not a regular file")
    assert not run_directory(tmp_path / "folder").exists()


def test_an_existing_file_that_is_not_a_result_is_kept_unless_forced(write_scenario, tmp_path, capsys):
    path = write_scenario(SMALL)
    notes = tmp_path / "notes.nc"
    notes.write_text("my notes")
    assert main(["run", str(path), "-q", "-o", str(notes)]) == 2
    _one_line(capsys, "notes.nc", "not a stochthermo result", "--force")
    assert notes.read_text() == "my notes"
    assert main(["run", str(path), "-q", "-o", str(notes), "--force"]) == 0
    open_run(notes)
    assert main(["run", str(path), "-q", "-o", str(notes)]) == 0  # a result of this tool is replaced


def test_zarr_outputs_are_directories_of_runs(write_scenario, tmp_path, capsys):
    pytest.importorskip("zarr")
    path = write_scenario(SMALL)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    for target in (folder, path):
        assert main(["run", str(path), "-q", "-o", str(target), "--format", "zarr", "--force"]) == 2
        capsys.readouterr()
    assert (folder / "keep.txt").read_text() == "mine" and path.is_file()


def test_an_in_memory_run_cannot_use_a_dask_cluster():
    import stochthermo
    from stochthermo import ScenarioError

    with pytest.raises(ScenarioError, match="a Dask executor needs an output"):
        stochthermo.run(SMALL, write=False, executor="local")


def test_report_onto_its_own_run_is_refused(write_scenario, tmp_path, capsys):
    path, output, _ = _kept_run(write_scenario, tmp_path, capsys)
    assert main(["report", str(output), "-o", str(output)]) == 2
    _one_line(capsys, "is the run file itself")
    open_run(output)


def test_an_unwritable_output_is_one_line(write_scenario, tmp_path, capsys, monkeypatch):
    path = write_scenario(SMALL)
    from stochthermo.output import _files

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_files.os, "replace", full)
    assert main(["run", str(path), "-q", "-o", str(tmp_path / "o.nc")]) == 2
    _one_line(capsys, str(tmp_path), "No space left on device")  # names the file it could not write
    assert not list(tmp_path.glob(".o*")) and not run_directory(tmp_path / "o.nc").exists()


def test_a_netcdf_library_error_and_an_unwritable_place_are_one_line(write_scenario, tmp_path, capsys,
                                                                      monkeypatch):
    """The netCDF library's own error (here raised in place of HDF5's), and an output whose folder is a file
    (a read-only folder does not stop root, who runs these tests)."""
    path = write_scenario(SMALL)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    assert main(["run", str(path), "-q", "-o", str(blocker / "o.nc")]) == 2
    _one_line(capsys, str(blocker))
    import xarray

    def broken(self, *args, **kwargs):
        raise RuntimeError("NetCDF: HDF error")

    monkeypatch.setattr(xarray.Dataset, "to_netcdf", broken)
    assert main(["run", str(path), "-q", "-o", str(tmp_path / "o.nc")]) == 2
    _one_line(capsys, "o.nc", "the netCDF library could not write it (NetCDF: HDF error)")
    assert not (tmp_path / "o.nc").exists() and not list(tmp_path.glob(".o.nc*"))


# ---- input limits -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("particles: 64\nparticles: 128\n", "key 'particles' given twice (lines 1 and 2)"),
    ("{tau: 1.0, tau: 2.0}\n", "key 'tau' given twice (line 1)"),
    ("a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [[[[[[[[[[*a{i - 1}]]]]]]]]]]\n" for i in range(1, 9)),
     "nested deeper than 32 levels (through aliases)"),
    ("protocols:\n  a: {process: {name: scheduled, schedule: cosine}}\n  a: {process: optimal_transport}\n",
     "key 'a' given twice (lines 2 and 3)"),
    ("[" * 3000 + "]" * 3000, "nested deeper than"),
    ("a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, "
                                                     f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}"
                                                     f", *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
                                                     for i in range(9)), "aliases"),
])
def test_hostile_yaml_is_one_line(text, message, write_scenario, capsys):
    path = write_scenario(text)
    assert main(["validate", str(path)]) == 2
    _one_line(capsys, message)


@pytest.mark.parametrize("content, message", [("tau: 1.0 # caf\xe9\n".encode("latin-1"), "not UTF-8 text"),
                                               (bytes(range(256)), "not UTF-8 text"),
                                               (b"#" * (2 * 1024 * 1024), "larger than")])
def test_a_file_that_is_not_a_scenario_is_one_line(content, message, tmp_path, capsys):
    path = tmp_path / "scenario.yaml"
    path.write_bytes(content)
    assert main(["validate", str(path)]) == 2
    _one_line(capsys, message)


@pytest.mark.parametrize("changes, message", [
    ({"seeds": [2**64]}, "seeds: seeds must be distinct integers in 0 ... 2^63 - 1"),
    ({"time_steps": 100_000_000}, "does not fit in memory"),
    ({"tau": 1e300}, "tau: must be <="),
    ({"protocols": {"vp": {"process": {"name": "scheduled", "schedule": {"name": "vp_linear", "beta_max": 1e6}}}}},
     "protocols.vp.process.schedule: schedule 'vp_linear' has m = 0 at t/tau = 0.055 < 1 (underflow)"),
    ({"protocols": {"ve": {"process": {"name": "scheduled", "schedule": {"name": "ve", "sigma_max": 1e200}}}}},
     "protocols.ve.process.schedule: schedule 've' has dsigma2(t/tau = 0.0005) = inf: its parameters are outside"),
])
def test_sizes_and_ranges_are_refused_before_anything_is_computed(changes, message, write_scenario, tmp_path,
                                                                  capsys):
    path = write_scenario(scenario_dict(**changes))
    start = time.perf_counter()
    assert main(["run", str(path), "-q", "-o", str(tmp_path / "o.nc")]) == 2
    _one_line(capsys, message)
    assert time.perf_counter() - start < 20
    assert not (tmp_path / "o.nc").exists() and not run_directory(tmp_path / "o.nc").exists()


def test_an_internal_error_is_one_line_with_the_traceback_under_debug(write_scenario, tmp_path, capsys,
                                                                       monkeypatch):
    from stochthermo.engine import _run

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(_run, "simulate", broken)
    path = write_scenario(SMALL)
    assert main(["run", str(path), "-q", "-o", str(tmp_path / "o.nc")]) == 2
    _one_line(capsys, "internal error", "ZeroDivisionError: a bug", "report", "--debug")
    assert main(["--debug", "run", str(path), "-q", "-o", str(tmp_path / "o.nc")]) == 2
    assert "Traceback" in capsys.readouterr().err


# ---- plugins checked while they run -------------------------------------------------------------------------
class WrongShape(Observer):
    """Returns a variable of the wrong shape. A required parameter keeps it out of the load-time check (which
    builds an observer without parameters), so the check when its task finishes is what finds it."""

    name = "wrong_shape"

    def __init__(self, *, level: float):
        self.level = level

    def variables(self):
        return {"level": Variable(("time",), "a level", "1", "L", "-"),
                "other": Variable((), "another", "1", "O", "-")}

    def observe(self, run, measured):
        return {"level": np.zeros(3), "other": np.float64(1.0)}


class MissingVariable(WrongShape):
    name = "missing_variable"

    def observe(self, run, measured):
        return {"level": np.zeros(len(run.times))}


class SignError(ForwardProcess):
    """The cosine process with its velocity multiplied by ``factor`` (−1: a sign error): it does not carry P_τ to
    its own marginals. A required parameter keeps it out of the load-time check (which builds a class without
    parameters), so the check while it runs is what finds it."""

    name = "sign_error"
    CONTEXT = frozenset({"data", "prior", "tau"})

    def __init__(self, *, data, prior, tau, factor: float):
        from stochthermo_plugins.processes import Scheduled
        from stochthermo_plugins.schedules import Cosine

        super().__init__(data=data, prior=prior, tau=tau)
        self.inner = Scheduled(data=data, prior=prior, tau=tau, schedule=Cosine())
        self.factor = factor

    conservative = True

    def velocity(self, t, x):
        return self.factor * self.inner.velocity(t, x)

    def temperature(self, t):
        return self.inner.temperature(t)

    def end_distribution(self):
        return self.inner.end_distribution()

    def marginal(self, t):
        return self.inner.marginal(t)


class Faulty:
    @hookimpl
    def stochthermo_register_observers(self):
        return [WrongShape, MissingVariable]

    @hookimpl
    def stochthermo_register_processes(self):
        return [SignError]


@pytest.fixture
def faulty_registry(monkeypatch):
    return use_registry(monkeypatch, faulty=Faulty())


@pytest.mark.parametrize("observer, message", [
    ({"name": "wrong_shape", "level": 1.0},
     "observer 'wrong_shape' returned 'level' of shape (3,); it declares (time,) = (9,)"),
    ({"name": "missing_variable", "level": 1.0},
     "observer 'missing_variable' did not return its declared variable 'other'"),
])
def test_an_observer_is_held_to_its_declaration_when_its_task_finishes(observer, message, faulty_registry,
                                                                       write_scenario, tmp_path, capsys):
    path = write_scenario(scenario_dict(time_steps=8, particles=64, observers=[observer]))
    assert main(["run", str(path), "-q", "-o", str(tmp_path / "o.nc")]) == 1
    _one_line(capsys, message)
    assert not (tmp_path / "o.nc").exists()


def test_a_process_that_does_not_carry_its_marginals_is_reported(faulty_registry, write_scenario, tmp_path,
                                                                 capsys):
    path = write_scenario(scenario_dict(time_steps=16, particles=256,
                                        protocols={"bad": {"process": {"name": "sign_error", "factor": -1.0}}}))
    assert main(["run", str(path), "-q", "-o", str(tmp_path / "o.nc")]) in (1, 2)
    _one_line(capsys, "process 'sign_error'", "marginal")
    assert not (tmp_path / "o.nc").exists()


class SignErrorAlways(SignError):
    """The same process without parameters: the registry builds it on a test law when it loads, and refuses it."""

    name = "sign_error_always"

    def __init__(self, *, data, prior, tau):
        super().__init__(data=data, prior=prior, tau=tau, factor=-1.0)


def test_a_third_party_process_is_held_to_the_continuity_equation_when_it_loads():
    class Plugin:
        @hookimpl
        def stochthermo_register_processes(self):
            return [SignErrorAlways]

    registry = Registry(entry_points=False, extra={"careless": Plugin()})
    (failure,) = registry.failures
    assert failure.plugin == "careless" and "process 'sign_error_always' fails conformance" in failure.reason
    assert "continuity equation" in failure.reason and "sign_error_always" not in registry.names("process")


class WrongShapeAlways(WrongShape):
    """The wrong-shape observer without parameters: the registry runs it on a tiny scenario when it loads."""

    name = "wrong_shape_always"

    def __init__(self):
        super().__init__(level=1.0)


def test_a_third_party_observer_is_held_to_its_declaration_when_it_loads():
    class Plugin:
        @hookimpl
        def stochthermo_register_observers(self):
            return [WrongShapeAlways]

    registry = Registry(entry_points=False, extra={"careless": Plugin()})
    (failure,) = registry.failures
    assert failure.plugin == "careless" and "observer 'wrong_shape_always' fails conformance" in failure.reason
    assert "returned 'level' of shape (3,)" in failure.reason and "wrong_shape_always" not in registry.names("observer")
    with pytest.raises(ScenarioError, match="observer 'wrong_shape_always' is unavailable: plugin careless"):
        registry.get("observer", "wrong_shape_always")


# ---- interruption and corruption, at random ------------------------------------------------------------------
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(delay=st.floats(0.5, 6.0), kill=st.sampled_from([signal.SIGINT, signal.SIGKILL]),
       corrupt=st.integers(0, 10**9))
def test_a_resumed_run_after_a_kill_and_a_flipped_byte_is_clean_or_refused(delay, kill, corrupt, tmp_path_factory):
    """Kill a run at a random moment, flip a random byte of a random task file, resume: the Dataset is the
    clean run's, or the resume refuses in one line."""
    work = tmp_path_factory.mktemp("kill")
    import yaml

    spec = scenario_dict(time_steps=8, particles=64, seeds=list(range(6)))
    path = work / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    clean, output = work / "clean.nc", work / "o.nc"
    command = [sys.executable, "-m", "stochthermo.cli", "run", str(path), "-q"]
    subprocess.run([*command, "-o", str(clean)], check=True, capture_output=True)
    process = subprocess.Popen([*command, "-o", str(output), "--keep-tasks"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    time.sleep(delay)
    if process.poll() is None:
        process.send_signal(kill)
    process.wait()
    files = sorted(run_directory(output).glob("*.npz"))
    if files:
        target = files[corrupt % len(files)]
        data = bytearray(target.read_bytes())
        data[corrupt % len(data)] ^= 0xFF
        target.write_bytes(bytes(data))
    resumed = subprocess.run([*command, "-o", str(output)], capture_output=True, text=True)
    if resumed.returncode == 0:
        assert_same_run(open_run(output), open_run(clean))
    else:
        assert resumed.returncode == 2 and resumed.stderr.count("\n") == 1, resumed.stderr
    assert not [p for p in work.iterdir() if p.name.startswith(".")], list(work.iterdir())
