"""A run written into one Zarr store region by region, as its tasks finish (``stochthermo run --format zarr``).

While the run goes on the store lives in the run directory (``results/x.tasks/regions.zarr``). Its layout — every
observer variable over the run's full dimensions (swept keys, ``protocol``, ``seed``, the observer's own), chunked
so that one task owns one chunk along ``protocol``, ``seed`` and every swept dimension — is written once, lazily (no
data), when the first task finishes, from that task's arrays (their shapes and dtypes) and the observers'
declarations; a region no task has written reads as the fill value (NaN). Every finished task then writes only its
own region, so results reach the store as they arrive: a failed or interrupted run leaves the finished regions
readable there (``xr.open_zarr(path, consolidated=False)``). Text variables (a method's name: a few bytes per task,
whose width differs between tasks) are left out of the regions. When the run completes, the coordinates, attributes
and text variables of the assembled Dataset are written, the metadata is consolidated (Zarr format 2) and the store
is renamed into place as the output: the same Dataset ``stochthermo run`` writes as netCDF (tested). Needs the
optional extra ``stochthermo[zarr]`` (zarr and dask).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stochthermo.engine._build import Sweep
from stochthermo.engine._dataset import engine_coordinates, final_dims, observer_coordinates, variable_attributes
from stochthermo.output._files import move_into_place

if TYPE_CHECKING:
    import xarray as xr

    from stochthermo.engine._build import Scenario
    from stochthermo.engine._tasks import Task

STORE_NAME = "regions.zarr"


class RegionWriter:
    """Writes each finished task of ``scenario`` into its region of the store ``directory / regions.zarr``."""

    def __init__(self, scenario: Scenario | Sweep, directory: str | Path):
        self.scenario = scenario
        self.path = Path(directory) / STORE_NAME
        self.axes: dict[str, list] = dict(scenario.axes) if isinstance(scenario, Sweep) else {}
        self.sweep_dims = [key.replace(".", "_") for key in self.axes]
        self._laid_out = False

    def __call__(self, task: Task, measured: dict[str, dict]) -> None:
        """Write ``measured`` (``{observer: {variable: array}}``) into the task's region."""
        import xarray as xr

        if not self._laid_out:
            self._lay_out(measured)
        variant = self.scenario.variants[task.variant]
        position = np.unravel_index(task.variant, [len(v) for v in self.axes.values()]) if self.axes else ()
        region = {dim: slice(int(i), int(i) + 1) for dim, i in zip(self.sweep_dims, position, strict=True)}
        region["protocol"] = _one(list(variant.protocols).index(task.protocol))
        region["seed"] = _one(list(variant.seeds).index(task.seed))
        variables = {}
        for observer in variant.observers:
            for name, var in observer.variables().items():
                array = np.asarray(measured[observer.name][name])[(None,) * (len(self.sweep_dims) + 2)]
                if _is_text(array):
                    continue
                dims = (*self.sweep_dims, "protocol", "seed", *var.dims)
                order = [dims.index(d) for d in (*self.sweep_dims, *final_dims(var.dims))]
                variables[name] = xr.Variable([dims[i] for i in order], array.transpose(order))
        xr.Dataset(variables).to_zarr(self.path, region=region, mode="r+", zarr_format=2, consolidated=False)

    def _lay_out(self, sample: dict[str, dict]) -> None:
        """The store's layout (no data) from one task's arrays and the first variant's declarations."""
        import dask.array
        import xarray as xr

        first = self.scenario.variants[0]
        coords: dict[str, object] = dict(zip(self.sweep_dims, self._sweep_labels(), strict=True))
        coords.update(engine_coordinates(list(first.protocols), list(first.perturbations), list(first.seeds),
                                         first.times.numpy()))
        sizes = {dim: len(values) for dim, values in coords.items()}
        variables = {}
        for observer in first.observers:
            own, bounds = observer_coordinates(observer)
            coords.update(own)
            variables.update(bounds)
            for name, var in observer.variables().items():
                array = np.asarray(sample[observer.name][name])
                if _is_text(array):
                    continue
                dims = (*self.sweep_dims, *final_dims(var.dims))
                own = dict(zip(var.dims, array.shape, strict=True))
                shape = tuple(own[d] if d in own else sizes[d] for d in dims)
                chunks = tuple(1 if d in (*self.sweep_dims, "protocol", "seed") else n for d, n in zip(dims, shape,
                                                                                                      strict=True))
                variables[name] = xr.Variable(dims, dask.array.zeros(shape, dtype=array.dtype, chunks=chunks),
                                              variable_attributes(var))
        shutil.rmtree(self.path, ignore_errors=True)  # a layout left by an interrupted run: rewritten
        xr.Dataset(variables, coords=coords).to_zarr(self.path, mode="w", compute=False, zarr_format=2,
                                                     consolidated=False)
        self._laid_out = True

    def _sweep_labels(self) -> list[list]:
        """The coordinate values of each swept dimension: the variants' labels (as the assembled sweep has them)."""
        labels: list[list] = [[None] * len(values) for values in self.axes.values()]
        for index, variant in enumerate(self.scenario.variants):
            position = np.unravel_index(index, [len(values) for values in self.axes.values()])
            for axis, (_, label) in enumerate(variant.spec.labels):
                labels[axis][position[axis]] = label
        return labels

    def finish(self, dataset: xr.Dataset, output: str | Path) -> Path:
        """Write the assembled ``dataset``'s coordinates, attributes and text variables, consolidate the metadata
        and rename the store into place at ``output`` (an existing store there is replaced only once the new one
        is in place)."""
        import zarr

        text = [name for name, variable in dataset.data_vars.items() if _is_text(variable.values)]
        dataset[text].to_zarr(self.path, mode="a", zarr_format=2, consolidated=False)
        group = zarr.open_group(str(self.path), mode="r+", zarr_format=2)
        for name, coordinate in dataset.coords.items():  # appending leaves existing coordinates' attributes
            group[str(name)].attrs.update(coordinate.attrs)
        zarr.consolidate_metadata(str(self.path), zarr_format=2)
        return move_into_place(self.path, Path(output))


def _is_text(array: np.ndarray) -> bool:
    return array.dtype.kind in "USO"


def _one(index: int) -> slice:
    return slice(index, index + 1)
