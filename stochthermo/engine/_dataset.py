"""Assembly of the run's :class:`xarray.Dataset` from the observers' declarations (xarray-simlab style).

Dimensions are ordered: sweep dims (``protocol``, ``perturbation``), ``seed``, then the observer's own
(``time``, grids...). Every variable carries ``long_name``, ``units``, ``symbol`` and ``equation``; global
attributes record the scenario text and hash, versions of the package, its plugins and its dependencies,
the device, dtype and seeds. No timestamps: the same scenario and seeds give the same Dataset.
"""

from __future__ import annotations

import importlib.metadata
import json

import numpy as np
import torch
import xarray as xr

import stochthermo.present  # noqa: F401  (registers the ds.stochthermo accessor on the Datasets made here)
from stochthermo import __version__
from stochthermo.engine._build import Scenario, Sweep
from stochthermo.engine._tasks import scenario_inputs
from stochthermo.errors import SimulationError, first_line
from stochthermo.present import latex_symbol
from stochthermo.roles._observer import SWEEP_DIMS, Coordinate, Variable

DEPENDENCIES = ("torch", "numpy", "scipy", "pot", "xarray", "pluggy", "netCDF4")


def final_dims(declared: tuple[str, ...]) -> tuple[str, ...]:
    sweep = tuple(d for d in declared if d in SWEEP_DIMS)
    return ("protocol", *sweep, "seed", *(d for d in declared if d not in SWEEP_DIMS))


def check_finite(scenario: Scenario, measured: dict, protocol: str, seed: int) -> None:
    """Raise :class:`SimulationError` naming the protocol, quantity, time (and perturbation) of the first
    non-finite value in a variable that does not declare why non-finite values are legitimate."""
    times = scenario.times.numpy()
    perturbations = list(scenario.perturbations)
    for observer in scenario.observers:
        for name, var in observer.variables().items():
            values = np.asarray(measured[observer.name][name])
            if var.nonfinite is not None or not np.issubdtype(values.dtype, np.floating):
                continue
            bad = np.argwhere(~np.isfinite(values))
            if len(bad):
                where = dict(zip(var.dims, bad[0], strict=True))
                parts = [f"protocol '{protocol}'", f"seed {seed}"]
                if "perturbation" in where:
                    parts.append(f"perturbation '{perturbations[where['perturbation']]}'")
                if "time" in var.dims:
                    axis = var.dims.index("time")
                    at = np.unique(bad[:, axis])
                    parts.append(f"t in [{times[at[0]]:.6g}, {times[at[-1]]:.6g}] ({len(at)} of {len(times)} grid "
                                 "times)")
                raise SimulationError(f"non-finite {var.symbol or name} ({name} = {values[tuple(bad[0])]}) at "
                                      + ", ".join(parts))


def assemble_dataset(scenario: Scenario, results: dict, *, device: torch.device, dtype: torch.dtype) -> xr.Dataset:
    """``results[protocol][seed][observer][variable]`` -> Dataset."""
    protocols, seeds = list(scenario.protocols), list(scenario.seeds)
    coords = engine_coordinates(protocols, list(scenario.perturbations), seeds, scenario.times.numpy())
    data_vars = {}
    for observer in scenario.observers:
        own, bounds = observer_coordinates(observer)
        coords.update(own)
        data_vars.update(bounds)
        for name, var in observer.variables().items():
            stacked = np.stack([np.stack([np.asarray(results[p][s][observer.name][name]) for s in seeds])
                                for p in protocols])  # (protocol, seed, *declared)
            dims = ("protocol", "seed", *var.dims)
            order = [dims.index(d) for d in final_dims(var.dims)]
            data_vars[name] = xr.Variable(final_dims(var.dims), stacked.transpose(order), variable_attributes(var))
    dataset = xr.Dataset(data_vars, coords=coords)
    dataset.attrs.update(_provenance(scenario, device, dtype))
    return dataset


def engine_coordinates(protocols: list[str], perturbations: list[str], seeds: list[int],
                       times: np.ndarray) -> dict[str, xr.Variable]:
    """The coordinates every run has, with their CF attributes: ``protocol``, ``perturbation``, ``seed`` and the
    forward ``time`` (the process time in the process's own unit, not a calendar: CF's ``axis`` and time units
    are for longitude, latitude, height and calendar time, and would be false here)."""
    return {
        "protocol": xr.Variable("protocol", protocols,
                                {"long_name": "driving protocol", "description": "scenario key protocols.<name>"}),
        "perturbation": xr.Variable("perturbation", perturbations, {
            "long_name": "perturbed start", "description": "perturbed start of the reverse process (scenario key "
                                                            "perturbations.<name>)"}),
        "seed": xr.Variable("seed", seeds, {"long_name": "random seed", "units": "1",
                                            "description": "random seed of the particle ensembles"}),
        "time": xr.Variable("time", times, {"long_name": "forward time", "units": "1", "symbol": "t",
                                            "description": "time of the forward process, 0 at the data"}),
    }


def observer_coordinates(observer) -> tuple[dict[str, xr.Variable], dict[str, xr.Variable]]:
    """An observer's own coordinates as variables with their CF attributes, and the ``<name>_bounds``
    variables of those with cell bounds (a plain array gets a long name that says whose it is)."""
    coords, bounds = {}, {}
    for name, declared in observer.coordinates().items():
        if not isinstance(declared, Coordinate):
            declared = Coordinate(np.asarray(declared), f"{name} of observer {observer.name}")
        attrs = {"long_name": declared.long_name, "units": declared.units}
        if declared.display_units:
            attrs["display_units"] = declared.display_units
        if declared.bounds is not None:
            attrs["bounds"] = f"{name}_bounds"
            bounds[f"{name}_bounds"] = xr.Variable((name, "bounds"), np.asarray(declared.bounds, dtype=float))
        coords[name] = xr.Variable(name, np.asarray(declared.values), attrs)
    return coords, bounds


def combine_sweep(sweep: Sweep, datasets: list[xr.Dataset]) -> xr.Dataset:
    """Stack the Datasets of a sweep's variants (row-major over its axes) along one dimension per
    swept key, named after it with '_' for '.' (``data.size`` -> ``data_size``); the sweep is recorded in the
    attributes. A swept key that changes another coordinate (e.g. an image size that changes the pixel
    axis of image snapshots) is refused: stacking would pad with NaN."""
    axes = sweep.axes
    dims = [key.replace(".", "_") for key in axes]
    labelled = []
    for dataset, variant in zip(datasets, sweep.variants, strict=True):
        coords = {dim: [label] for dim, (_, label) in zip(dims, variant.spec.labels, strict=True)}
        labelled.append(dataset.expand_dims(coords))
    nested: list = labelled
    for size in reversed([len(values) for values in axes.values()][1:]):
        nested = [nested[i:i + size] for i in range(0, len(nested), size)]
    try:
        combined = xr.combine_nested(nested, concat_dim=dims, join="exact", combine_attrs="drop_conflicts")
    except ValueError as exc:
        raise SimulationError(f"the sweep over {', '.join(axes)} changes the coordinates of the runs "
                              f"({first_line(exc)}): drop the observer that depends on it") from None
    for name in [c.attrs["bounds"] for c in combined.coords.values() if "bounds" in c.attrs]:
        # cell bounds belong to their coordinate, which every variant shares (checked when the sweep was built)
        combined[name] = combined[name].isel(dict.fromkeys(dims, 0), drop=True)
    for dim, key in zip(dims, axes, strict=True):
        combined[dim].attrs.update(long_name=f"swept scenario key {key}", units="1")
    combined.attrs["sweep"] = json.dumps(axes)
    return combined


def variable_attributes(var: Variable) -> dict:
    attrs = {"long_name": var.long_name, "description": var.description or var.long_name, "units": var.units,
             "symbol": var.symbol,
             "symbol_latex": var.latex or latex_symbol(var.symbol),
             "equation": f"arXiv:2407.04495 Eq. {var.equation}"}
    if var.nonfinite:
        attrs["nonfinite_values"] = var.nonfinite
    if var.display_units:
        attrs["display_units"] = var.display_units
    attrs.update(var.attrs)
    return attrs


def forward_processes(protocols: dict) -> list[list[str]]:
    """The protocols grouped by their forward process (``forward_group``): the
    quantities of the forward process alone (``measured_on``) are the same within a group, whatever each
    protocol's solver."""
    groups: dict[str, list[str]] = {}
    for name, protocol in protocols.items():
        groups.setdefault(protocol.forward_group, []).append(name)
    return list(groups.values())


#: attributes that record one run — when it finished, on which host, how long it took, and the CF ``history``
#: line — not what it computed: :func:`reproducible` leaves them out of every comparison of results
RUN_RECORD = ("date_created", "history", "run_host", "run_wall_time_s")


def record_run(dataset: xr.Dataset, *, source: str | None, wall_time: float) -> None:
    """Stamp ``dataset`` with its run record (CF's ``date_created`` and ``history``, the host, the wall time)."""
    import socket
    from datetime import UTC, datetime

    finished = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    dataset.attrs.update({
        "date_created": finished,
        "history": f"{finished}: stochthermo {__version__} run of {source or dataset.attrs.get('scenario_name')}",
        "run_host": socket.gethostname(),
        "run_wall_time_s": round(wall_time, 3),
    })


def reproducible(dataset: xr.Dataset) -> xr.Dataset:
    """``dataset`` without its run record (:data:`RUN_RECORD`): what two runs of one scenario and seed share
    bit for bit, and what a comparison of results (``xr.testing.assert_identical``) should be given."""
    copy = dataset.copy(deep=False)
    copy.attrs = {key: value for key, value in dataset.attrs.items() if key not in RUN_RECORD}
    return copy


def _provenance(scenario: Scenario, device: torch.device, dtype: torch.dtype) -> dict:
    registry, spec = scenario.registry, scenario.spec
    plugins = {info.name: {"version": info.version, "source": info.source} for info in registry.plugins.values()}
    versions = {}
    for package in DEPENDENCIES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "Conventions": "CF-1.11",
        "title": f"stochthermo run of scenario '{scenario.name}'",
        "scenario_name": scenario.name,
        "scenario_description": scenario.description,
        "scenario_path": spec.source or "",
        "scenario_text": spec.text,
        "scenario_overrides": json.dumps(list(spec.overrides)),
        "scenario_sha256": spec.sha256,
        "reference": json.dumps(scenario.reference),
        "stochthermo_version": __version__,
        "plugins": json.dumps(plugins, sort_keys=True),
        "dependency_versions": json.dumps(versions, sort_keys=True),
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "seeds": json.dumps(scenario.seeds),  # JSON: a one-element array would come back as a scalar
        "tau": scenario.tau,
        "time_steps": scenario.time_steps,
        "particles": scenario.particles,
        "particle_sampling": scenario.setup.particle_sampling,
        "reverse_start": scenario.reverse_start,
        "forward_processes": json.dumps(forward_processes(scenario.protocols)),
        "inputs": json.dumps(scenario_inputs(scenario), sort_keys=True),
        # keys that held Python objects: the text names them in this process only (stochthermo.engine._objects)
        "scenario_objects": json.dumps(dict(spec.objects), sort_keys=True),
        "paper": "K. Ikeda, T. Uda, D. Okanohara, S. Ito, arXiv:2407.04495 (Phys. Rev. X 15, 031031, 2025)",
    }
