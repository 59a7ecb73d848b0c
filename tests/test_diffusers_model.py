"""The ``diffusers`` estimator on a small randomly initialised UNet2DModel saved as a pipeline directory: the
velocity it gives equals the formula applied to the model called directly (every prediction type), the
model sees fractional float timesteps, and bad directories are one-line errors. diffusers is a test-only
dependency here (the estimator's optional extra)."""

import json

import pytest
import torch
import yaml

from conftest import scenario_dict
from stochthermo.cli import main
from stochthermo.engine._build import parse_scenario

diffusers = pytest.importorskip("diffusers")

DDPM = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear"}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                                 block_out_channels=(8, 16), norm_num_groups=4,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"))
    unet.save_pretrained(root / "unet")
    diffusers.DDPMScheduler(**DDPM).save_pretrained(root / "scheduler")
    (root / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline",
                                                       "unet": ["diffusers", "UNet2DModel"],
                                                       "scheduler": ["diffusers", "DDPMScheduler"]}))
    return root, unet.double().eval()


def _spec(root, **estimator):
    return scenario_dict(data={"name": "images", "normalise": "standardise", "size": 64, "seed": 0},
                         prior={"name": "gaussian", "dim": 64},
                         perturbations={"narrow": {"name": "gaussian", "dim": 64, "std": 0.9}},
                         protocols={"ddpm": {"process": {"name": "scheduled",
                                                         "schedule": {"name": "diffusers", "path": str(root)}}}},
                         estimator={"name": "diffusers", "path": str(root), "dtype": "float64", **estimator})


def _estimator(root, **settings):
    scenario = parse_scenario(yaml.safe_dump(_spec(root, **settings)))
    return next(iter(scenario.setup.protocols.values())).estimator


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_velocity_is_the_formula_applied_to_the_model(pipeline, prediction_type):
    root, unet = pipeline
    estimator = _estimator(root, prediction_type=prediction_type, batch=5)
    process = estimator.process
    x = torch.randn(12, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    t = 0.4037  # timestep k = 402.7: fractional
    k = torch.full((12,), t * 1000 - 1, dtype=torch.float64)
    out = unet(x.reshape(12, 8, 8, 1).permute(0, 3, 1, 2), k).sample.permute(0, 2, 3, 1).reshape(12, 64).detach()
    moments = process.moments(t)
    m, sigma = float(moments.scale), float(moments.variance) ** 0.5
    epsilon = {"epsilon": out, "v_prediction": m * out + sigma * x, "sample": (x - m * out) / sigma}[prediction_type]
    expected = process.force_field(t, x) + float(process.temperature(torch.tensor(t, dtype=torch.float64))) \
        * epsilon / sigma
    torch.testing.assert_close(estimator.velocity(t, x), expected, rtol=1e-10, atol=1e-10)


def test_timesteps_are_not_truncated(pipeline, monkeypatch):
    """The model receives the fractional timestep k = (t/τ)N − 1 = 402.7 at t = 0.4037, not 402 (the velocity
    alone would not tell: its m_t and σ_t change with t whatever timestep the network sees)."""
    root, unet = pipeline
    estimator = _estimator(root)
    seen = []
    original = type(unet).forward

    def spy(self, sample, timestep, *args, **kwargs):
        seen.append(torch.as_tensor(timestep).detach().to(torch.float64).clone())
        return original(self, sample, timestep, *args, **kwargs)

    monkeypatch.setattr(type(unet), "forward", spy)
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    estimator.velocity(0.4037, x)
    assert seen and all(torch.allclose(k, torch.full_like(k, 402.7), rtol=0, atol=1e-9) for k in seen)


@pytest.mark.parametrize("change, message", [
    (lambda root: {"path": str(root / "nowhere")}, "not a diffusers model or pipeline directory"),
    (lambda root: {"path": str(_config_folder(root, {"_class_name": "DDPMScheduler"}))},
     "'DDPMScheduler' is not a diffusers model class"),
    (lambda root: {"path": str(root), "prediction_type": "flow"}, "estimator.prediction_type: must be one of"),
])
def test_bad_input(pipeline, change, message, write_scenario, tmp_path, capsys):
    root, _ = pipeline
    spec = _spec(root)
    spec["estimator"] = {"name": "diffusers", **change(root)}
    path = write_scenario(spec)
    assert main(["run", str(path), "-o", str(tmp_path / "o.nc")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "o.nc").exists()


def _config_folder(root, config):
    folder = root / "not_a_model"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder
