r"""The kinetic cost by Monte Carlo, for high dimension (paper (G20); docs/theory.md §2, (93)-(95)).

For a conservative process :math:`v_2(t)^2 = E_{P_t}|\nu_t|^2`, so

.. math:: c_2 = \int_0^\tau v_2^2\,dt = \tau\,E_{t\sim U[0,\tau]}\,E_{x\sim P_t}|\nu_t(x)|^2 .

``time_samples`` times are drawn uniformly and ``points_per_time`` points from each :math:`P_t`
(:meth:`~stochthermo.ForwardProcess.sample_marginal`); the per-time means are independent, so the
estimate :math:`\tau\,\overline{g}` has the standard error :math:`\tau\,\mathrm{sd}(g_j)/\sqrt J`. Unlike the
particle quadrature of ``thermodynamics`` it needs no flow, and its cost does not grow with the time grid.

For an (m, σ) schedule and any data, Jensen's inequality bounds it (docs/theory.md §2):

.. math:: c_2 \le B = \int_0^\tau(\dot m_t^2\,E|y|^2 + \dot\sigma_t^2\,n_d)\,dt,

and for standardised data (:math:`E|y|^2 = n_d`) with :math:`N_D/\sqrt{n_d}\to 0` the bound is reached,
:math:`c_2 \simeq n_d\int(\dot m^2 + \dot\sigma^2)dt` ((93)-(95)): 2n_d/τ for cond-OT, π²n_d/4τ for cosine.
The observer records B (adaptive quadrature of the schedule's derivatives) and the ratio :math:`c_2/B`.
Where :math:`T_0 > 0` (``vp_linear``), :math:`\sigma_t^2 \approx 2T_0t`, so B = ∞; for empirical data (no kernel
width) c_2 is then infinite too (:math:`v_2^2 \approx n_dT_0/2t`), and the observer refuses to estimate it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from stochthermo import Observer, ScenarioError, Variable, hookimpl
from stochthermo.roles import Column, GaussianConditional, KineticCostBound, recorded

from .figures import cost_ratio_figure

NO_SCHEDULE = ("NaN for processes without an (m, sigma) schedule (the bound needs m_t and sigma_t); the bound is "
               "infinite (the ratio 0) where T_0 > 0 (vp_linear): sigma-dot^2 ~ 1/t is not integrable")


class MonteCarloCost(Observer):
    """c_2 = τ E_{t,x}|ν_t(x)|² from ``time_samples`` uniform times × ``points_per_time`` draws of P_t, with
    its standard error, the schedule bound ∫(ṁ²E|y|² + σ̇²n_d)dt and their ratio."""

    name = "monte_carlo_cost"

    def __init__(self, time_samples: int = 256, points_per_time: int = 16):
        if time_samples < 2:
            raise ScenarioError(f"must be >= 2 (the standard error needs two), got {time_samples}", key="time_samples")
        if points_per_time < 1:
            raise ScenarioError(f"must be >= 1, got {points_per_time}", key="points_per_time")
        self.time_samples, self.points_per_time = time_samples, points_per_time

    @classmethod
    def summary_columns(cls, ds):
        return recorded(ds, [Column("c_2 MC", "kinetic_cost_monte_carlo", 50),
                             Column("+-", "kinetic_cost_standard_error", 51),
                             Column("bound", "schedule_cost_bound", 52),
                             Column("c_2 MC/bound", "kinetic_cost_ratio", 53),
                             Column("c_2 MC/n_d", "kinetic_cost_monte_carlo", 102, per="data_dimension")])

    @classmethod
    def figures(cls, ds):
        needed = ("kinetic_cost_ratio", "data_points", "data_dimension")
        return {"cost_ratio": cost_ratio_figure} if all(v in ds for v in needed) and "sweep" in ds.attrs else {}

    def prepare(self, setup):
        cloud = setup.data.point_cloud()
        for protocol in setup.protocols.values():
            process, key = protocol.process, f"protocols.{protocol.name}"
            if not process.conservative:
                raise ScenarioError(f"tau E|nu|^2 is c_2 only for a conservative process; '{process.name}' "
                                    "is not (it estimates w_D there)", key=key)
            if cloud is not None and cloud.std == 0 and _noise_diverges(process):
                raise ScenarioError("c_2 is infinite: with T_0 > 0 the noise speed d sigma/dt ~ t^(-1/2) at t = 0 and "
                                    "empirical data (no kernel width) keeps v_2^2 ~ n_d T_0/2t; a Monte Carlo estimate "
                                    "would not converge: give the data a kernel width (smoothing)", key=key)

    def variables(self):
        return {
            "kinetic_cost_monte_carlo": Variable((), "Monte Carlo kinetic cost", "1",
                                                 "c_2^MC", "(G20)",
                                                 description="kinetic cost by Monte Carlo over t and x ~ P_t",
                                                 attrs={"ancillary_variables": "kinetic_cost_standard_error"}),
            "kinetic_cost_standard_error": Variable((), "standard error of the kinetic cost", "1",
                                                    "se(c_2^MC)", "(G20)",
                                                    description="standard error of the Monte Carlo kinetic cost"),
            "schedule_cost_bound": Variable((), "Jensen bound of the kinetic cost", "1",
                                            "int (dm^2 E|y|^2 + dsigma^2 n_d) dt", "(93)", nonfinite=NO_SCHEDULE,
                                            description="Jensen bound of the kinetic cost of an (m, sigma) schedule"),
            "kinetic_cost_ratio": Variable((), "kinetic cost over its Jensen bound", "1",
                                           "c_2^MC / int (dm^2 E|y|^2 + dsigma^2 n_d) dt", "(93)-(95)",
                                           nonfinite=NO_SCHEDULE,
                                           description="Monte Carlo kinetic cost over the schedule bound"),
            "data_dimension": Variable((), "dimension of the data", "1", "n_d", "(93)"),
            "data_points": Variable((), "number of data points", "1", "N_D",
                                    "(93)", nonfinite="NaN where the data law is not a point cloud",
                                    description="number of data points (NaN for data not given as points)"),
        }

    def observe(self, run, measured):
        process, device, dtype = run.process, run.times.device, run.times.dtype
        tau = process.tau
        generator = run.streams.generator(f"{self.name}.samples", device=device)
        times = tau * torch.rand(self.time_samples, generator=generator, device=device, dtype=dtype)
        means = np.empty(self.time_samples)
        for j, t in enumerate(times.tolist()):
            x = process.sample_marginal(t, self.points_per_time, generator).to(dtype)
            means[j] = float((process.velocity(t, x) ** 2).sum(1).mean())
        cost = tau * means.mean()
        error = tau * means.std(ddof=1) / math.sqrt(self.time_samples)
        bound = schedule_cost_bound(process)
        cloud = process.data.point_cloud()
        return {"kinetic_cost_monte_carlo": cost, "kinetic_cost_standard_error": error,
                "schedule_cost_bound": bound, "kinetic_cost_ratio": cost / bound,
                "data_dimension": float(process.data.dim),
                "data_points": float(len(cloud.points)) if cloud is not None else math.nan}


def _noise_diverges(process) -> bool:
    """T_0 > 0: σ² ≈ 2T_0 t near t = 0, so σ̇² ≈ T_0/2t is not integrable."""
    return isinstance(process, GaussianConditional) and math.isinf(process.initial_noise_speed())


def schedule_cost_bound(process) -> float:
    """Jensen's bound of a process that declares one (capability KineticCostBound); NaN otherwise."""
    return process.kinetic_cost_bound() if isinstance(process, KineticCostBound) else math.nan


@hookimpl
def stochthermo_register_observers():
    return [MonteCarloCost]
