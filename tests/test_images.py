"""Images and high dimension (issue: real images and high dimension): loaders in every format, the images
distribution, the empirical velocity as the vanishing-width limit of a mixture's, the Monte Carlo c_2
against quadrature and closed forms, the KL proxy of D_0, sweeps, and the digits scenario."""

import gzip
import math
import pickle

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import run_dict, scenario_dict
from stochthermo import MixtureStructure, ScenarioError
from stochthermo.engine._build import load_scenario, parse_scenario
from stochthermo.engine._simulate import simulate
from stochthermo.measures._divergence import KL_PROXY, chi_square
from stochthermo.measures._ensemble import make_ensemble
from stochthermo.present._plotting import available_figures
from stochthermo_plugins.distributions import Gaussian, GaussianMixture, Images, PointCloud, read_images
from stochthermo_plugins.processes.scheduled import Scheduled
from stochthermo_plugins.schedules import CondOT, Cosine

RNG = np.random.default_rng(0)
PICTURES = RNG.integers(0, 256, size=(5, 6, 4), dtype=np.uint8)  # five 6x4 grayscale images


# ---- loaders ------------------------------------------------------------------------------------------
def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def test_folder_of_png_and_jpeg(tmp_path):
    for i, picture in enumerate(PICTURES):
        Image.fromarray(picture).save(tmp_path / f"img{i}.png")
    images = read_images(tmp_path)
    assert images.pixels.shape == (5, 6, 4, 1) and images.value_range == (0.0, 255.0)
    np.testing.assert_array_equal(images.pixels[..., 0], PICTURES)  # PNG is lossless, order by name
    jpeg = tmp_path / "colour.jpg"
    Image.fromarray(np.stack([PICTURES[0]] * 3, axis=-1)).save(jpeg)
    assert read_images(jpeg).pixels.shape == (1, 6, 4, 3)


def test_numpy_idx_and_gzip(tmp_path):
    np.save(tmp_path / "a.npy", PICTURES)
    np.savez(tmp_path / "b.npz", images=PICTURES, labels=np.arange(5))
    np.save(tmp_path / "flat.npy", PICTURES.reshape(5, -1)[:, :16].astype(np.float64))
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx(PICTURES))
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(PICTURES)))
    for name, key in (("a.npy", None), ("b.npz", "images"), ("train-images-idx3-ubyte", None),
                      ("t10k-images-idx3-ubyte.gz", None)):
        np.testing.assert_array_equal(read_images(tmp_path / name, key).pixels[..., 0], PICTURES)
    flat = read_images(tmp_path / "flat.npy")
    assert flat.pixels.shape == (5, 4, 4, 1) and flat.value_range[0] == flat.pixels.min()
    with pytest.raises(ScenarioError, match="name one with 'key'"):
        read_images(tmp_path / "b.npz")


def test_cifar_batches(tmp_path):
    data = RNG.integers(0, 256, size=(3, 3072), dtype=np.uint8)
    batch = {b"data": data, b"labels": [0, 1, 2], b"batch_label": b"training batch 1 of 5"}
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ("data_batch_1", "test_batch"):
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    single = read_images(folder / "data_batch_1")
    assert single.pixels.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(single.pixels[1, :, :, 2].ravel(), data[1, 2048:])  # channel-major rows
    assert read_images(folder).pixels.shape == (6, 32, 32, 3)


class _Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _save(path, array: np.ndarray):
    np.save(path, array)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: p, "holds no .png"),
    (lambda p: _write(p / "x.png", b"not an image"), "not a readable image"),
    (lambda p: _write(p / "e.npy", b""), "is empty"),
    (lambda p: _write(p / "bad-idx3-ubyte", _idx(PICTURES)[:-3]), "announces shape"),
    (lambda p: _write(p / "data_batch_9", pickle.dumps({b"data": _Exploit()})), "refusing to load"),
    (lambda p: _save(p / "n.npy", np.full((2, 4, 4), np.nan)), "NaN"),
    (lambda p: _save(p / "r.npy", np.zeros((2, 7))), "not a square"),
])
def test_loader_errors_say_what_was_expected(tmp_path, make, message):
    with pytest.raises(ScenarioError, match=message) as info:
        read_images(make(tmp_path))
    assert info.value.key == "path"


def test_folder_with_images_of_different_sizes(tmp_path):
    Image.fromarray(PICTURES[0]).save(tmp_path / "a.png")
    Image.fromarray(PICTURES[0][:5]).save(tmp_path / "b.png")
    with pytest.raises(ScenarioError, match="differ in size: a.png is .6, 4., b.png is .5, 4."):
        read_images(tmp_path)


# ---- the images distribution ------------------------------------------------------------------------
def test_digits_standardised_symmetric_resized_subset():
    digits = Images()
    assert digits.points.shape == (1797, 64) and tuple(digits.image_shape) == (8, 8, 1)
    assert float(digits.points.mean(0).abs().max()) < 1e-12
    assert math.isclose(float((digits.points**2).sum(1).mean()), 64, rel_tol=1e-12)
    np.testing.assert_allclose(digits.pixel_offset + digits.pixel_scale * digits.points.numpy(),
                               Images(normalise="symmetric").points.numpy() * 8 + 8, atol=1e-12)
    symmetric = Images(normalise="symmetric")
    assert float(symmetric.points.min()) == -1 and float(symmetric.points.max()) == 1
    big = Images(shape=[16, 12], size=5, seed=3)
    assert big.points.shape == (5, 192) and tuple(big.image_shape) == (16, 12, 1)
    assert torch.equal(Images(size=5, seed=3).points, Images(size=5, seed=3).points)
    assert not torch.equal(Images(size=5, seed=3).points, Images(size=5, seed=4).points)


def test_images_from_a_user_folder_in_colour(tmp_path):
    for i, picture in enumerate(PICTURES):
        Image.fromarray(picture).save(tmp_path / f"{i}.png")
    colour = Images(path=tmp_path, channels="colour", normalise="symmetric")
    assert colour.points.shape == (5, 72) and tuple(colour.image_shape) == (6, 4, 3)
    np.testing.assert_allclose(colour.points.numpy().reshape(5, 6, 4, 3)[..., 1], PICTURES / 127.5 - 1)


# ---- exact empirical velocity -------------------------------------------------------------------------
@pytest.mark.parametrize("t", [0.05, 0.4, 0.9])
def test_empirical_velocity_is_the_vanishing_width_limit_of_the_mixture_velocity(t):
    points = Images(size=40, seed=1).points
    prior = Gaussian(0.0, 1.0, dim=64)
    cloud = Scheduled(data=PointCloud.from_points(points, 0.0), prior=prior, tau=1.0, schedule=CondOT())
    x = cloud.sample_marginal(t, 32, torch.Generator().manual_seed(0))
    exact = cloud.velocity(t, x)
    errors = []
    for width in (1e-2, 1e-3):
        covariances = width**2 * torch.eye(64, dtype=torch.float64).expand(40, 64, 64)
        mixture = GaussianMixture.from_structure(MixtureStructure(torch.full((40,), 1 / 40, dtype=torch.float64),
                                                                  points, covariances))
        process = Scheduled(data=mixture, prior=prior, tau=1.0, schedule=CondOT())
        errors.append(float((process.velocity(t, x) - exact).norm() / exact.norm()))
    # the components' variance m²w² + σ² differs from σ² by (m w/σ)²: the error is O((w/σ_t)²)
    assert errors[1] < 0.02 * errors[0] and errors[1] < (1e-3 / t) ** 2


# ---- Monte Carlo c_2 --------------------------------------------------------------------------------------
def test_monte_carlo_cost_matches_quadrature_on_the_1d_mixture():
    spec = scenario_dict(observers=["thermodynamics", {"name": "monte_carlo_cost", "time_samples": 400,
                                                       "points_per_time": 64}],
                         protocols={"cosine": {"process": {"name": "scheduled", "schedule": "cosine"}},
                                    "cond_ot": {"process": {"name": "scheduled", "schedule": "cond_ot"}},
                                    "ot": {"process": "optimal_transport"}})
    ds = run_dict(spec).isel(seed=0)
    for protocol in ds.protocol.values:
        row = ds.sel(protocol=protocol)
        gap = float(row.kinetic_cost_monte_carlo - row.kinetic_cost)
        assert abs(gap) < 4 * float(row.kinetic_cost_standard_error), protocol
        assert float(row.kinetic_cost_standard_error) < 0.05 * float(row.kinetic_cost)
    assert np.isnan(ds.kinetic_cost_ratio.sel(protocol="ot"))
    assert (ds.kinetic_cost_ratio.sel(protocol=["cosine", "cond_ot"]) < 1).all()  # Jensen


@pytest.mark.parametrize("schedule", [Cosine(), CondOT()])
def test_single_data_point_kinetic_cost_closed_form(schedule):
    """N_D = 1: P_t = N(m y, σ² I) and ν = ṁ y + σ̇ ε, so c_2 = ∫(ṁ²|y|² + σ̇² n_d) dt exactly: the schedule
    bound is reached (Monte Carlo within its error). Along the forward flow from the sample ε_j of P_τ the particles
    stay at m y + σ ε_j, so the particle quadrature equals ∫(ṁ²|y|² + 2ṁσ̇ y·ε̄ + σ̇² mean|ε_j|²) dt."""
    tau, n = 2.0, 64
    y = Images(size=1, seed=7).points[0]
    spec = {"tau": tau, "time_steps": 64, "particles": n, "reverse_start": "prior",
            "data": {"name": "images", "size": 1, "seed": 7}, "prior": {"name": "gaussian", "dim": 64},
            "protocols": {"p": {"process": {"name": "scheduled", "schedule": schedule.name}}},
            "perturbations": {"narrow": {"name": "gaussian", "dim": 64, "std": 0.9}},
            "observers": ["thermodynamics", "monte_carlo_cost"]}
    ds = run_dict(spec).isel(seed=0, protocol=0)
    s = torch.linspace(0, 1, 400001, dtype=torch.float64)[1:-1]
    dm, dsigma = schedule.dm(s), schedule.dsigma(s)
    moments = [float(torch.trapezoid(f, s)) / tau for f in (dm**2, dm * dsigma, dsigma**2)]
    closed = moments[0] * float(y @ y) + moments[2] * 64
    assert math.isclose(float(ds.schedule_cost_bound), closed, rel_tol=1e-4)
    assert abs(float(ds.kinetic_cost_monte_carlo) - closed) < 4 * float(ds.kinetic_cost_standard_error)
    end = Scheduled(data=Images(size=1, seed=7), prior=Gaussian(0.0, 1.0, dim=64), tau=tau,
                    schedule=schedule).end_distribution()  # P_τ = N(0, I): the forward particles' start
    noise = make_ensemble(end, n, 0, device=torch.device("cpu")).positions
    sample = (moments[0] * float(y @ y) + 2 * moments[1] * float(y @ noise.mean(0))
              + moments[2] * float((noise**2).sum(1).mean()))
    assert math.isclose(float(ds.kinetic_cost), sample, rel_tol=1e-4)


def test_variance_preserving_schedule_has_an_infinite_bound_and_refuses_empirical_data():
    """T_0 > 0: σ̇² ~ 1/t at t = 0, so the bound is infinite; with atoms c_2 is infinite as well."""
    spec = {"particles": 16, "time_steps": 2, "reverse_start": "prior", "data": {"name": "images", "size": 4,
                                                                                 "smoothing": 0.1},
            "prior": {"name": "gaussian", "dim": 64},
            "protocols": {"vp": {"process": {"name": "scheduled", "schedule": "vp_linear"}}},
            "perturbations": {"narrow": {"name": "gaussian", "dim": 64, "std": 0.9}},
            "observers": [{"name": "monte_carlo_cost", "time_samples": 16, "points_per_time": 4}]}
    ds = run_dict(spec).isel(seed=0, protocol=0)
    assert math.isinf(ds.schedule_cost_bound) and float(ds.kinetic_cost_ratio) == 0
    assert math.isfinite(ds.kinetic_cost_monte_carlo)
    spec["data"]["smoothing"] = 0.0
    with pytest.raises(ScenarioError, match="c_2 is infinite"):
        parse_scenario(yaml.safe_dump(spec))


def test_monte_carlo_cost_refuses_non_conservative_processes():
    spec = scenario_dict(data={"name": "gaussian", "mean": [0.0, 0.0], "std": 0.8},
                         prior={"name": "gaussian", "mean": [0.0, 0.0], "std": 1.0},
                         perturbations={"narrow": {"name": "gaussian", "mean": [0.0, 0.0], "std": 0.9}},
                         protocols={"g3": {"process": {"name": "rotational", "g": 3.0}}},
                         observers=["monte_carlo_cost"])
    with pytest.raises(ScenarioError, match="only for a conservative process"):
        parse_scenario(yaml.safe_dump(spec))


# ---- D_0 in high dimension ------------------------------------------------------------------------------
def test_kl_proxy_is_labelled_and_close_to_chi_square_for_small_perturbations():
    reference = Gaussian(0.0, 1.0, dim=16)
    exact = chi_square(Gaussian(0.0, 0.98, dim=16), reference)
    mixture = GaussianMixture([0.5, 0.5], [[0.0] * 16, [0.01] * 16], [0.98, 0.98])
    proxy = chi_square(mixture, reference, kl_proxy=True)  # only where asked for: Monte Carlo otherwise
    assert proxy.method == KL_PROXY and "approximation" in proxy.method
    assert math.isclose(proxy.value, exact.value, rel_tol=0.05)
    too_wide = GaussianMixture([0.5, 0.5], [[0.0] * 16, [0.01] * 16], [1.5, 1.5])
    assert math.isinf(chi_square(too_wide, reference).value)  # the tails decide first


# ---- sweeps, the digits scenario, image grids ----------------------------------------------------------------
def test_sweep_stacks_variants_and_refuses_what_cannot_be_stacked(write_scenario):
    spec = {"tau": 1.0, "time_steps": 2, "particles": 16, "reverse_start": "prior",
            "data": {"name": "images", "size": 1}, "prior": {"name": "gaussian", "dim": 64},
            "protocols": {"cond_ot": {"process": {"name": "scheduled", "schedule": "cond_ot"}}},
            "perturbations": {"narrow": {"name": "gaussian", "dim": 64, "std": 0.9}},
            "observers": [{"name": "monte_carlo_cost", "time_samples": 8, "points_per_time": 2}],
            "sweep": {"n_d": [{"label": 64, "data.shape": [8, 8]},
                              {"label": 256, "data.shape": [16, 16], "prior.dim": 256,
                               "perturbations.narrow.dim": 256}],
                      "data.size": [1, 3]}}
    ds = run_dict(spec)
    assert ds.kinetic_cost_ratio.dims[:2] == ("n_d", "data_size")
    assert ds.data_dimension.sel(n_d=256, data_size=3).item() == 256
    assert ds.data_points.sel(data_size=3).min() == 3
    assert "cost_ratio" in available_figures(ds)
    with pytest.raises(ScenarioError, match=r"prior has dimension 64 but the data 256 \(sweep: data.shape = \[16"):
        parse_scenario(yaml.safe_dump({**spec, "sweep": {"data.shape": [[8, 8], [16, 16]]}}))
    with pytest.raises(ScenarioError, match="'tau' cannot be swept"):
        parse_scenario(yaml.safe_dump({**spec, "sweep": {"tau": [1.0, 2.0]}}))
    with pytest.raises(ScenarioError, match="changes the coordinate 'pixel'"):
        parse_scenario(yaml.safe_dump({**spec, "observers": ["image_snapshots"]}))


def test_digits_scenario_relations_and_image_grids():
    scenario = load_scenario("scenarios/digits.yaml", overrides=["particles=128", "time_steps=8"])
    ds = simulate(scenario, device="cpu").isel(seed=0)
    # at 128 particles the eta interval is wide: eta <= c_1 holds or is unresolved, never violated
    assert ds.holds_response.isin([1, 2]).all() and (ds.holds_kinetic_cost == 1).all()
    assert (ds.response_lower <= ds.response_upper).all()
    assert ds.forward_images.shape == (3, 5, 8, 64)
    assert "images" in available_figures(ds) and "cost_ratio" not in available_figures(ds)
    np.testing.assert_allclose(ds.schedule_cost_bound.sel(protocol="cond_ot"), 2 * 64, rtol=1e-9)
    np.testing.assert_allclose(ds.schedule_cost_bound.sel(protocol="cosine"), math.pi**2 * 64 / 4, rtol=1e-9)


def test_digits_784_measures_eta_with_an_interval():
    """digits_784.yaml at reduced size: 28 x 28 images (n_d = 784), the η interval around the point η's range
    and the relation η ≤ c_1 read from it (holds or unresolved, never violated for the exact velocity)."""
    scenario = load_scenario("scenarios/digits_784.yaml", overrides=["particles=64", "time_steps=4",
                                                                     "observers=[thermodynamics, response, bounds]"])
    ds = simulate(scenario, device="cpu").isel(seed=0)
    assert ds.sizes["protocol"] == 2 and scenario.setup.data.dim == 784
    assert (ds.response_lower <= ds.response_upper).all() and (ds.response_lower >= 0).all()
    assert ds.holds_response.isin([1, 2]).all()
