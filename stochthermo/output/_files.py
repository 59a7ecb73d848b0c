"""Atomic output (a temporary file beside the target, then renamed into place) and reading runs back.

A run is one netCDF-4 file (netCDF4-python), or, with ``format="zarr"`` (the optional extra ``stochthermo[zarr]``),
one Zarr store (a directory, Zarr format 2 with consolidated metadata), written beside the target and
renamed into place as well."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from stochthermo.errors import ScenarioError, first_line

if TYPE_CHECKING:
    import xarray as xr

ENGINE = "netcdf4"  # netCDF-4/HDF5: 64-bit integers and unicode strings round-trip losslessly
#: global attributes every run written by the engine carries (the engine's Dataset assembly)
RUN_ATTRIBUTES = ("stochthermo_version", "scenario_sha256", "scenario_text")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed to ``path`` when the block succeeds, removed
    otherwise, so that no partial file is ever left at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; a result file gets the usual permissions
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    except OSError as exc:  # a full disk, a read-only directory: said of the file the user named
        Path(tmp).unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fsync(path: str | Path) -> None:
    """Flush a file's (or a directory's entries') data to the disk, so a crash after the rename leaves the
    complete file, not an empty one."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temporaries(directory: Path, name: str | None = None) -> None:
    """Remove the temporary files and stores a killed run left in ``directory`` (only those of the file ``name``
    where given: ``.<name>.<random>.tmp*``); the caller holds the lock that keeps any live run from writing them."""
    pattern = f".{name}.*.tmp*" if name else ".*.tmp*"
    for stale in directory.glob(pattern):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def check_output(path: str | Path, *, inputs: tuple[str | Path | None, ...] = (), format: str = "netcdf",
                 force: bool = False) -> None:
    """Refuse, before anything is computed, an output that is one of ``inputs``, a directory where a netCDF file
    is written, a file where a Zarr store is, a special file (a device, a pipe), a directory that is not a Zarr
    run (even with ``force``: a folder of other files is never deleted), or an existing file that is not a
    result of this tool (unless ``force``). Errors name the file."""
    path = Path(path)
    for source in inputs:
        if source is not None and path.exists() and Path(source).exists() and os.path.samefile(path, source):
            raise ScenarioError(f"the output {path} is the scenario file itself", key="output")
    if not path.exists():
        return
    if format == "zarr":
        if not path.is_dir():
            raise ScenarioError(f"the output {path} exists and is not a directory: a Zarr store is one", key="output")
        try:
            open_run(path)
        except ScenarioError:
            raise ScenarioError(f"the output {path} is a directory that is not a stochthermo Zarr run: refused (it "
                                "would be deleted)", key="output") from None
        return
    if path.is_dir():
        raise ScenarioError(f"the output {path} is a directory: name a file", key="output")
    if not path.is_file():
        raise ScenarioError(f"the output {path} is not a regular file (a device or a pipe)", key="output")
    if not force and not _has_provenance(path):
        raise ScenarioError(f"the output {path} exists and is not a stochthermo result (no run provenance): "
                            "refused, it would be replaced", key="output", option="force")


def _has_provenance(path: Path) -> bool:
    """Whether a file is a netCDF run of this tool: its global attributes read, no variable loaded."""
    import netCDF4

    try:
        with netCDF4.Dataset(path, "r") as dataset:
            return set(RUN_ATTRIBUTES) <= set(dataset.ncattrs()) and "protocol" in dataset.dimensions
    except (OSError, ValueError, RuntimeError):
        return False


FORMATS = ("netcdf", "zarr")


def write_dataset(dataset: xr.Dataset, path: str | Path, format: str = "netcdf") -> Path:
    """Write ``dataset`` to ``path`` atomically (a netCDF file, or a Zarr store); on any failure no (partial)
    output is left behind."""
    if format == "zarr":
        return _write_zarr(dataset, Path(path))
    with atomic_path(path) as tmp:
        try:
            # CF §2.5.1 and §7.1: coordinate variables and the cell bounds they name have no _FillValue (xarray
            # would give float ones one)
            bounds = [dataset[name].attrs["bounds"] for name in dataset.coords if "bounds" in dataset[name].attrs]
            dataset.to_netcdf(tmp, engine=ENGINE, encoding={name: {"_FillValue": None}
                                                            for name in [*dataset.coords, *bounds]
                                                            if dataset[name].dtype.kind == "f"})
        except RuntimeError as exc:  # the netCDF library's own errors (HDF5: no space, quota...)
            raise OSError(errno.EIO, f"the netCDF library could not write it ({first_line(exc)})") from exc
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


def open_run(path: str | Path) -> xr.Dataset:
    """Load a run written by ``stochthermo run``; a :class:`ScenarioError` naming the file for anything else
    (a missing file, a file that is not netCDF, a netCDF file without a run's provenance)."""
    if not Path(path).exists():
        raise ScenarioError("no such file", file=str(path))
    try:
        dataset = read_dataset(path)
    except (OSError, ValueError, KeyError, ImportError) as exc:
        kind = "Zarr" if Path(path).is_dir() else "netCDF"
        raise ScenarioError(f"not a {kind} run ({type(exc).__name__})", file=str(path)) from None
    import stochthermo.present  # noqa: F401  (registers the ds.stochthermo accessor)

    missing = [name for name in RUN_ATTRIBUTES if name not in dataset.attrs]
    if missing or "protocol" not in dataset.dims:
        raise ScenarioError("not a stochthermo run: a netCDF file without the run's provenance attributes "
                            f"({', '.join(missing) or 'protocol dimension'} missing)", file=str(path))
    return dataset
