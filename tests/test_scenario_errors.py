"""Bad input: one line naming the file, the key and the problem; exit status 2; no traceback; no output."""

import subprocess
import sys

import pytest
import torch

from conftest import scenario_dict, use_registry
from stochthermo import ForwardProcess, Schedule, hookimpl
from stochthermo.cli import main
from stochthermo.engine._build import load_scenario
from stochthermo.errors import ScenarioError

CASES = {
    "malformed YAML": ("tau: [1.0\nparticles: 3", "invalid YAML: line"),
    "unknown key": ({"taus": 1.0}, "taus: unknown key (did you mean 'tau'?)"),
    "unknown plugin": ({"protocols": {"c": {"process": {"name": "scheduled", "schedule": "cosin"}}}},
                       "protocols.c.process.schedule: unknown schedule 'cosin' (did you mean 'cosine'?)"),
    "unknown parameter": ({"prior": {"name": "gaussian", "mean": 0.0, "sd": 1.0}},
                          "prior.sd: distribution 'gaussian' has no parameter 'sd' (did you mean 'std'?)"),
    "wrong type": ({"particles": "many"}, "particles: expected an integer, got 'many'"),
    "odd antithetic": ({"particles": 101, "particle_sampling": "antithetic"},
                       "particles: antithetic particles come in mirror pairs: needs an even number, got 101"),
    "wrong parameter type": ({"perturbations": {"p": {"name": "gaussian", "mean": "one"}}},
                             "perturbations.p.mean: expected float | list[float], got 'one'"),
    "tau <= 0": ({"tau": 0.0}, "tau: must be > 0, got 0.0"),
    "odd time steps": ({"time_steps": 65}, "time_steps: must be an even number"),
    "weights": ({"data": {"name": "gaussian_mixture", "weights": [0.5, 0.6], "means": [0.0, 1.0],
                          "stds": [1.0, 1.0]}}, "data.weights: weights must sum to 1, they sum to 1.1"),
    "std <= 0": ({"perturbations": {"p": {"name": "gaussian", "mean": 0.0, "std": -0.8}}},
                 "perturbations.p.std: standard deviation must be > 0, got -0.8"),
    "mixture std <= 0": ({"data": {"name": "gaussian_mixture", "weights": [0.5, 0.5], "means": [0.0, 1.0],
                                   "stds": [0.3, 0.0]}}, "data.stds: standard deviations must be > 0"),
    "dimension mismatch": ({"perturbations": {"p": {"name": "gaussian", "mean": [0.0, 0.0]}}},
                           "perturbations.p: dimension 2 differs from the data's 1"),
    "missing section": ({"protocols": None}, "protocols: required key is missing"),
    "empty section": ({"perturbations": {}}, "perturbations: expected a non-empty mapping"),
    "missing producer": ({"observers": ["bounds", "response"]},
                         "observers[0]: observer 'bounds' consumes path_length_cost, kinetic_cost, geodesic_cost, "
                         "dissipation of observer 'thermodynamics', which the scenario does not list"),
    "unknown solver": ({"solver": "rk5"}, "solver: unknown solver 'rk5' (did you mean 'rk4'?)"),
    "solver parameter": ({"solver": {"name": "rk4", "steps_per_save": 0}}, "solver.steps_per_save: must be >= 1"),
    "exact solver without a map": ({"solver": "exact", "estimator": {"name": "exact", "score_scale": 0.5},
                                    "protocols": {"vp": {"process": {"name": "scheduled",
                                                                     "schedule": "ornstein_uhlenbeck"}}}},
                                   "solver: solver 'exact' cannot integrate protocol 'vp': "
                                   "process 'scheduled' gives no exact flow map"),
    "reference label": ({"reference": {"response": {"cosin": {"shifted": 0.1}}}},
                        "reference.response.cosin: unknown protocol 'cosin' (did you mean 'cosine'?)"),
}


def _spec(change):
    if isinstance(change, str):
        return change
    spec = scenario_dict(output="out.nc")
    spec.update(change)
    return {k: v for k, v in spec.items() if v is not None}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_no_output(case, write_scenario, capsys, tmp_path, monkeypatch):
    change, expected = CASES[case]
    path = write_scenario(_spec(change))
    monkeypatch.chdir(tmp_path)
    status = main(["run", str(path), "-o", str(tmp_path / "out.nc")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"stochthermo: error: {path}: "), err
    assert expected in err, err
    assert not (tmp_path / "out.nc").exists() and not list(tmp_path.glob(".out.nc*"))


def test_console_script_reports_without_traceback(write_scenario, tmp_path):
    path = write_scenario(_spec({"tau": -1.0}))
    proc = subprocess.run([sys.executable, "-m", "stochthermo.cli", "run", str(path), "-o", str(tmp_path / "o.nc")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"stochthermo: error: {path}: tau: must be > 0, got -1.0"
    assert not (tmp_path / "o.nc").exists()


def test_missing_file(capsys, tmp_path):
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: cannot read scenario: No such file or directory" in capsys.readouterr().err


class NegativeTemperature(Schedule):
    """σ = s (1 − shrink·s/2)² : with shrink > 1, σ/m decreases late in the process, i.e. T < 0 there.
    Its default (shrink = 0, cond-OT) passes conformance, so it registers; a scenario can still ask for a
    bad value."""

    name = "negative_temperature"

    def __init__(self, shrink: float = 0.0):
        self.shrink = shrink

    def m(self, s):
        return 1 - s

    def sigma(self, s):
        return s * (1 - 0.5 * self.shrink * s) ** 2

    def dm(self, s):
        return -torch.ones_like(s)

    def dsigma(self, s):
        return (1 - 0.5 * self.shrink * s) ** 2 - self.shrink * s * (1 - 0.5 * self.shrink * s)


class ExplodingProcess(ForwardProcess):
    """A process whose velocity is NaN before t = ``onset`` τ (a broken plugin). Its required parameter keeps
    it out of the load-time conformance check (which would refuse it: tests/test_trust.py), so the run meets it."""

    name = "exploding"

    def __init__(self, *, data, prior, tau, onset: float):
        super().__init__(data=data, prior=prior, tau=tau)
        self.onset = onset

    @property
    def conservative(self):
        return True

    def velocity(self, t, x):
        return x * (float("nan") if t < self.onset * self.tau else 1.0)

    def temperature(self, t):
        return torch.ones_like(t)

    def end_distribution(self):
        return self.prior


class TestPlugins:
    @hookimpl
    def stochthermo_register_schedules(self):
        return [NegativeTemperature]

    @hookimpl
    def stochthermo_register_processes(self):
        return [ExplodingProcess]


@pytest.fixture
def test_registry(monkeypatch):
    return use_registry(monkeypatch, test_plugins=TestPlugins())


def test_schedule_with_negative_temperature(write_scenario, test_registry, capsys, tmp_path):
    schedule = {"name": "negative_temperature", "shrink": 1.9}
    path = write_scenario(_spec({"protocols": {"bad": {"process": {"name": "scheduled", "schedule": schedule}}}}))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert main(["run", str(path), "-o", str(tmp_path / "out.nc")]) == 2
    assert capsys.readouterr().err == f"stochthermo: error: {info.value}\n"
    assert not (tmp_path / "out.nc").exists()
    message = str(info.value)
    assert message.startswith(f"{path}: protocols.bad.process.schedule: schedule 'negative_temperature' has "
                              "negative temperature"), message
    assert "(Eq. (24))" in message


def test_non_finite_result_names_protocol_time_and_quantity(write_scenario, test_registry, capsys, tmp_path):
    path = write_scenario(_spec({"protocols": {"broken": {"process": {"name": "exploding", "onset": 0.5}}},
                                 "time_steps": 8}))
    status = main(["run", str(path), "-o", str(tmp_path / "out.nc")])
    err = capsys.readouterr().err
    assert status == 1
    assert "run failed: non-finite T_t dS_t^tot/dt" in err and "protocol 'broken'" in err, err
    assert "t in [0, 0.375] (4 of 9 grid times)" in err, err
    assert not (tmp_path / "out.nc").exists()


def test_validate_reports_valid(write_scenario, capsys):
    assert main(["validate", str(write_scenario(scenario_dict()))]) == 0
    assert "valid (1 protocols, 1 perturbations" in capsys.readouterr().out



def test_first_line_of_an_exception_message():
    """One-line errors quote a library's message by its first non-empty line, and say so when it has none
    (before, an empty message raised IndexError inside the error path)."""
    from stochthermo.errors import first_line

    assert first_line(RuntimeError("\n  reader failed: bad zip  \nTraceback (most recent call last):\n")) == \
        "reader failed: bad zip"
    assert first_line(AssertionError()) == "no message"
    assert first_line(OSError(""), "no answer") == "no answer"


def test_validate_takes_overrides_and_prints_the_resolved_scenario(write_scenario, capsys):
    import yaml

    path = write_scenario(scenario_dict())
    assert main(["validate", str(path), "--set", "particles=8"]) == 2  # the override is checked as a run's would be
    assert "particles: must be >= 16, got 8" in capsys.readouterr().err
    assert main(["validate", str(path), "--set", "particles=64", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["particles"] == 64
    assert main(["run", str(path), "--set", "tau=2.0", "--print-config"]) == 0  # prints, runs nothing
    assert yaml.safe_load(capsys.readouterr().out)["tau"] == 2.0
