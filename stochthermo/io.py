"""Atomic output (a temporary file beside the target, then renamed into place) and reading runs back.

A run is one netCDF-4 file (netCDF4-python), or, with ``format="zarr"`` (the optional extra ``stochthermo[zarr]``),
one Zarr store (a directory, Zarr format 2 with consolidated metadata), written beside the target and
renamed into place as well."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ScenarioError

if TYPE_CHECKING:
    import xarray as xr

ENGINE = "netcdf4"  # netCDF-4/HDF5: 64-bit integers and unicode strings round-trip losslessly
#: global attributes every run written by the engine carries (stochthermo.dataset)
RUN_ATTRIBUTES = ("stochthermo_version", "scenario_sha256", "scenario_text")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed to ``path`` when the block succeeds, removed
    otherwise, so that no partial file is ever left at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; a result file gets the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


FORMATS = ("netcdf", "zarr")


def write_dataset(dataset: xr.Dataset, path: str | Path, format: str = "netcdf") -> Path:
    """Write ``dataset`` to ``path`` atomically (a netCDF file, or a Zarr store); on any failure no (partial)
    output is left behind."""
    if format == "zarr":
        return _write_zarr(dataset, Path(path))
    with atomic_path(path) as tmp:
        dataset.to_netcdf(tmp, engine=ENGINE)
    return Path(path)


def _write_zarr(dataset: xr.Dataset, path: Path) -> Path:
    """The store is written into a temporary directory beside ``path`` and renamed into place; an existing
    store at ``path`` is moved aside first and removed once the new one is in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        dataset.to_zarr(tmp, mode="w", zarr_format=2, consolidated=True)
        return move_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def move_into_place(store: Path, path: Path) -> Path:
    """Rename the finished directory ``store`` to ``path``; an existing one at ``path`` is moved aside first and
    removed once the new one is in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(store, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_dataset(path: str | Path) -> xr.Dataset:
    """Load a netCDF file fully into memory."""
    import xarray as xr

    if Path(path).is_dir():  # a Zarr store
        with xr.open_zarr(path, consolidated=True) as dataset:
            return dataset.load()
    with xr.open_dataset(path, engine=ENGINE) as dataset:
        return dataset.load()


def read_run(path: str | Path) -> xr.Dataset:
    """Load a run written by ``stochthermo run``; a :class:`ScenarioError` naming the file for anything else
    (a missing file, a file that is not netCDF, a netCDF file without a run's provenance)."""
    if not Path(path).exists():
        raise ScenarioError("no such file", file=str(path))
    try:
        dataset = read_dataset(path)
    except (OSError, ValueError, KeyError, ImportError) as exc:
        kind = "Zarr" if Path(path).is_dir() else "netCDF"
        raise ScenarioError(f"not a {kind} run ({type(exc).__name__})", file=str(path)) from None
    missing = [name for name in RUN_ATTRIBUTES if name not in dataset.attrs]
    if missing or "protocol" not in dataset.dims:
        raise ScenarioError("not a stochthermo run: a netCDF file without the run's provenance attributes "
                            f"({', '.join(missing) or 'protocol dimension'} missing)", file=str(path))
    return dataset
