r"""The prior error and what it does at the data end (arXiv:2410.13431; docs/theory.md §9).

A generator starts its reverse process from the prior, not from the forward process's end law P_τ. For each
protocol and seed, with ``samples`` draws of each law:

* ``prior_error_w2`` / ``prior_error_w1``: W_2 and W_1 between n draws of P_τ and n draws of the prior (exact
  plans; sorted in 1-D), with ``prior_error_w2_bias`` / ``prior_error_w1_bias`` between two independent
  prior samples of the same size: a measured prior error below its bias carries no information;
* ``prior_error_lower_bound`` / ``prior_error_upper_bound``: the closed-form bounds on W_2(P_τ, prior) of a
  variance-preserving process from the data's mean, covariance and second moment
  (:func:`stochthermo.measures.prior_error_bounds`; NaN for other processes);
* ``generated_w2_from_prior`` / ``generated_w2_from_end`` (and W_1): the true reverse process's particles at
  t = 0 against the data, started from the prior and from P_τ. Data given as atoms are compared with the
  atoms themselves (exact semi-discrete-free plan: particles against weighted points), other data with a
  fresh sample of the data of the particle count; ``generated_w2_sampling`` / ``generated_w1_sampling`` are
  the same distances for a fresh data sample of that size (what a perfect generator scores).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from stochthermo import Observer, ScenarioError, Variable, hookimpl
from stochthermo.measures import law_reference, prior_error_bounds, variance_preserving, w2_and_w1
from stochthermo.roles import Column, recorded

NOT_VARIANCE_PRESERVING = "NaN where the process is not variance preserving (the bounds need v_t = c(1 - a_t^2))"


class PriorError(Observer):
    """W_2 and W_1 between P_τ and the prior with their finite-sample bias, the closed-form bounds of a VP
    process, and the generated law's distance to the data started from the prior versus from P_τ."""

    name = "prior_error"

    def __init__(self, samples: int = 1024):
        if samples < 2:
            raise ScenarioError(f"must be >= 2, got {samples}", key="samples")
        self.samples = samples

    def prepare(self, setup):
        if setup.reverse_start != "prior":
            raise ScenarioError("the prior error's effect compares the generator started from the prior with the "
                                "true reverse process: set reverse_start: prior", key="reverse_start")

    @classmethod
    def summary_columns(cls, ds):
        return recorded(ds, [Column("W2(P_tau,prior)", "prior_error_w2", 140),
                             Column("its bias", "prior_error_w2_bias", 141),
                             Column("W2 lower", "prior_error_lower_bound", 142),
                             Column("W2 upper", "prior_error_upper_bound", 143),
                             Column("W2 q<-prior", "generated_w2_from_prior", 144),
                             Column("W2 q<-P_tau", "generated_w2_from_end", 145),
                             Column("W2 q sampling", "generated_w2_sampling", 146)])

    def variables(self):
        def scalar(long_name, symbol, nonfinite=None, description=""):
            return Variable((), long_name, "1", symbol, "(79)", nonfinite=nonfinite, description=description)

        out = {
            "prior_error_lower_bound": scalar("Gelbrich lower bound on the prior error", "W_2 lower",
                                              NOT_VARIANCE_PRESERVING,
                                              description="Gelbrich lower bound on W_2(P_tau, prior) from the data's "
                                                          "mean and covariance"),
            "prior_error_upper_bound": scalar("coupling upper bound on the prior error", "W_2 upper",
                                              NOT_VARIANCE_PRESERVING,
                                              description="synchronous-coupling upper bound on W_2(P_tau, prior) from "
                                                          "the data's second moment"),
        }
        for p in (2, 1):  # each distance in W_2 and in W_1
            w = f"W_{p}"
            out |= {
                f"prior_error_w{p}": scalar(f"{w} between P_tau and the prior", f"{w}(P_tau, prior)",
                                            description=f"{w} between samples of P_tau and of the prior"),
                f"prior_error_w{p}_bias": scalar(f"{w} sampling floor of the prior", f"{w}(prior_n, prior_n')",
                                                 description=f"{w} between two independent prior samples "
                                                             "(finite-sample bias)"),
                f"generated_w{p}_sampling": scalar(f"{w} of a fresh data sample to the data", f"{w}(q, q_n)",
                                                   description=f"{w} to the data of a fresh data sample of the "
                                                               "particle count"),
            }
            for start, law, named in (("prior", "prior", "the prior"), ("end", "P_tau", "P_tau")):
                out[f"generated_w{p}_from_{start}"] = scalar(
                    f"{w} to the data, started from {named}", f"{w}(q, Phi({law}))",
                    description=f"{w} to the data of the true reverse process started from {named}")
        return out

    def observe(self, run, measured):
        n, dtype, device = self.samples, run.times.dtype, run.times.device
        process, prior = run.process, run.true_start

        def draw(law, stream, count=n):
            return law.sample(count, run.streams.generator(f"{self.name}.{stream}", device=device)).to(dtype)

        uniform = torch.full((n,), 1.0 / n, dtype=dtype, device=device)
        end = draw(process.end_distribution(), "end")
        first, second = draw(prior, "prior"), draw(prior, "second_prior")
        out = {}
        out["prior_error_w2"], out["prior_error_w1"] = w2_and_w1(end, uniform, first, uniform)
        out["prior_error_w2_bias"], out["prior_error_w1_bias"] = w2_and_w1(second, uniform, first, uniform)
        c = variance_preserving(process)
        lower = upper = math.nan
        if c is not None:
            data = process.data
            lower, upper = prior_error_bounds(data.mean(), data.covariance(), data.second_moment(),
                                              float(process.moments(process.tau).scale), c)
        out["prior_error_lower_bound"], out["prior_error_upper_bound"] = lower, upper
        data_stream = run.streams.generator(f"{self.name}.data", device=device)
        reference, reference_weights = law_reference(process.data, len(run.true.weights), data_stream, dtype)
        for label, trajectory in (("from_prior", run.true), ("from_end", run.forward)):
            out[f"generated_w2_{label}"], out[f"generated_w1_{label}"] = w2_and_w1(
                trajectory.positions[0], trajectory.weights, reference, reference_weights)
        particles = len(run.true.weights)
        fresh = draw(process.data, "second_data", particles)
        out["generated_w2_sampling"], out["generated_w1_sampling"] = w2_and_w1(
            fresh, torch.full((particles,), 1.0 / particles, dtype=dtype, device=device), reference,
            reference_weights)
        return {key: np.array(value) for key, value in out.items()}


@hookimpl
def stochthermo_register_observers():
    return [PriorError]
