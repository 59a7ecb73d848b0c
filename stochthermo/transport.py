"""Carrying a protocol's ensembles through its solver: the true, the perturbed and the forward flows.

The true reverse process (its start law carried by the exact velocity), every perturbed reverse process
(each start carried by the estimator's velocity) and, where the true one does not start from P_τ, the
forward marginals (P_τ carried by the exact velocity) go through the solver as few batches as the
equations allow: one batch when the estimator is exact (every ensemble follows the same velocity field),
two otherwise. A batched velocity evaluation costs little more than one ensemble's, so this divides the
fixed per-call overhead by the number of ensembles. A stochastic solver draws its noise from a generator
seeded by the seed (offset by ``SOLVER_STREAM``), so a run is reproducible.
"""

from __future__ import annotations

import torch

from .distribution import Distribution
from .ensemble import Ensemble, make_ensemble
from .estimator import Estimator
from .observer import Flows
from .solver import Solver, estimator_equation, process_equation
from .trajectory import run_flows

#: offset of a stochastic solver's random stream from the seed (the ensembles use the seed itself)
SOLVER_STREAM = 1_000_003


def transport(estimator: Estimator, solver: Solver, *, true_start: Distribution,
              perturbations: dict[str, Distribution], separate_forward: bool, times: torch.Tensor, particles: int,
              seed: int, sampling: str = "random") -> Flows:
    """The :class:`~stochthermo.observer.Flows` of one protocol and seed on the saved grid ``times``; the
    ensembles' particles are chosen by ``sampling`` (:mod:`stochthermo.ensemble`)."""
    process = estimator.process
    device, dtype = times.device, times.dtype

    def ensemble(law: Distribution):
        made = make_ensemble(law, particles, seed, device=device, dtype=dtype, sampling=sampling)
        # a stochastic solver does not keep a 1-D quantile ensemble in order: its particles are then a weighted
        # sample, no longer a quadrature in the normal score
        return Ensemble(made.positions, made.weights, None) if solver.stochastic else made

    exact = {("true",): ensemble(true_start)}
    if separate_forward:
        exact[("forward",)] = ensemble(process.end_distribution())
    estimated = {("perturbed", name): ensemble(law) for name, law in perturbations.items()}
    # a stochastic solver gets a seeded generator and drives every ensemble (each of `particles` particles) with
    # common random numbers
    options = ({"generator": torch.Generator(device=device).manual_seed(seed + SOLVER_STREAM),
                "common_noise": particles} if solver.stochastic else {})

    def flow(equation):
        return lambda x0, save_times: solver.solve(equation, x0, save_times, **options)

    if estimator.exact:
        flows = run_flows(flow(process_equation(process)), exact | estimated, times)
    else:
        flows = run_flows(flow(process_equation(process)), exact, times)
        flows |= run_flows(flow(estimator_equation(estimator)), estimated, times)
    true = flows[("true",)]
    return Flows(true, {name: flows[("perturbed", name)] for name in perturbations},
                 flows[("forward",)] if separate_forward else true)
