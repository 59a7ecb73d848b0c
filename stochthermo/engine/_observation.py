"""One task of a run: every observer's results for one protocol and seed (docs/architecture.md, "Data flow").

The process's random realisation is fixed by the seed, the observers are handed a
:class:`~stochthermo.Run` whose flows are computed when an observer
first reads them, and they run in the order their declared inputs require; each observer's results are held
to its declaration, the process's flow to its own marginals, and no undeclared non-finite number gets through
(:mod:`stochthermo.engine._checks`).
"""

from __future__ import annotations

import functools

import torch

from stochthermo.engine._build import Scenario
from stochthermo.engine._checks import check_declared, check_marginals
from stochthermo.engine._dataset import check_finite
from stochthermo.engine._flows import transport
from stochthermo.errors import SimulationError
from stochthermo.numerics._device import resolve_dtype
from stochthermo.roles._distribution import Distribution
from stochthermo.roles._estimator import Estimator
from stochthermo.roles._observer import Run
from stochthermo.roles._protocol import DrivingProtocol


def seed_independent(scenario: Scenario, protocol: DrivingProtocol) -> bool:
    """Whether every seed of ``protocol`` gives the same results: its particles are 1-D quadrature ensembles (no
    draw), its solver is deterministic, its process has no random realisation, and no observer draws random
    numbers of its own (:meth:`~stochthermo.Observer.draws_random_numbers`). Such a protocol is computed once
    for all seeds: only what is random is replicated."""
    setup = scenario.setup
    return (setup.data.dim == 1 and not protocol.solver.stochastic and not protocol.process.draws_random_numbers()
            and not any(observer.draws_random_numbers(setup) for observer in scenario.observers))


def observe_run(scenario: Scenario, protocol: DrivingProtocol, estimator: Estimator,
                perturbations: dict[str, Distribution],
                seed: int, *, device: torch.device) -> dict[str, dict]:
    """Every observer's results for one protocol and seed, ``{observer: {variable: array}}``: the process's
    realisation fixed, the flows computed on first use, the observers run in :attr:`Scenario.observation_order`
    with the inputs they declare, and no non-finite number let through. ``estimator`` and ``perturbations`` are
    already on ``device`` in the scenario's dtype."""
    setup = scenario.setup
    process = estimator.process
    dtype = resolve_dtype(setup.dtype)
    times = setup.times.to(device, dtype)
    process.realise(setup.particles, seed, device=device, dtype=dtype)
    from_prior = setup.reverse_start == "prior"
    true_start = setup.prior.to(device, dtype) if from_prior else process.end_distribution()
    flows = functools.partial(transport, estimator, protocol.solver, true_start=true_start,
                              perturbations=perturbations, separate_forward=from_prior, times=times,
                              particles=setup.particles, sampling=setup.particle_sampling, seed=seed,
                              forward_solver=protocol.forward_solver)
    run = Run(protocol.name, seed, process, estimator, times, perturbations, true_start, setup.reverse_start,
              protocol.solver, flows, forward_group=protocol.forward_group or protocol.name)
    measured: dict[str, dict] = {}
    try:
        for observer in scenario.observation_order:
            inputs = {producer: {name: measured[producer][name] for name in names}
                      for producer, names in observer.consumes.items()}
            measured[observer.name] = observer.observe(run, inputs)
    except Exception as failure:
        try:  # a process whose flow misses its own marginals explains an observer's failure
            check_marginals(run)
        except SimulationError:
            raise
        except Exception:  # the check itself could not run: the observer's own error is the one to report
            raise failure from None
        raise
    check_marginals(run)
    check_declared(scenario.observers, measured, sizes={"time": len(times), "perturbation": len(perturbations)},
                   protocol=protocol.name, seed=seed)
    check_finite(scenario, measured, protocol.name, seed)
    return measured
