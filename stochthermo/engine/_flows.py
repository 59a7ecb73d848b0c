"""Carrying a protocol's ensembles through its solver: the true, the perturbed and the forward flows.

The true reverse process (its start law carried by the exact velocity), every perturbed reverse process
(each start carried by the estimator's velocity) and, where the true one does not start from P_τ, the
forward marginals (P_τ carried by the exact velocity) go through the solver as few batches as the
equations allow: one batch when the estimator is exact (every ensemble follows the same velocity field),
two otherwise. A batched velocity evaluation costs little more than one ensemble's, so this divides the
fixed per-call overhead by the number of ensembles. A stochastic solver draws its noise from a generator
seeded by the seed's stream ``solver`` (:class:`~stochthermo.numerics.RandomStreams`), so a run is
reproducible.
"""

from __future__ import annotations

import torch

from stochthermo.measures._bracket import coupled_ensemble
from stochthermo.measures._ensemble import Ensemble, make_ensemble
from stochthermo.numerics._streams import RandomStreams
from stochthermo.roles._distribution import Distribution
from stochthermo.roles._equation import estimator_equation, process_equation
from stochthermo.roles._estimator import Estimator
from stochthermo.roles._observer import Flows
from stochthermo.roles._solver import Solver
from stochthermo.roles._trajectory import run_flows


def transport(estimator: Estimator, solver: Solver, *, true_start: Distribution,
              perturbations: dict[str, Distribution], separate_forward: bool, times: torch.Tensor, particles: int,
              seed: int, sampling: str = "random", forward_solver: Solver | None = None) -> Flows:
    """The :class:`~stochthermo.Flows` of one protocol and seed on the saved grid ``times``; the
    ensembles' particles are chosen by ``sampling`` (:func:`stochthermo.measures.make_ensemble`). Where
    ``solver`` is stochastic, the forward marginals are carried by the deterministic ``forward_solver`` from
    their exact (in 1-D: quantile) ensemble: a forward quantity is the same for every protocol of one process,
    whatever its sampler."""
    process = estimator.process
    device, dtype = times.device, times.dtype

    def ensemble(law: Distribution):
        made = make_ensemble(law, particles, seed, device=device, dtype=dtype, sampling=sampling)
        # a stochastic solver does not keep a 1-D quantile ensemble in order: its particles are then a weighted
        # sample, no longer a quadrature in the normal score
        return Ensemble(made.positions, made.weights, None) if solver.stochastic else made

    exact = {("true",): ensemble(true_start)}
    forward_apart = solver.stochastic and forward_solver is not None
    if separate_forward and not forward_apart:
        exact[("forward",)] = ensemble(process.end_distribution())
    estimated, coupled = {}, set()
    for name, law in perturbations.items():
        # in d >= 2 a Gaussian perturbed start is the transport-map image of the true start's particles, so the
        # two flows' particles are pairs of one coupling (the W_1 bracket's upper bound, docs/theory.md §4.3)
        image = coupled_ensemble(true_start, law, exact[("true",)]) if law.dim > 1 else None
        estimated[("perturbed", name)] = ensemble(law) if image is None else image
        if image is not None:
            coupled.add(name)
    # a stochastic solver gets a seeded generator and drives every ensemble (each of `particles` particles) with
    # common random numbers
    options = ({"generator": RandomStreams(seed).generator("solver", device=device),
                "common_noise": particles} if solver.stochastic else {})

    def flow(equation):
        return lambda x0, save_times: solver.solve(equation, x0, save_times, **options)

    if estimator.exact:
        flows = run_flows(flow(process_equation(process)), exact | estimated, times)
    else:
        flows = run_flows(flow(process_equation(process)), exact, times)
        flows |= run_flows(flow(estimator_equation(estimator)), estimated, times)
    true = flows[("true",)]
    forward = flows[("forward",)] if separate_forward and not forward_apart else true
    if forward_apart:
        start = {("forward",): make_ensemble(process.end_distribution(), particles, seed, device=device, dtype=dtype,
                                             sampling=sampling)}
        equation = process_equation(process)
        forward = run_flows(lambda x0, save_times: forward_solver.solve(equation, x0, save_times), start,
                            times)[("forward",)]
    return Flows(true, {name: flows[("perturbed", name)] for name in perturbations}, forward, frozenset(coupled),
                 sampling)
