r"""The ODE–SDE gap (arXiv:2311.15996; docs/theory.md §8): the laws generated from one start by the
probability-flow ODE and by a reverse SDE with the same estimator.

For each protocol and seed, the true start law (P_τ, or the prior with ``reverse_start: prior``) is carried
to t = 0 along the estimator's velocity by the ODE (``auto`` solver: exact maps where known, RK4 with
``ode_steps_per_save`` steps otherwise) and by ``replicas`` independent runs of the reverse SDE ``sde`` (default
``stochastic_heun`` with γ = 1), all from the same particles. Recorded, with the standard error over the
replicas where the figure is a Monte Carlo one:

* ``ode_sde_wasserstein_2``: W_2 between the ODE and the SDE ensembles (sorted coupling in 1-D, POT's
  exact plan above);
* ``ode_wasserstein_2_data``, ``sde_wasserstein_2_data`` and the W_1 counterparts: each generated ensemble
  against a fresh sample of the data law of the same size;
* ``wasserstein_2_sampling_bias``: W_2 between two independent data samples of that size, the level below
  which the distances above carry no information.

With the exact score from P_τ both dynamics generate q, and the gap is at the sampling level; with an
imperfect score (``exact`` with ``score_scale``, a trained network) they differ.

The bound W_2(ODE, SDE) ≤ B = ∫ exp(∫Λ) ‖γ²T(∇ln q − ŝ)‖_{L²(q)} (:func:`stochthermo.measures.affine_generation`,
derived in docs/theory.md §8) is evaluated where its terms can be: affine velocity and force from a Gaussian
start (Gaussian data under a linear process with an exact or scaled score), where the SDE law and its score
are known in closed form. There ``ode_sde_wasserstein_2_bound`` is B, ``ode_sde_wasserstein_2_closed_form``
the exact W_2 between the two Gaussian end laws (what the particle estimate above converges to), and
``holds_ode_sde_bound`` whether it is ≤ B; elsewhere both are NaN and the status is not applicable.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from stochthermo import Observer, ScenarioError, Solver, Variable, hookimpl
from stochthermo.measures import affine_generation, make_ensemble, optimal_coupling, sample_w2_squared
from stochthermo.roles import HOLDS, NOT_APPLICABLE, STATUS_ATTRS, VIOLATED, Column, estimator_equation, recorded

#: relative tolerance of the bound's check (its quadrature is accurate to about 1e-3 relative at 256 steps)
BOUND_RTOL = 1e-2
#: the reverse SDE when the scenario names none
DEFAULT_SDE = {"name": "stochastic_heun", "gamma": 1.0, "steps_per_save": 4}
NOT_EVALUATED = ("the bound's terms need the SDE law's score: evaluated for affine velocity and force from a "
                 "Gaussian start only (NaN otherwise)")


class OdeSdeGap(Observer):
    """W_2 between the ODE- and SDE-generated laws from one start, each one's W_2 and W_1 to the data, and the
    finite-sample bias; standard errors over ``replicas`` SDE runs."""

    name = "ode_sde_gap"

    def __init__(self, sde: Solver | None = None, replicas: int = 4, ode_steps_per_save: int = 1):
        if replicas < 2:
            raise ScenarioError(f"must be >= 2 (a standard error needs two), got {replicas}", key="replicas")
        #: the reverse SDE given in the scenario; the default (``DEFAULT_SDE``) and the probability-flow ODE
        #: solver are built in :meth:`prepare` by the engine
        self.sde, self.ode_steps_per_save = sde, ode_steps_per_save
        self.replicas = replicas
        #: the closed-form generation of each protocol (it depends on neither the seed nor the particles)
        self._closed_forms: dict[str, object] = {}

    @classmethod
    def summary_columns(cls, ds):
        columns = [Column("W2(ODE,SDE)", "ode_sde_wasserstein_2", 130),
                   Column("W2 ODE-q", "ode_wasserstein_2_data", 131), Column("W2 SDE-q", "sde_wasserstein_2_data", 132),
                   Column("W2 bias", "wasserstein_2_sampling_bias", 133)]
        if "ode_sde_wasserstein_2_bound" in ds and bool(np.isfinite(ds.ode_sde_wasserstein_2_bound).any()):
            columns.append(Column("W2 bound", "ode_sde_wasserstein_2_bound", 134))  # only where it was evaluated
        return recorded(ds, columns)

    def prepare(self, setup):
        self.sde = self.sde or setup.solver(DEFAULT_SDE, key="sde")
        if not self.sde.stochastic:
            raise ScenarioError(f"solver '{self.sde.name}' is deterministic: give a reverse-SDE solver", key="sde")
        self.ode = setup.solver({"name": "auto", "steps_per_save": self.ode_steps_per_save}, key="ode_steps_per_save")
        self.particles = setup.particles
        self.particle_sampling = setup.particle_sampling
        for protocol in setup.protocols.values():
            problem = self.sde.check(estimator_equation(protocol.estimator))
            if problem:
                raise ScenarioError(f"protocol '{protocol.name}': {problem}", key="sde")

    def variables(self):
        out = {}
        for name, long_name, symbol, description in (
                ("ode_sde_wasserstein_2", "W_2 between ODE and SDE laws", "W_2(p_ODE, p_SDE)",
                 "W_2 between the ODE- and the SDE-generated laws"),
                ("sde_wasserstein_2_data", "W_2 of the SDE law to the data", "W_2(p_SDE, q)",
                 "W_2 between the SDE-generated law and the data"),
                ("sde_wasserstein_1_data", "W_1 of the SDE law to the data", "W_1(p_SDE, q)",
                 "W_1 between the SDE-generated law and the data")):
            out[name] = Variable((), long_name, "1", symbol, "ODE-SDE", description=description,
                                 attrs={"ancillary_variables": f"{name}_stderr"})
            out[f"{name}_stderr"] = Variable((), f"s.e. of {long_name}", "1", f"se({symbol})", "ODE-SDE",
                                             description=f"standard error over the SDE replicas of {name}")
        out["ode_wasserstein_2_data"] = Variable((), "W_2 of the ODE-generated law to the data", "1",
                                                 "W_2(p_ODE, q)", "ODE-SDE",
                                                 description="W_2 between the ODE-generated law and the data")
        out["ode_wasserstein_1_data"] = Variable((), "W_1 of the ODE-generated law to the data", "1",
                                                 "W_1(p_ODE, q)", "ODE-SDE",
                                                 description="W_1 between the ODE-generated law and the data")
        out["wasserstein_2_sampling_bias"] = Variable((), "W_2 sampling floor of the data", "1", "W_2(q_n, q_n')",
                                                      "ODE-SDE",
                                                      description="W_2 between two independent data samples of the "
                                                                  "ensemble size")
        out["ode_sde_wasserstein_2_bound"] = Variable(
            (), "bound on W_2 between ODE and SDE laws", "1",
            "int exp(int Lambda) ||gamma^2 T (grad ln q - s^)||_L2(q) dt", "ODE-SDE bound", nonfinite=NOT_EVALUATED,
            description="bound on W_2 between the ODE- and SDE-generated laws")
        out["ode_sde_wasserstein_2_closed_form"] = Variable(
            (), "closed-form Gaussian ODE-SDE W_2", "1", "W_2(p_ODE, p_SDE) exact",
            "ODE-SDE bound", nonfinite=NOT_EVALUATED,
            description="W_2 between the closed-form Gaussian ODE and SDE end laws")
        out["holds_ode_sde_bound"] = Variable((), "status of the ODE-SDE gap bound", "1",
                                              "[W_2(ODE, SDE) <= B]", "ODE-SDE bound", attrs=STATUS_ATTRS,
                                              description="status of W_2(p_ODE, p_SDE) <= bound")
        return out

    def observe(self, run, measured):
        times, device, dtype = run.times, run.times.device, run.times.dtype
        n = self.particles
        start = make_ensemble(run.true_start, n, run.seed, device=device, dtype=dtype,
                              sampling=self.particle_sampling)
        equation = estimator_equation(run.estimator)
        reverse = times.flip(0)
        ode, _ = self.ode.solve(equation, start.positions, reverse)
        ode = ode[-1]
        weights = start.weights
        data = [run.process.data.sample(n, run.streams.generator(f"{self.name}.data", i, device=device))
                .to(dtype) for i in range(2)]
        uniform = torch.full((n,), 1.0 / n, device=device, dtype=dtype)
        gaps, w2_data, w1_data = [], [], []
        for replica in range(self.replicas):
            generator = run.streams.generator(f"{self.name}.sde", replica, device=device)
            sde, _ = self.sde.solve(equation, start.positions, reverse, generator=generator)
            gaps.append(math.sqrt(sample_w2_squared(ode, weights, sde[-1], weights)))
            w2_data.append(math.sqrt(sample_w2_squared(sde[-1], weights, data[0], uniform)))
            w1_data.append(_w1(sde[-1], weights, data[0], uniform))
        out = {"ode_wasserstein_2_data": math.sqrt(sample_w2_squared(ode, weights, data[0], uniform)),
               "ode_wasserstein_1_data": _w1(ode, weights, data[0], uniform),
               "wasserstein_2_sampling_bias": math.sqrt(sample_w2_squared(data[0], uniform, data[1], uniform))}
        for name, values in (("ode_sde_wasserstein_2", gaps), ("sde_wasserstein_2_data", w2_data),
                             ("sde_wasserstein_1_data", w1_data)):
            out[name] = float(np.mean(values))
            out[f"{name}_stderr"] = float(np.std(values, ddof=1) / math.sqrt(len(values)))
        return out | self._bound(run)

    def _bound(self, run) -> dict:
        """The bound, the closed-form gap and the status (NaN and not applicable where not evaluable)."""
        if run.protocol not in self._closed_forms:
            start = run.true_start.to(torch.device("cpu"), torch.float64)
            self._closed_forms[run.protocol] = affine_generation(run.estimator, start, self.sde.gamma,
                                                                 device=run.times.device)
        closed = self._closed_forms[run.protocol]
        if isinstance(closed, str):
            return {"ode_sde_wasserstein_2_bound": math.nan, "ode_sde_wasserstein_2_closed_form": math.nan,
                    "holds_ode_sde_bound": np.int8(NOT_APPLICABLE)}
        holds = closed.wasserstein_2 <= closed.bound * (1 + BOUND_RTOL) + 1e-12
        return {"ode_sde_wasserstein_2_bound": closed.bound, "ode_sde_wasserstein_2_closed_form": closed.wasserstein_2,
                "holds_ode_sde_bound": np.int8(HOLDS if holds else VIOLATED)}


def _w1(x, wx, y, wy) -> float:
    coupling = optimal_coupling(x, wx, y, wy, monotone=False, metric="euclidean")
    return float(coupling.mass @ (x[coupling.rows] - y[coupling.cols]).norm(dim=1))


@hookimpl
def stochthermo_register_observers():
    return [OdeSdeGap]
