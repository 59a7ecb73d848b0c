"""Reading image collections from the files researchers already have, without any network access.

:func:`read_images` returns an :class:`ImageArray`: the images as an (N, H, W, C) array with C = 1
(grayscale) or 3 (colour), and the nominal range of their values (the type's full range for 8- and 16-bit
values, the data's own minimum and maximum otherwise), from which the ``images`` distribution scales to [−1, 1].

Formats, recognised by the path:

* a folder of PNG / JPEG files (sorted by name; all of one size unless the distribution resizes them);
* a folder holding CIFAR-10 python batches (``data_batch_1`` … ``data_batch_5``, ``test_batch``), or one
  batch file: a pickle of ``{b"data": (N, 3072) uint8, ...}``, channel-major 3 × 32 × 32. Pickles can run
  code when loaded, so batches are read with an unpickler that admits numpy arrays and nothing else;
* MNIST idx files (``*-idx3-ubyte``, optionally gzipped): the magic number gives the element type and the
  rank, then big-endian int32 sizes, then the values;
* ``.npy`` / ``.npz`` arrays of shape (N, H, W) or (N, H, W, C), or (N, n_d) with n_d a square (square
  grayscale images).

Every problem is a :class:`~stochthermo.ScenarioError` on the key ``path`` saying what was expected where.
"""

from __future__ import annotations

import gzip
import io
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stochthermo import ScenarioError
from stochthermo.errors import did_you_mean

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CIFAR_BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")
#: element types of the idx format, by the third byte of the magic number
IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
#: the classes a CIFAR batch pickle may reference (numpy's array reconstruction, under both module names)
PICKLE_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                  ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


@dataclass(frozen=True)
class ImageArray:
    """``pixels`` (N, H, W, C) and the nominal ``value_range`` (low, high) of the pixel values."""

    pixels: np.ndarray
    value_range: tuple[float, float]


def read_images(path: Path, key: str | None = None) -> ImageArray:
    """The images stored at ``path`` (a folder or a file, see the module docstring)."""
    if not path.exists():
        raise ScenarioError(f"image source {path} does not exist (expected a folder of PNG/JPEG files, a .npy/.npz "
                            "array, MNIST idx files or CIFAR-10 python batches)", key="path")
    if path.is_dir():
        return _read_folder(path)
    raw = _read_bytes(path)
    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz"):
        return _from_array(_load_numpy(path, raw, key), path)
    if suffix in IMAGE_SUFFIXES:
        return _from_array(_decode_image(path, raw)[None], path)
    if raw[:2] == b"\x00\x00":
        return _from_array(_parse_idx(path, raw), path)
    if raw[:1] == b"\x80":
        return _from_array(_parse_cifar(path, raw), path)
    raise ScenarioError(f"{path}: not a recognised image file (expected .png/.jpg/.jpeg, .npy/.npz, an MNIST idx "
                        "file or a CIFAR-10 python batch)", key="path")


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # gzip
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ScenarioError(f"cannot read {path}: {exc}", key="path") from None
    if not raw:
        raise ScenarioError(f"{path} is empty", key="path")
    return raw


def _read_folder(folder: Path) -> ImageArray:
    batches = [folder / name for name in CIFAR_BATCHES if (folder / name).is_file()]
    if batches:
        return _from_array(np.concatenate([_parse_cifar(b, _read_bytes(b)) for b in batches]), folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ScenarioError(f"folder {folder} holds no .png/.jpg/.jpeg files and no CIFAR-10 batches", key="path")
    images = [_decode_image(p, _read_bytes(p)) for p in files]
    channels = max(image.shape[2] for image in images)
    images = [np.repeat(image, channels // image.shape[2], axis=2) for image in images]  # mixed gray and colour
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        odd = next(p for p, image in zip(files, images, strict=True) if image.shape != images[0].shape)
        raise ScenarioError(f"images in {folder} differ in size: {files[0].name} is {images[0].shape[:2]}, {odd.name} "
                            f"is {_decode_image(odd, _read_bytes(odd)).shape[:2]}: resize them to one size",
                            key="path")
    return _from_array(np.stack(images), folder)


def _decode_image(path: Path, raw: bytes) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as image:
            mode = "L" if image.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
            array = np.asarray(image.convert(mode))
    except (UnidentifiedImageError, OSError) as exc:
        raise ScenarioError(f"{path} is not a readable image: {exc}", key="path") from None
    return array[..., None] if array.ndim == 2 else array


def _load_numpy(path: Path, raw: bytes, key: str | None) -> np.ndarray:
    try:
        loaded = np.load(io.BytesIO(raw), allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded as archive:
            return archive_member(archive, path, key)
    except (ValueError, OSError) as exc:
        raise ScenarioError(f"{path} is not a numeric array file: {exc}", key="path") from None


def archive_member(archive: np.lib.npyio.NpzFile, path: Path, key: str | None) -> np.ndarray:
    """The array ``key`` of an .npz archive read from ``path`` (the only one when ``key`` is None)."""
    names = list(archive.files)
    if key is None and len(names) != 1:
        raise ScenarioError(f"{path} holds arrays {names}: name one with 'key'", key="key")
    name = key if key is not None else names[0]
    if name not in names:
        raise ScenarioError(f"{path} has no array '{name}'{did_you_mean(name, names)}", key="key")
    return archive[name]


def _parse_idx(path: Path, raw: bytes) -> np.ndarray:
    if len(raw) < 4 or raw[2] not in IDX_TYPES:
        raise ScenarioError(f"{path}: not an MNIST idx file (bad magic number {raw[:4].hex()})", key="path")
    rank = raw[3]
    header = 4 + 4 * rank
    if rank == 0 or len(raw) < header:
        raise ScenarioError(f"{path}: truncated idx header", key="path")
    shape = tuple(int(v) for v in np.frombuffer(raw, ">i4", count=rank, offset=4))
    dtype = np.dtype(IDX_TYPES[raw[2]])
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header != expected:
        raise ScenarioError(f"{path}: idx header announces shape {shape} ({expected} bytes of data) but the file holds "
                            f"{len(raw) - header}", key="path")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape)


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _parse_cifar(path: Path, raw: bytes) -> np.ndarray:
    try:
        batch = _ArraysOnly(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 -- any failure of an untrusted pickle is the same user error
        raise ScenarioError(f"{path}: not a CIFAR-10 python batch ({exc})", key="path") from None
    data = batch.get(b"data", batch.get("data")) if isinstance(batch, dict) else None
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ScenarioError(f"{path}: a CIFAR-10 batch holds 'data' of shape (N, 3072)", key="path")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _from_array(array: np.ndarray, path: Path) -> ImageArray:
    """Check and shape an array into (N, H, W, C) with its nominal value range."""
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ScenarioError(f"{path} holds {array.dtype} values, expected real numbers", key="path")
    if array.ndim == 2:
        side = math.isqrt(array.shape[1])
        if side * side != array.shape[1]:
            raise ScenarioError(f"{path} holds flat vectors of length {array.shape[1]}, not a square: give the images "
                                "as (N, H, W) or (N, H, W, C)", key="path")
        array = array.reshape(-1, side, side)
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[3] not in (1, 3):
        raise ScenarioError(f"{path} holds an array of shape {array.shape}, expected (N, H, W) or (N, H, W, C) "
                            "with C = 1 or 3", key="path")
    if array.shape[0] == 0:
        raise ScenarioError(f"{path} holds no images", key="path")
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        bad = int(np.argmin(np.isfinite(values).reshape(len(values), -1).all(axis=1)))
        raise ScenarioError(f"{path}: image {bad} holds NaN or infinite values", key="path")
    if array.dtype in (np.uint8, np.uint16):  # image files: the full range of the type
        value_range = (0.0, float(np.iinfo(array.dtype).max))
    else:
        value_range = (float(values.min()), float(values.max()))
    return ImageArray(values, value_range)
