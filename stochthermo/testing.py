"""Conformance checks for plugin authors, one per role (opt-in; import from your own tests)::

    from stochthermo.testing import check_process
    def test_my_process():
        check_process(MyProcess(data=..., prior=..., tau=1.0))

The checks of single plugin classes live in :mod:`stochthermo.conformance` (the registry uses them too) and
are re-exported here; :func:`check_observer` runs the engine on a small scenario.
"""

from __future__ import annotations

import numpy as np

from .conformance import (
    check_distribution,
    check_estimator,
    check_process,
    check_schedule,
    check_solver,
    continuity_residual,
    linear_test_equation,
    ornstein_uhlenbeck_equation,
    require,
)
from .device import resolve_device, resolve_dtype
from .errors import ConformanceError, SimulationError
from .observation import observe_run

__all__ = ["check_distribution", "check_estimator", "check_observer", "check_process", "check_schedule",
           "check_solver", "continuity_residual", "linear_test_equation", "ornstein_uhlenbeck_equation", "require"]


# ---- observers ---------------------------------------------------------------------------------------------
def check_observer(scenario, name: str) -> dict[str, np.ndarray]:
    """Run the first protocol and seed of a built ``scenario`` (:func:`stochthermo.parse_scenario`) that
    lists observer ``name``, and check that observer's results: exactly the declared variables, each with
    the shape its dims give (``perturbation``, ``time`` and the observer's own coordinates), and non-finite
    floats only in variables that declare why. Returns the observer's results."""
    variant = scenario.variants[0]
    observers = {o.name: o for o in variant.observers}
    require(name in observers, f"the scenario does not list observer '{name}'")
    observer = observers[name]
    label = f"observer '{name}'"
    setup = variant.setup
    device, dtype = resolve_device(setup.device), resolve_dtype(setup.dtype)
    protocol = next(iter(setup.protocols.values()))
    perturbations = {k: d.to(device, dtype) for k, d in setup.perturbations.items()}
    try:
        measured = observe_run(variant, protocol, protocol.estimator.to(device, dtype), perturbations,
                               setup.seeds[0], device=device)
    except SimulationError as exc:
        raise ConformanceError(f"{label}: {exc}") from None
    results, declared = measured[name], observer.variables()
    require(set(results) == set(declared), f"{label}: returned {sorted(results)} but declares {sorted(declared)}")
    sizes = {"perturbation": len(setup.perturbations), "time": setup.time_steps + 1,
             **{k: len(v) for k, v in observer.coordinates().items()}}
    for variable, declaration in declared.items():
        unknown = [d for d in declaration.dims if d not in sizes]
        require(not unknown, f"{label}: variable '{variable}' has dims {unknown} without coordinates()")
        shape = tuple(sizes[d] for d in declaration.dims)
        value = np.asarray(results[variable])
        require(value.shape == shape, f"{label}: '{variable}' has shape {value.shape}, its dims "
                f"{declaration.dims} give {shape}")
    return results
