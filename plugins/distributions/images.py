r"""Images as data: a point cloud in :math:`n_d = H\,W\,C` dimensions that remembers its image shape.

Sources (:mod:`.image_files`): without ``path``, the 1797 8×8 handwritten digits that ship with
scikit-learn (values 0–16; no download); with ``path``, a folder of PNG/JPEG files, a .npy/.npz array,
MNIST idx files or CIFAR-10 python batches. Then, in this order:

1. ``channels``: ``keep`` what the files hold, or convert to ``grayscale`` (ITU-R 601 luma) or ``colour``;
2. ``shape`` [H, W]: resize every image (bilinear, antialiased when shrinking) to vary :math:`n_d`;
3. ``normalise``: ``symmetric`` maps the nominal value range onto [−1, 1]; ``standardise`` subtracts the
   mean image and scales so that :math:`E|y|^2 = n_d`, the assumption of the paper's high-dimensional
   theorem (docs/theory.md §2, (93)-(95)). Both use the statistics of *all* images read, so a subset is a sample
   of one fixed law (a single standardised image has :math:`|y|^2 \approx n_d`, not 0);
4. ``size``: a seeded subset of :math:`N_D` images;

and the law is :math:`q = \frac1{N_D}\sum_i\mathcal N(y_i, s^2 I)` with ``smoothing`` s (0: the empirical law),
whose exact velocity is the softmax posterior over the images (docs/theory.md §1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from stochthermo import ScenarioError, hookimpl
from stochthermo.measures import PointCloud
from stochthermo.numerics import digest
from stochthermo.roles import ImageLayout

from .image_files import ImageArray, read_images

CHANNELS = ("keep", "grayscale", "colour")
NORMALISATIONS = ("standardise", "symmetric")
#: ITU-R BT.601 luma weights of (R, G, B)
LUMA = np.array([0.299, 0.587, 0.114])
#: scikit-learn's digits take the values 0, 1, ..., 16
DIGITS_RANGE = (0.0, 16.0)


class Images(PointCloud):
    """Images (scikit-learn's 8×8 digits by default, or the files at ``path``) as points in n_d = H·W·C
    dimensions; ``image_shape`` (H, W, C), ``pixel_offset`` (n_d,) and ``pixel_scale`` are kept for plotting
    (pixel values = offset + scale · y)."""

    name = "images"

    def __init__(self, path: Path | None = None, key: str | None = None, channels: str = "keep",
                 shape: list[int] | None = None, normalise: str = "standardise", size: int | None = None,
                 seed: int = 0, smoothing: float = 0.0):
        if channels not in CHANNELS:
            raise ScenarioError(f"must be one of {', '.join(CHANNELS)}, got '{channels}'", key="channels")
        if normalise not in NORMALISATIONS:
            raise ScenarioError(f"must be one of {', '.join(NORMALISATIONS)}, got '{normalise}'", key="normalise")
        if shape is not None and (len(shape) != 2 or min(shape) < 1):
            raise ScenarioError(f"must be [height, width] with positive sides, got {shape}", key="shape")
        if smoothing < 0:
            raise ScenarioError(f"must be >= 0, got {smoothing}", key="smoothing")
        source = _digits() if path is None else read_images(path, key)
        #: the digest of the pixels read from ``path`` (the files may change under the same name)
        self._source_digest = None if path is None else digest(np.asarray(source.pixels))
        pixels = _convert_channels(source.pixels, channels)
        if shape is not None:
            pixels = _resize(pixels, shape)
        self.image_shape = pixels.shape[1:]
        points, self.pixel_offset, self.pixel_scale = _normalise(pixels.reshape(len(pixels), -1), source.value_range,
                                                                 normalise)
        if size is not None:
            if not 1 <= size <= len(points):
                raise ScenarioError(f"must be between 1 and the {len(points)} images available, got {size}", key="size")
            chosen = torch.randperm(len(points), generator=torch.Generator().manual_seed(seed))[:size]
            points = points[chosen.sort().values.numpy()]
        self._set(torch.from_numpy(np.ascontiguousarray(points)), smoothing)

    def inputs(self) -> dict[str, str]:
        """The digest of the pixels read from ``path`` (none for the digits that ship with scikit-learn)."""
        return {} if self._source_digest is None else {"pixels_sha256": self._source_digest}

    def image_layout(self) -> ImageLayout:
        """Capability HoldsImages: the (H, W, C) shape and pixels = offset + scale · x."""
        return ImageLayout(tuple(int(v) for v in self.image_shape), np.asarray(self.pixel_offset, dtype=np.float64),
                           float(self.pixel_scale))


def _digits() -> ImageArray:
    from sklearn.datasets import load_digits

    return ImageArray(load_digits().images[..., None].astype(np.float64), DIGITS_RANGE)


def _convert_channels(pixels: np.ndarray, channels: str) -> np.ndarray:
    if channels == "grayscale" and pixels.shape[3] == 3:
        return (pixels @ LUMA)[..., None]
    if channels == "colour" and pixels.shape[3] == 1:
        return np.repeat(pixels, 3, axis=3)
    return pixels


def _resize(pixels: np.ndarray, shape: list[int]) -> np.ndarray:
    """Bilinear resampling of (N, H, W, C) images to ``shape``; antialiased when shrinking."""
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2)
    shrinking = shape[0] < images.shape[2] or shape[1] < images.shape[3]
    resized = torch.nn.functional.interpolate(images, size=tuple(shape), mode="bilinear", align_corners=False,
                                              antialias=shrinking)
    return resized.permute(0, 2, 3, 1).numpy()


def _normalise(points: np.ndarray, value_range: tuple[float, float], how: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Normalised points y, and the offset and scale with pixels = offset + scale · y."""
    if how == "symmetric":
        low, high = value_range
        if high <= low:
            raise ScenarioError(f"every pixel holds the value {low}: nothing to scale to [-1, 1]", key="path")
        offset, scale = np.full(points.shape[1], 0.5 * (low + high)), 0.5 * (high - low)
    else:
        offset = points.mean(0)
        second_moment = float(((points - offset) ** 2).sum(1).mean())
        if second_moment == 0:
            raise ScenarioError("all images are identical: they cannot be standardised (E|y - mean|^2 = 0)",
                                key="normalise")
        scale = float(np.sqrt(second_moment / points.shape[1]))
    return (points - offset) / scale, offset, scale


@hookimpl
def stochthermo_register_distributions():
    return [Images]
