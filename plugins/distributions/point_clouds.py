r"""Data given as points: the 2-D toy sets of the generative-modelling literature and points read from a file.

Every point cloud is the law :math:`q = \frac1{N_D}\sum_i \mathcal N(y_i, s^2 I)`: ``size`` points
:math:`y_i` drawn (seeded) from the noiseless shape, each smoothed by an isotropic Gaussian kernel of
standard deviation ``noise`` (``smoothing`` for files). With :math:`s = 0` it is the empirical law itself,
whose exact velocity is the softmax posterior over the points (docs/theory.md §1) and singular at t = 0;
with :math:`s > 0` the velocity is regular everywhere and densities exist, which the excess/housekeeping
split on a grid needs. Sampling draws a point uniformly and adds the kernel noise.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch

from stochthermo import ScenarioError, hookimpl
from stochthermo.measures import InvalidWeightedPoints, PointCloud, check_weighted_points

from .image_files import archive_member


def _check_shape_parameters(size: int, noise: float, scale: float) -> None:
    if size < 1:
        raise ScenarioError(f"must be >= 1, got {size}", key="size")
    if noise < 0:
        raise ScenarioError(f"must be >= 0, got {noise}", key="noise")
    if scale <= 0:
        raise ScenarioError(f"must be > 0, got {scale}", key="scale")


def _uniform(size: int, seed: int) -> torch.Tensor:
    return torch.rand(size, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


class SwissRoll(PointCloud):
    r"""2-D Swiss roll :math:`y = \mathrm{scale}\,(t\cos t, t\sin t)`, :math:`t = \tfrac32\pi(1 + 2u)`,
    u ~ U[0, 1] (the (x, z) plane of scikit-learn's ``make_swiss_roll``); the default scale gives
    :math:`E|y|^2 \approx 6` (docs/theory.md §7, E2)."""

    name = "swiss_roll"

    def __init__(self, size: int = 2000, noise: float = 0.1, scale: float = 0.25, seed: int = 0):
        _check_shape_parameters(size, noise, scale)
        t = 1.5 * math.pi * (1 + 2 * _uniform(size, seed))
        self._set(scale * torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1), noise)


class Moons(PointCloud):
    """Two interleaving half circles (scikit-learn's ``make_moons``), centred, times ``scale``."""

    name = "moons"

    def __init__(self, size: int = 2000, noise: float = 0.05, scale: float = 1.0, seed: int = 0):
        _check_shape_parameters(size, noise, scale)
        angle = math.pi * _uniform(size, seed)
        upper = torch.arange(size) % 2 == 0
        x = torch.where(upper, torch.cos(angle), 1 - torch.cos(angle))
        y = torch.where(upper, torch.sin(angle), 0.5 - torch.sin(angle))
        self._set(scale * torch.stack([x - 0.5, y - 0.25], dim=1), noise)


class EightGaussians(PointCloud):
    """Eight points on a circle of ``radius`` (angles kπ/4), each drawn ``size``/8 times on average."""

    name = "eight_gaussians"

    def __init__(self, size: int = 2000, noise: float = 0.2, radius: float = 2.0, seed: int = 0):
        _check_shape_parameters(size, noise, radius)
        angle = (math.pi / 4) * torch.floor(8 * _uniform(size, seed))
        self._set(radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1), noise)


class Empirical(PointCloud):
    """Points read from ``path``: a .npy file, an array named ``key`` in a .npz file, or a .csv file (one
    point per row; '#' comments and one header row allowed). ``size`` keeps a seeded subset; ``smoothing``
    is the kernel width (0: the empirical law itself)."""

    name = "empirical"

    def __init__(self, path: Path, key: str | None = None, smoothing: float = 0.0, size: int | None = None,
                 seed: int = 0):
        if smoothing < 0:
            raise ScenarioError(f"must be >= 0, got {smoothing}", key="smoothing")
        points = torch.from_numpy(load_points(path, key))
        if size is not None:
            if not 1 <= size <= len(points):
                raise ScenarioError(f"must be between 1 and the {len(points)} points in {path}, got {size}",
                                    key="size")
            chosen = torch.randperm(len(points), generator=torch.Generator().manual_seed(seed))[:size]
            points = points[chosen.sort().values]
        self._set(points, smoothing)


class WeightedPoints(PointCloud):
    """Points listed in the scenario with their probabilities: ``points`` (m points of one dimension),
    ``weights`` (m positive numbers summing to one; equal when omitted), ``smoothing`` the kernel width (0:
    the atoms themselves, as semi-discrete optimal transport wants them)."""

    name = "weighted_points"

    def __init__(self, points: list[list[float]], weights: list[float] | None = None, smoothing: float = 0.0):
        if smoothing < 0:
            raise ScenarioError(f"must be >= 0, got {smoothing}", key="smoothing")
        if not points or len({len(point) for point in points}) != 1 or not points[0]:
            raise ScenarioError("must be a non-empty list of points with the same number of coordinates",
                                key="points")
        array = torch.tensor(points, dtype=torch.float64)
        if weights is not None and len(weights) != len(array):
            raise ScenarioError(f"must list one weight per point ({len(array)}), got {len(weights)}", key="weights")
        probabilities = (torch.full((len(array),), 1.0 / len(array), dtype=torch.float64) if weights is None
                         else torch.tensor(weights, dtype=torch.float64))
        try:
            check_weighted_points(array, probabilities)
        except InvalidWeightedPoints as error:
            raise ScenarioError(str(error), key=error.field) from None
        self._set(array, smoothing, weights=None if weights is None else probabilities)


def load_points(path: Path, key: str | None = None) -> np.ndarray:
    """An (N, d) float64 array from a .npy, .npz or .csv file; a ScenarioError (key ``path``) saying what is
    wrong with the file otherwise."""
    if not path.is_file():
        raise ScenarioError(f"data file {path} does not exist" if not path.exists() else f"{path} is not a file",
                            key="path")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                array = archive_member(archive, path, key)
        elif suffix == ".csv":
            array = _read_csv(path)
        else:
            raise ScenarioError(f"{path}: unsupported file type '{suffix}' (expected .npy, .npz or .csv)",
                                key="path")
    except ValueError as exc:  # object arrays (ragged rows saved with pickle), truncated files
        raise ScenarioError(f"{path} is not a numeric array file: {exc}", key="path") from None
    except OSError as exc:
        raise ScenarioError(f"cannot read {path}: {exc}", key="path") from None
    return _check_points(array, path)


def _read_csv(path: Path) -> np.ndarray:
    rows: list[list[float]] = []
    with path.open(newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or row[0].lstrip().startswith("#"):
                continue
            try:
                values = [float(cell) for cell in row]
            except ValueError:
                if not rows and number == 1:
                    continue  # a header row
                raise ScenarioError(f"{path}, line {number}: not a number in {row}", key="path") from None
            if rows and len(values) != len(rows[0]):
                raise ScenarioError(f"{path}, line {number}: {len(values)} values, but earlier rows have "
                                    f"{len(rows[0])} (ragged rows)", key="path")
            rows.append(values)
    return np.array(rows, dtype=np.float64).reshape(len(rows), -1)


def _check_points(array: np.ndarray, path: Path) -> np.ndarray:
    if not np.issubdtype(array.dtype, np.number):
        raise ScenarioError(f"{path} holds {array.dtype} values, expected numbers", key="path")
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ScenarioError(f"{path} holds an array of shape {array.shape}, expected (points, dimensions)",
                            key="path")
    if array.size == 0:
        raise ScenarioError(f"{path} holds no points (shape {array.shape})", key="path")
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        bad = int(np.argmin(finite))
        raise ScenarioError(f"{path}: point {bad} is not finite ({array[bad].tolist()}); "
                            f"{int((~finite).sum())} points hold NaN or infinity", key="path")
    return array.astype(np.float64)


@hookimpl
def stochthermo_register_distributions():
    return [SwissRoll, Moons, EightGaussians, Empirical, WeightedPoints]
