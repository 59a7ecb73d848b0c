r"""The ``diffusers`` estimator: a diffusers model (a ``UNet2DModel`` or any model class its config names),
loaded offline from a local directory, as the reverse process's velocity.

``path`` is a pipeline directory (``model_index.json``; the model in its ``unet`` folder, or ``subfolder``) or
a model directory (``config.json``). The model predicts, by the scheduler's ``prediction_type`` (read from the
pipeline's ``scheduler/scheduler_config.json``, or given), with :math:`x = m y + \sigma\varepsilon` of the
variance-preserving schedule (m = √ᾱ, σ = √(1 − ᾱ)):

* ``epsilon``: :math:`\hat\varepsilon`;
* ``v_prediction``: :math:`\hat v = m\varepsilon - \sigma y`, so :math:`\hat\varepsilon = m\hat v + \sigma x`;
* ``sample``: :math:`\hat y`, so :math:`\hat\varepsilon = (x - m\hat y)/\sigma`;

and the noise prediction becomes the velocity :math:`\hat\nu = f + T\hat\varepsilon/\sigma` as for
``torch_module`` (which this estimator is, with a diffusers model inside); below s_0 = 1/N (timestep 0, the
earliest the model was trained at) the model is read at s_0. The model is evaluated at the
*fractional* diffusers timestep k = (t/τ)N − 1 (s_k = (k + 1)/N, the ``diffusers`` schedule's convention),
passed as a float tensor — a Python number would be truncated to an integer by diffusers — in batches of
``batch`` images, in the model's ``dtype`` on the run's device; the engine's vectors are reshaped to the
data's images (capability ``HoldsImages``) and back. The process should be ``scheduled`` with the
``diffusers`` schedule of the same pipeline (``schedule: {name: diffusers, path: ...}``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from stochthermo import ScenarioError, hookimpl
from stochthermo.errors import first_line
from stochthermo.numerics import resolve_dtype
from stochthermo.roles import HoldsImages

from .external import ExternalModel

PREDICTION_TYPES = ("auto", "epsilon", "v_prediction", "sample")


class DiffusersModel(ExternalModel):
    """A diffusers model from a local pipeline or model directory (module docstring)."""

    name = "diffusers"

    def __init__(self, *, process, path: Path, subfolder: str | None = None, prediction_type: str = "auto",
                 batch: int = 256, dtype: str = "float32"):
        super().__init__(process=process)
        if prediction_type not in PREDICTION_TYPES:
            raise ScenarioError(f"must be one of {', '.join(PREDICTION_TYPES)}, got '{prediction_type}'",
                                key="prediction_type")
        if batch < 1:
            raise ScenarioError(f"must be >= 1, got {batch}", key="batch")
        data = process.data
        if not isinstance(data, HoldsImages):
            raise ScenarioError(f"a diffusers model takes images; the data '{data.name}' holds none", key="path")
        scheduler = Path(path) / "scheduler" / "scheduler_config.json"
        steps, configured = _training_settings(scheduler)
        self.prediction_type = configured if prediction_type == "auto" else prediction_type
        if self.prediction_type not in PREDICTION_TYPES[1:]:
            raise ScenarioError(f"unknown prediction_type '{self.prediction_type}' in {scheduler}",
                                key="prediction_type")
        model = load_model(Path(path), subfolder, resolve_dtype(dtype))
        self.epsilon_time_floor = 1 / steps  # timestep k = 0, the earliest the model was trained at
        network = NoisePrediction(model, data.image_layout().shape, self.prediction_type, process, steps, batch)
        self._configure(network, output="epsilon", time="steps", num_train_timesteps=steps, dtype=dtype,
                        source="path")

    def _module(self) -> torch.nn.Module:
        return self.network.model

    def to(self, device, dtype=torch.float64):
        clone = super().to(device, dtype)
        clone.network = self.network.moved(device, self.model_dtype)
        return clone


class NoisePrediction:
    """(timesteps (n,), x (n, d)) -> ε̂ (n, d) of a diffusers model on images of ``shape`` (H, W, C)."""

    def __init__(self, model, shape, prediction_type: str, process, steps: int, batch: int):
        self.model, self.shape, self.prediction_type = model, tuple(shape), prediction_type
        self.process, self.steps, self.batch = process, steps, batch

    def moved(self, device, dtype) -> NoisePrediction:
        return NoisePrediction(self.model.to(device=device, dtype=dtype), self.shape, self.prediction_type,
                               self.process, self.steps, self.batch)

    def __call__(self, timesteps: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        height, width, channels = self.shape
        n = len(x)
        images = x.reshape(n, height, width, channels).permute(0, 3, 1, 2)
        model_dtype = next(self.model.parameters()).dtype
        with torch.no_grad():
            out = torch.cat([self.model(images[i:i + self.batch].to(model_dtype),
                                        timesteps[i:i + self.batch].to(model_dtype)).sample
                             for i in range(0, n, self.batch)])
        prediction = out.to(x.dtype).permute(0, 2, 3, 1).reshape(n, -1)
        if self.prediction_type == "epsilon":
            return prediction
        t = (float(timesteps[0]) + 1) / self.steps * self.process.tau
        moments = self.process.moments(t)
        m, sigma = float(moments.scale), float(moments.variance) ** 0.5
        if self.prediction_type == "v_prediction":
            return m * prediction + sigma * x
        return (x - m * prediction) / sigma  # sample: ŷ


def load_model(path: Path, subfolder: str | None, dtype: torch.dtype):
    """A diffusers model in ``dtype`` from ``path`` (a pipeline: its ``unet`` or ``subfolder``; or a model
    directory), offline."""
    try:
        import diffusers
    except ImportError:
        raise ScenarioError("the diffusers estimator needs diffusers: pip install 'stochthermo[diffusers]'",
                            key="path") from None
    if (path / "model_index.json").is_file():
        subfolder = subfolder or "unet"
    folder = path / subfolder if subfolder else path
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ScenarioError(f"{folder}: not a diffusers model or pipeline directory (no config.json"
                            f"{'' if subfolder else ' or model_index.json'})", key="path")
    try:
        class_name = json.loads(config_file.read_text()).get("_class_name")
    except ValueError:
        raise ScenarioError(f"{config_file}: not a JSON model config", key="path") from None
    model_class = _lazy_attribute(diffusers, str(class_name))
    if not (isinstance(model_class, type) and issubclass(model_class, diffusers.ModelMixin)):
        raise ScenarioError(f"{config_file}: '{class_name}' is not a diffusers model class", key="path")
    try:
        # safetensors where the folder has them (data only); .bin weights are read by diffusers with
        # torch.load(weights_only=True)
        safetensors = any(folder.glob("*.safetensors"))
        return model_class.from_pretrained(str(folder), local_files_only=True, torch_dtype=dtype,
                                           low_cpu_mem_usage=False, use_safetensors=safetensors).eval()
    except (OSError, ValueError, RuntimeError) as exc:
        raise ScenarioError(f"{folder}: the model could not be loaded ({first_line(exc)})",
                            key="path") from None


def _lazy_attribute(module, name: str):
    """``module.name`` for diffusers' lazily imported classes, ``None`` if there is none."""
    try:
        return getattr(module, name)
    except (AttributeError, ImportError, RuntimeError):
        return None


@hookimpl
def stochthermo_register_estimators():
    return [DiffusersModel]


def _training_settings(scheduler: Path) -> tuple[int, str]:
    """``num_train_timesteps`` and ``prediction_type`` of a pipeline's scheduler config (1000 and ``epsilon``
    where the pipeline has none); the forward process itself is the scenario's ``diffusers`` schedule, which
    validates the whole config."""
    if not scheduler.is_file():
        return 1000, "epsilon"
    try:
        config = json.loads(scheduler.read_text())
        steps = config["num_train_timesteps"]
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ScenarioError(f"{scheduler}: not a scheduler config with num_train_timesteps ({type(exc).__name__})",
                            key="path") from None
    if not isinstance(steps, int) or steps < 1:
        raise ScenarioError(f"{scheduler}: num_train_timesteps must be a positive integer, got {steps!r}", key="path")
    return steps, config.get("prediction_type", "epsilon")
