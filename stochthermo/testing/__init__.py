"""Conformance checks for plugin authors, one per role (opt-in; import from your own tests)::

    from stochthermo.testing import check_process
    def test_my_process():
        check_process(MyProcess(data=..., prior=..., tau=1.0))

The checks of single plugin classes live in ``stochthermo.testing._conformance`` (the registry uses them too) and
are re-exported here; :func:`check_observer` runs the engine on a small scenario.
"""

from __future__ import annotations

import numpy as np

from stochthermo.engine._observation import observe_run
from stochthermo.errors import ConformanceError, SimulationError
from stochthermo.numerics._device import resolve_device, resolve_dtype
from stochthermo.testing._conformance import (
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

__all__ = ["check_distribution", "check_estimator", "check_observer", "check_process", "check_schedule",
           "check_solver", "continuity_residual", "linear_test_equation", "ornstein_uhlenbeck_equation", "require"]


# ---- observers ---------------------------------------------------------------------------------------------
def check_observer(scenario, name: str) -> dict[str, np.ndarray]:
    """Run the first protocol and seed of a built ``scenario`` (:func:`stochthermo.parse_scenario`) that
    lists observer ``name``, and check that observer's results as the engine does when a task finishes:
    exactly the declared variables, each with the shape its dims give (``perturbation``, ``time`` and the
    observer's own coordinates), and non-finite floats only in variables that declare why. Returns the
    observer's results."""
    variant = scenario.variants[0]
    require(name in {o.name for o in variant.observers}, f"the scenario does not list observer '{name}'")
    setup = variant.setup
    device, dtype = resolve_device(setup.device), resolve_dtype(setup.dtype)
    protocol = next(iter(setup.protocols.values()))
    perturbations = {k: d.to(device, dtype) for k, d in setup.perturbations.items()}
    try:
        measured = observe_run(variant, protocol, protocol.estimator.to(device, dtype), perturbations,
                               setup.seeds[0], device=device)
    except SimulationError as exc:
        raise ConformanceError(f"observer '{name}': {exc}") from None
    results = measured[name]
    return results
