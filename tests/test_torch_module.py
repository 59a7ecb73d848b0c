"""The ``torch_module`` estimator: an external model's velocity, score or noise prediction turned into the
probability-flow velocity. Models that return the *exact* quantities for Gaussian data under the VP schedule
must reproduce the process's exact velocity to rounding (float64 models), through a callable, a torch.export
program and a TorchScript file, and the estimation observer then finds L = 0."""

import json
import os
import sys

import pytest
import torch

from conftest import run_dict, scenario_dict
from stochthermo.cli import main
from stochthermo.engine._build import parse_scenario

MEAN, STD = 0.4, 0.7  # the data N(MEAN, STD²)
BETA_MIN, BETA_MAX = 0.1, 20.0  # vp_linear's defaults
SPEC = {"data": {"name": "gaussian", "mean": MEAN, "std": STD},
        "protocols": {"vp": {"process": {"name": "scheduled", "schedule": "vp_linear"}}}}


def _moments(t: torch.Tensor):
    """m_t and v_t = σ_t² of vp_linear (τ = 1)."""
    integral = BETA_MIN * t + 0.5 * (BETA_MAX - BETA_MIN) * t**2
    return torch.exp(-0.5 * integral), -torch.expm1(-integral)


def exact_epsilon(t, x):
    """E[ε | x_t = x] for the data N(MEAN, STD²): σ (x − m μ) / (m² c² + σ²)."""
    m, v = _moments(t[:, None])
    return v.sqrt() * (x - m * MEAN) / (m**2 * STD**2 + v)


def exact_score(t, x):
    m, v = _moments(t[:, None])
    return -(x - m * MEAN) / (m**2 * STD**2 + v)


def exact_velocity(t, x):
    """ν = f − T ∇ln P with f = −β x / 2, T = β / 2."""
    beta = (BETA_MIN + (BETA_MAX - BETA_MIN) * t)[:, None]
    return -0.5 * beta * x - 0.5 * beta * exact_score(t, x)


def wrong_shape(t, x):
    return x[:, :0]


class ExactEpsilon(torch.nn.Module):
    """The exact noise predictor as a network with trainable parameters (as every trained network has: its
    outputs require grad)."""

    def __init__(self):
        super().__init__()
        self.beta_min, self.beta_max = BETA_MIN, BETA_MAX
        self.mean = torch.nn.Parameter(torch.tensor(MEAN, dtype=torch.float64))
        self.std = torch.nn.Parameter(torch.tensor(STD, dtype=torch.float64))

    def forward(self, t, x):
        integral = self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2
        m, v = torch.exp(-0.5 * integral)[:, None], -torch.expm1(-integral)[:, None]
        return v.sqrt() * (x - m * self.mean) / (m**2 * self.std**2 + v)


exact_epsilon_module = ExactEpsilon()


def _estimator(**settings):
    spec = scenario_dict(**SPEC, estimator={"name": "torch_module", "dtype": "float64", **settings})
    import yaml

    scenario = parse_scenario(yaml.safe_dump(spec))
    return next(iter(scenario.setup.protocols.values())).estimator


@pytest.mark.parametrize("output, model", [("velocity", "exact_velocity"), ("score", "exact_score"),
                                           ("epsilon", "exact_epsilon")])
def test_exact_outputs_give_the_exact_velocity(output, model):
    estimator = _estimator(model=f"test_torch_module:{model}", output=output)
    x = torch.linspace(-3, 3, 41, dtype=torch.float64)[:, None]
    for t in (0.05, 0.3, 0.7, 1.0):
        torch.testing.assert_close(estimator.velocity(t, x), estimator.process.velocity(t, x), rtol=1e-9,
                                   atol=1e-11)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_file_and_unit_time(tmp_path):
    path = tmp_path / "epsilon.pt"
    torch.jit.script(ExactEpsilon()).save(str(path))
    estimator = _estimator(file=str(path), output="epsilon")
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)[:, None]
    torch.testing.assert_close(estimator.velocity(0.4, x), estimator.process.velocity(0.4, x), rtol=1e-9, atol=1e-11)
    unit = _estimator(model="test_torch_module:exact_velocity", time="unit")
    torch.testing.assert_close(unit.velocity(0.4, x), estimator.velocity(0.4, x), rtol=1e-9, atol=1e-11)  # τ = 1


def _export(path, batch_dimension=True):
    """ExactEpsilon as a torch.export program in ``path``, with a dynamic batch dimension or a fixed one (3)."""
    example = (torch.rand(3, dtype=torch.float64), torch.rand(3, 1, dtype=torch.float64))
    batch = torch.export.Dim("batch")
    shapes = {"t": {0: batch}, "x": {0: batch}} if batch_dimension else None
    torch.export.save(torch.export.export(ExactEpsilon(), example, dynamic_shapes=shapes), str(path))
    return path


def test_exported_program_file(tmp_path):
    estimator = _estimator(file=str(_export(tmp_path / "epsilon.pt2")), output="epsilon")
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)[:, None]
    for t in (0.05, 0.4, 1.0):
        torch.testing.assert_close(estimator.velocity(t, x), estimator.process.velocity(t, x), rtol=1e-9,
                                   atol=1e-11)


@pytest.mark.parametrize("model", ["exact_epsilon", "exact_epsilon_module"])
def test_estimation_observer_finds_no_residual_for_an_exact_model(model):
    """An exact noise model (a function, and a module with parameters): the residual L of Eq. (100) vanishes
    (to the 1e-6 τ floor at t = 0, where the noise model is read just after 0), D_t stays D_0, and the bound
    holds."""
    ds = run_dict(scenario_dict(**SPEC, time_steps=32, particles=512,
                                estimator={"name": "torch_module", "model": f"test_torch_module:{model}",
                                           "output": "epsilon", "dtype": "float64"},
                                observers=["thermodynamics", "response", "estimation"]))
    # the only residual is the read at t = 1e-6 τ instead of 0: the rate there is |δν|² ≈ (1e-6 τ ∂_tν)², and
    # |∂_tν| ≤ 10 for vp_linear (β ≤ 20) on these x, so ≤ 1e-10; L is that rate's trapezoidal share of the
    # first step (Δt/2 = 1/64) and nothing else (measured: rate 6.8e-11, L = 7.1e-13, the documented figure)
    rate = ds.estimation_residual_rate
    assert float(rate.isel(time=0).max()) < 1e-10
    assert float(ds.estimation_residual.max()) <= float(rate.isel(time=0).max()) / 64 * (1 + 1e-9)
    assert float(rate.isel(time=slice(1, None)).max()) < 1e-25  # float64 rounding of |ν|² ≈ 1
    d_0 = ds.chi_square.values[..., None]
    assert float(abs(ds.estimated_divergence / d_0 - 1).max()) < 1e-4
    assert (ds.holds_imperfect_estimation == 1).all()


@pytest.mark.parametrize("settings, message", [
    ({}, "estimator.model: give either 'model'"),
    ({"model": "no_such_package.models:net"}, "estimator.model: cannot import 'no_such_package.models'"),
    ({"model": "test_torch_module:missing"}, "estimator.model: module 'test_torch_module' has no 'missing'"),
    ({"model": "test_torch_module"}, "estimator.model: expected package.module:name"),
    ({"model": "test_torch_module:wrong_shape"}, "must return a tensor of the shape of x"),
    ({"model": "test_torch_module:exact_score", "output": "logits"}, "estimator.output: must be one of"),
    ({"file": "missing.pt"}, "estimator.file:"),
    ({"file": "notes.pt2"}, "notes.pt2: not a torch.export program (BadZipFile"),
    ({"file": "fixed.pt2", "output": "epsilon"}, "estimator.file: calling the model at (t, x) of shapes (4,), (4, 1) "
                                                 "failed: AssertionError: Guard failed"),
])
def test_bad_input(settings, message, write_scenario, tmp_path, capsys):
    (tmp_path / "notes.pt2").write_text("not a program")
    _export(tmp_path / "fixed.pt2", batch_dimension=False)  # exported for batches of 3 only
    path = write_scenario(scenario_dict(**SPEC, estimator={"name": "torch_module", "dtype": "float64", **settings}))
    assert main(["run", str(path), "-o", str(tmp_path / "o.nc")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "o.nc").exists()


def test_a_score_needs_a_finite_force():
    spec = scenario_dict(estimator={"name": "torch_module", "model": "test_torch_module:exact_score",
                                    "output": "score"})
    import yaml

    from stochthermo.errors import ScenarioError

    with pytest.raises(ScenarioError, match="needs a finite force and temperature"):
        parse_scenario(yaml.safe_dump(spec))


class _TouchOnUnpickle:
    """Unpickling this object creates the file ``path``: the stand-in for arbitrary code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        from pathlib import Path

        return Path.touch, (Path(self.path),)


def _rewrite(archive_path, replace):
    """Rewrite the members of a zip archive: ``replace(inner_name, data) -> data``."""
    import zipfile

    with zipfile.ZipFile(archive_path) as archive:
        members = [(info, archive.read(info.filename)) for info in archive.infolist()]
    with zipfile.ZipFile(archive_path, "w") as archive:
        for info, data in members:
            archive.writestr(info, replace(info.filename.split("/", 1)[1], data))


@pytest.mark.parametrize("vector", ["pickled_weight", "sample_inputs", "compiled_library", "legacy_weights",
                                    "second_root"])
def test_a_crafted_program_is_refused_before_anything_is_unpickled(vector, tmp_path, write_scenario, capsys):
    """A .pt2 whose reading would run code (a weight marked use_pickle, sample inputs the restricted unpickler
    refuses, a shared library) is refused in one line; the payload's side effect never happens."""
    import io
    import json
    import pickle

    marker = tmp_path / "pwned"
    path = _export(tmp_path / "model.pt2")
    payload = pickle.dumps(_TouchOnUnpickle(marker))

    def replace(inner, data):
        if vector == "pickled_weight" and inner == "data/weights/model_weights_config.json":
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            return json.dumps(config).encode()
        if vector == "pickled_weight" and inner == "data/weights/weight_0":
            buffer = io.BytesIO()
            torch.save(_TouchOnUnpickle(marker), buffer)
            return buffer.getvalue()
        if vector == "sample_inputs" and inner.startswith("data/sample_inputs/"):
            buffer = io.BytesIO()
            torch.save(_TouchOnUnpickle(marker), buffer)
            return buffer.getvalue()
        return data

    _rewrite(path, replace)
    extra = {"compiled_library": "model/data/aotinductor/model/model.so",
             # torch unpickles this name as a legacy state dict, even when a config lists it as raw
             "legacy_weights": "model/data/weights/model.pt", "second_root": "other/data/weights/weight_0"}
    if vector in extra:
        import zipfile

        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr(extra[vector], payload)
    scenario = write_scenario(scenario_dict(**SPEC, estimator={"name": "torch_module", "dtype": "float64",
                                                               "file": str(path), "output": "epsilon"}))
    for command in (["validate", str(scenario)], ["run", str(scenario), "-o", str(tmp_path / "o.nc")]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "model.pt2: " in err and "refused, the file is not read" in err, err
    assert not marker.exists() and not (tmp_path / "o.nc").exists()


# ---- EDM conventions: VE processes, the denoiser, the noise level as time ------------------------------------
SIGMA_MAX = 10.0  # ve's default: m = 1, σ_t = σ_max t/τ


def exact_denoiser(sigma, x):
    """EDM's D(x; σ) = E[y | y + σε = x] for the data N(MEAN, STD²), handed the noise level σ."""
    sigma = sigma[:, None]
    return MEAN + STD**2 / (STD**2 + sigma**2) * (x - MEAN)


def exact_denoiser_c_noise(c_noise, x):
    return exact_denoiser(torch.exp(4 * c_noise), x)


def exact_vp_denoiser(t, x):
    """D(x_t/m_t; t) for vp_linear (time: forward): E[y | x_t] from the scaled input x_t/m_t = y + (√v/m) ε."""
    m, v = _moments(t[:, None])
    sigma2 = v / m**2
    return MEAN + STD**2 / (STD**2 + sigma2) * (x - MEAN)


@pytest.mark.parametrize("schedule, model, time", [("ve", "exact_denoiser", "sigma"),
                                                   ("ve", "exact_denoiser_c_noise", "c_noise"),
                                                   ("edm", "exact_denoiser", "sigma"),
                                                   ("edm", "exact_denoiser_c_noise", "c_noise"),
                                                   ("ve_geometric", "exact_denoiser", "sigma"),
                                                   ("vp_linear", "exact_vp_denoiser", "forward")])
def test_an_exact_edm_denoiser_gives_the_exact_velocity(schedule, model, time):
    spec = scenario_dict(data=SPEC["data"], protocols={"p": {"process": {"name": "scheduled", "schedule": schedule}}},
                         estimator={"name": "torch_module", "dtype": "float64", "model": f"test_torch_module:{model}",
                                    "output": "denoiser", "time": time})
    import yaml

    estimator = next(iter(parse_scenario(yaml.safe_dump(spec)).setup.protocols.values())).estimator
    x = torch.linspace(-3, 3, 41, dtype=torch.float64)[:, None]
    # the score −(x − D)/σ² of a denoiser cancels x − D ~ σ²/s² x: relative rounding ε s²/σ², so times with
    # σ² ≳ 1e-6 (edm: σ = 80 (t/τ)^7 is 6e-8 at t/τ = 0.05, where the rounding is the whole velocity)
    for t in (0.05, 0.3, 0.7, 1.0) if schedule != "edm" else (0.3, 0.7, 1.0):
        expected = estimator.process.velocity(t, x)
        scale = float(expected.abs().max())
        torch.testing.assert_close(estimator.velocity(t, x), expected, rtol=1e-9, atol=1e-9 * scale)


def test_edm_times_need_a_gaussian_conditional_law(write_scenario, capsys):
    spec = scenario_dict(protocols={"ot": {"process": "optimal_transport"}},
                         estimator={"name": "torch_module", "model": "test_torch_module:exact_velocity",
                                    "time": "sigma"})
    assert main(["validate", str(write_scenario(spec))]) == 2
    assert "estimator.time: time 'sigma' (the noise level sqrt(v_t)/m_t) needs a Gaussian conditional law" in \
        capsys.readouterr().err


class ExactEpsilonWithDropout(ExactEpsilon):
    """The exact noise predictor behind a dropout and a batch norm whose running statistics are the identity:
    in training mode its output is random and batch-dependent; the estimator puts it in evaluation mode."""

    def __init__(self):
        super().__init__()
        self.dropout = torch.nn.Dropout(0.5)
        self.norm = torch.nn.BatchNorm1d(1, affine=False, eps=0.0).double()  # running mean 0, variance 1

    def forward(self, t, x):
        return self.norm(self.dropout(super().forward(t, x)))


exact_epsilon_in_training_mode = ExactEpsilonWithDropout().train()


def test_a_module_in_training_mode_is_evaluated_in_evaluation_mode():
    estimator = _estimator(model="test_torch_module:exact_epsilon_in_training_mode", output="epsilon")
    assert not exact_epsilon_in_training_mode.training
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)[:, None]
    torch.testing.assert_close(estimator.velocity(0.4, x), estimator.process.velocity(0.4, x), rtol=1e-9, atol=1e-11)


class ExactEpsilonWithSmallMemory(ExactEpsilon):
    """The exact noise predictor on a device that holds at most 300 particles' activations at once."""

    def forward(self, t, x):
        if len(x) > 300:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return super().forward(t, x)


exact_epsilon_small_memory = ExactEpsilonWithSmallMemory()


def test_model_calls_are_batched_down_to_what_fits_in_memory():
    """A model that runs out of memory above 300 particles is called on halved batches until one fits (1000 ->
    500 -> 250), the size is kept for the next calls, and the velocity is the one the whole batch would give."""
    estimator = _estimator(model="test_torch_module:exact_epsilon_small_memory", output="epsilon")
    reference = _estimator(model="test_torch_module:exact_epsilon_module", output="epsilon")
    x = torch.linspace(-3, 3, 1000, dtype=torch.float64)[:, None]
    assert estimator.batch_size is None
    torch.testing.assert_close(estimator.velocity(0.4, x), reference.velocity(0.4, x), rtol=0, atol=0)
    assert estimator.batch_size == 250
    torch.testing.assert_close(estimator.velocity(0.7, x), reference.velocity(0.7, x), rtol=0, atol=0)
    assert estimator.batch_size == 250


def test_the_models_weights_are_in_the_dataset_and_the_task_keys():
    """A model retrained under the same name (other weights) gets other task keys: no stale result is reused."""
    import yaml

    from stochthermo.engine._tasks import plan_tasks

    spec = scenario_dict(**SPEC, time_steps=8, particles=64,
                         estimator={"name": "torch_module", "dtype": "float64", "output": "epsilon",
                                    "model": "test_torch_module:exact_epsilon_module"})
    scenario = parse_scenario(yaml.safe_dump(spec))
    before = [task.key for task in plan_tasks(scenario, torch.device("cpu"), "float64")]
    ds = run_dict(spec)
    inputs = json.loads(ds.attrs["inputs"])["protocols.vp.estimator"]
    assert inputs["model"] == "ExactEpsilon" and inputs["parameters"] == "2" and len(inputs["weights_sha256"]) == 64
    with torch.no_grad():
        exact_epsilon_module.std += 0.01
    try:
        after = [task.key for task in plan_tasks(parse_scenario(yaml.safe_dump(spec)), torch.device("cpu"), "float64")]
    finally:
        with torch.no_grad():
            exact_epsilon_module.std -= 0.01
    assert set(before).isdisjoint(after)


@pytest.mark.slow
def test_the_training_notebook_runs():
    """examples/notebooks/train_and_measure.py: a flow-matching MLP and an EDM denoiser trained in plain torch on
    the two moons, handed over as objects, measured against the exact velocity; it asserts that each residual L
    is under a fifth of the kinetic cost (about a minute on 2 cores)."""
    import subprocess
    from pathlib import Path

    example = Path(__file__).parents[1] / "examples" / "notebooks" / "train_and_measure.py"
    done = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("estimation residual L") == 2 and "estimator.model" in done.stdout


def test_the_notebook_example_runs():
    """examples/notebooks/bring_your_model.py (a jupytext notebook): a network defined in the notebook, EDM's
    conventions, measured end to end; it asserts its own residual."""
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).parents[1] / "examples" / "notebooks" / "bring_your_model.py"
    done = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "estimation residual L" in done.stdout and "weights_sha256" in done.stdout


def test_python_objects_in_a_mapping_are_run_and_recorded_as_objects(tmp_path):
    """A network object where the YAML names one, and a tensor where it lists numbers: the run measures the
    object (its weights digested as always), the Dataset says which keys held objects, a rerun in this process
    gives the same numbers, a rerun in another process is refused in one line naming the key, and anything else
    YAML cannot hold is refused naming its key."""
    import subprocess
    import sys

    import xarray as xr

    import stochthermo
    from stochthermo import ScenarioError

    net = ExactEpsilon()
    spec = scenario_dict(data={"name": "gaussian", "mean": torch.tensor(MEAN, dtype=torch.float64), "std": STD},
                         time_steps=8, protocols=SPEC["protocols"],
                         particles=64, estimator={"name": "torch_module", "model": net, "output": "epsilon",
                                                  "dtype": "float64"})
    ds = stochthermo.run(spec, output=tmp_path / "run.nc")
    assert json.loads(ds.attrs["scenario_objects"]) == {
        "estimator.model": "ExactEpsilon (a Python object; not re-creatable from the text)"}
    assert f"mean: {MEAN}" in ds.attrs["scenario_text"]  # the tensor became data in the text
    assert json.loads(ds.attrs["inputs"])["protocols.vp.estimator"]["model"] == "ExactEpsilon"
    xr.testing.assert_identical(stochthermo.reproducible(stochthermo.rerun(ds)), stochthermo.reproducible(ds))
    script = f"import stochthermo; stochthermo.rerun({str(tmp_path / 'run.nc')!r})"
    elsewhere = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert "estimator.model: the run held Python objects (estimator.model: ExactEpsilon" in elsewhere.stderr
    with pytest.raises(ScenarioError, match=r"estimator.dtype: a set cannot stand in a scenario"):
        stochthermo.run({**spec, "estimator": {**spec["estimator"], "dtype": {"float64"}}}, write=False)


# ---- real architectures set to an exact answer: the denoiser of a single data point (an atom) is constant --------
ATOM = [0.3, -0.2]


class AtomMlp(torch.nn.Module):
    """An MLP with batch norm and dropout whose last layer is set to the exact denoiser of the atom ``ATOM``:
    zero weights, the atom as bias (D(x; σ) = E[y | x] = the atom, whatever x and σ)."""

    def __init__(self):
        super().__init__()
        double = {"dtype": torch.float64}
        self.body = torch.nn.Sequential(torch.nn.Linear(3, 32, **double), torch.nn.BatchNorm1d(32, **double),
                                        torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(32, 2, **double))
        with torch.no_grad():
            self.body[-1].weight.zero_()
            self.body[-1].bias.copy_(torch.tensor(ATOM, dtype=torch.float64))

    def forward(self, sigma, x):
        return self.body(torch.cat([sigma[:, None], x], 1))


class AtomUNet(torch.nn.Module):
    """A diffusers UNet2DModel on 8 × 8 images whose output convolution is set to the exact denoiser of the
    constant image 0.25 (zero weights, bias 0.25), called with flat (n, 64) particles."""

    def __init__(self):
        super().__init__()
        from diffusers import UNet2DModel

        self.unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                                layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4)
        with torch.no_grad():
            self.unet.conv_out.weight.zero_()
            self.unet.conv_out.bias.fill_(0.25)

    def forward(self, sigma, x):
        return self.unet(x.view(-1, 1, 8, 8), sigma).sample.reshape(len(x), -1)


atom_mlp = AtomMlp().train()


def atom_unet():
    return AtomUNet().double()


@pytest.mark.parametrize("architecture", ["mlp", "unet"])
def test_real_architectures_set_to_the_exact_denoiser_give_the_exact_velocity(architecture, monkeypatch):
    """A real MLP (batch norm, dropout, in training mode when handed over) and a diffusers UNet2DModel, each with
    its output layer set to the exact denoiser of a single data point, measured on the `edm` process with
    `output: denoiser`, `time: sigma`: the velocity is the exact one to rounding."""
    import yaml

    if architecture == "unet":
        pytest.importorskip("diffusers")
        monkeypatch.setattr(sys.modules[__name__], "atom_unet_model", atom_unet(), raising=False)
        point, model = [0.25] * 64, "test_torch_module:atom_unet_model"
    else:
        point, model = ATOM, "test_torch_module:atom_mlp"
    dim = len(point)
    spec = scenario_dict(data={"name": "weighted_points", "points": [point]},
                         prior={"name": "gaussian", "mean": [0.0] * dim, "std": 3.0},
                         perturbations={"p": {"name": "gaussian", "mean": [0.0] * dim, "std": 2.5}},
                         protocols={"edm": {"process": {"name": "scheduled",
                                                        "schedule": {"name": "edm", "sigma_max": 3.0}}}},
                         estimator={"name": "torch_module", "model": model, "output": "denoiser", "time": "sigma",
                                    "dtype": "float64"})
    estimator = next(iter(parse_scenario(yaml.safe_dump(spec)).setup.protocols.values())).estimator
    x = torch.randn(32, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2
    for t in (0.5, 0.8, 1.0):
        expected = estimator.process.velocity(t, x)
        torch.testing.assert_close(estimator.velocity(t, x), expected, rtol=1e-9,
                                   atol=1e-9 * float(expected.abs().max()))
    if architecture == "mlp":
        assert not atom_mlp.training  # handed over in training mode, measured in evaluation mode


def output_elsewhere(t, x):
    """A model that returns its answer on another device than its input (here: torch's meta device)."""
    return torch.zeros_like(x, device="meta")


def test_a_model_answering_on_another_device_is_refused_naming_the_key(write_scenario, capsys):
    spec = scenario_dict(**SPEC, estimator={"name": "torch_module", "model": "test_torch_module:output_elsewhere"})
    assert main(["validate", str(write_scenario(spec))]) == 2
    err = capsys.readouterr().err
    assert "estimator.model: the model returned a tensor on meta, the particles are on cpu" in err
    assert len(err.strip().splitlines()) == 1
