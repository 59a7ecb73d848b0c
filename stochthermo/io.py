"""Atomic netCDF output: write a temporary file beside the target, then rename it into place."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import xarray as xr

ENGINE = "h5netcdf"  # netCDF-4/HDF5: 64-bit integers and unicode strings round-trip losslessly


def write_dataset(dataset: xr.Dataset, path: str | Path) -> Path:
    """Write ``dataset`` to ``path`` atomically; on any failure no (partial) file is left behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        dataset.to_netcdf(tmp, engine=ENGINE)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; a result file gets the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_dataset(path: str | Path) -> xr.Dataset:
    """Load a run written by :func:`write_dataset` fully into memory."""
    with xr.open_dataset(path, engine=ENGINE) as dataset:
        return dataset.load()
