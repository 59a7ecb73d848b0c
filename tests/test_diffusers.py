"""The ``diffusers`` schedule against diffusers' own schedulers (a test-only oracle: never a runtime dependency).

diffusers computes its betas in float32; the engine recomputes them in float64, so the discrete ᾱ_k agree to
float32 resolution. The continuous schedule's distance to the discrete one is the measured bound stated in
plugins/diffusers_schedule.py.
"""

import json

import numpy as np
import pytest
import torch

from conftest import run_dict, scenario_dict
from stochthermo.errors import ScenarioError
from stochthermo.testing import check_schedule
from stochthermo_plugins.schedules import Diffusers, VPLinear

diffusers = pytest.importorskip("diffusers")

DDPM = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear"}


def _oracle(**config):
    return diffusers.DDPMScheduler(**config).alphas_cumprod.double().numpy()


@pytest.mark.parametrize("config, bound", [  # bound: the largest |m(s_k) − sqrt(ᾱ_k)|, measured (docstring)
    (DDPM, 1.0e-3),
    ({"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"},
     8.5e-4),
    ({"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2"}, 5.0e-5),
    ({"num_train_timesteps": 500, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear"}, 1.6e-3),
])
def test_discrete_schedule_matches_ddpm_scheduler_and_closed_form_stays_within_its_bound(config, bound):
    schedule = Diffusers(**config)
    np.testing.assert_allclose(schedule.alphas_cumprod, _oracle(**config), rtol=2e-5, atol=1e-7)  # float32 there
    assert schedule.continuous == "closed_form"
    assert schedule.discrete_error <= bound, schedule.discrete_error
    check_schedule(schedule)


def test_linear_closed_form_is_vp_linear_with_n_times_the_betas():
    schedule, vp = Diffusers(**DDPM), VPLinear(beta_min=0.1, beta_max=20.0)
    s = torch.linspace(0, 1, 101, dtype=torch.float64)
    for name in ("m", "sigma", "dm", "dsigma2", "temperature"):
        torch.testing.assert_close(getattr(schedule, name)(s), getattr(vp, name)(s), rtol=1e-12, atol=1e-12)


def test_interpolation_is_exact_at_the_timesteps_and_zero_terminal_snr_reaches_m_zero():
    config = {**DDPM, "rescale_betas_zero_snr": True}
    schedule = Diffusers(**config)
    assert schedule.continuous == "interpolated" and schedule.discrete_error < 1e-15
    np.testing.assert_allclose(schedule.alphas_cumprod, _oracle(**config), rtol=2e-5, atol=1e-7)
    assert float(schedule.m(torch.ones(1, dtype=torch.float64))) == 0.0
    check_schedule(schedule)
    trained = Diffusers(num_train_timesteps=4, trained_betas=[0.1, 0.2, 0.3, 0.4])
    s = torch.tensor([0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
    torch.testing.assert_close(trained.m(s) ** 2, torch.tensor(np.cumprod([0.9, 0.8, 0.7, 0.6])), rtol=1e-14,
                               atol=0)
    check_schedule(trained)


@pytest.mark.parametrize("scheduler", ["DDPMScheduler", "DDIMScheduler", "EulerDiscreteScheduler"])
def test_saved_scheduler_and_pipeline_directories_are_read(scheduler, tmp_path):
    getattr(diffusers, scheduler)(**DDPM).save_pretrained(tmp_path / "pipeline" / "scheduler")
    (tmp_path / "pipeline" / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline"}))
    for path in (tmp_path / "pipeline", tmp_path / "pipeline" / "scheduler",
                 tmp_path / "pipeline" / "scheduler" / "scheduler_config.json"):
        np.testing.assert_array_equal(Diffusers(path=path).alphas_cumprod, Diffusers(**DDPM).alphas_cumprod)


def test_a_scenario_on_the_diffusers_schedule_runs_and_its_relations_hold():
    spec = scenario_dict(time_steps=32, particles=512,
                         protocols={"ddpm": {"process": {"name": "scheduled",
                                                         "schedule": {"name": "diffusers", **DDPM}}}})
    ds = run_dict(spec)
    assert (ds.holds_response == 1).all() and (ds.holds_kinetic_cost == 1).all()


@pytest.mark.parametrize("make, message", [
    (lambda tmp: {"path": str(tmp / "missing")}, "not a diffusers scheduler or pipeline directory"),
    (lambda tmp: {"path": str(tmp / "missing.json")}, "no such file"),
    (lambda tmp: {"path": _write(tmp, {"_class_name": "UNet2DModel"})}, "is not a DDPM-betas scheduler"),
    (lambda tmp: {"path": _write(tmp, {"_class_name": "DDPMScheduler"})}, "lacks num_train_timesteps"),
    (lambda tmp: {"beta_schedule": "cosine"}, "must be one of linear, scaled_linear, squaredcos_cap_v2"),
    (lambda tmp: {"trained_betas": [0.1, 0.2], "num_train_timesteps": 3}, "2 trained betas for"),
    (lambda tmp: {"continuous": "closed_form", "rescale_betas_zero_snr": True}, "no closed-form continuous limit"),
])
def test_bad_input_names_the_key_and_path(make, message, tmp_path, write_scenario, capsys):
    from stochthermo.cli import main

    schedule = {"name": "diffusers", **make(tmp_path)}
    path = write_scenario(scenario_dict(protocols={"ddpm": {"process": {"name": "scheduled", "schedule": schedule}}}))
    assert main(["run", str(path), "-o", str(tmp_path / "o.nc")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "protocols.ddpm.process.schedule" in err and message in err, err
    assert not (tmp_path / "o.nc").exists()


def _write(tmp_path, config) -> str:
    path = tmp_path / "scheduler_config.json"
    path.write_text(json.dumps(config))
    return str(path)


def test_direct_construction_errors_are_scenario_errors():
    with pytest.raises(ScenarioError, match="num_train_timesteps: must be an integer >= 2"):
        Diffusers(num_train_timesteps=1)
