r"""Trajectory thermodynamics of the forward process: Seifert's stochastic entropy production along sampled
paths of dx = f dt + √(2T_t) dB (Eq. (2); docs/theory.md §8).

On an interval [t_a, t_b] inside (0, τ) where 0 < T_t < ∞, ``paths`` paths start from x_a ~ P_{t_a} and
are integrated with ``steps`` Euler–Maruyama steps. Along each path

.. math:: \Delta s_{sys} = -\ln P_{t_b}(x_b) + \ln P_{t_a}(x_a), \qquad
   \Delta s_{med} = \int_{t_a}^{t_b} \frac{f_t(x)\circ dx}{T_t}, \qquad
   \Delta s_{tot} = \Delta s_{sys} + \Delta s_{med},

the medium part a Stratonovich sum (force and temperature at the midpoint of each step). Two identities
check the trajectory level against the Fokker–Planck level of ``thermodynamics``:
:math:`E[\Delta s_{tot}] = \int_{t_a}^{t_b}\dot S_t\,dt` (the rate on the saved grid, integrated by Simpson's
rule between the saved times nearest to t_a and t_b, which the path interval then uses exactly) and the
integral fluctuation theorem :math:`E[e^{-\Delta s_{tot}}] = 1`. Both are recorded with their Monte Carlo
standard errors, with the distribution of Δs_tot as a histogram over fixed bins (``histogram_range``,
``bins``; the mass outside the range is recorded too). The time discretisation biases E[Δs_tot] at O(h);
``steps`` sets h. Needs a process with a force field and a closed-form marginal (linear processes with
Gaussian-mixture data, or point clouds with a kernel width).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from stochthermo import Coordinate, Observer, ScenarioError, Variable, hookimpl
from stochthermo.numerics import time_integral
from stochthermo.roles import Column, ForceField, recorded

from .figures import entropy_production_figure

BINS = ("entropy_production_bin",)


class TrajectoryThermodynamics(Observer):
    """Δs_tot along forward SDE paths on [start, end]·τ: its mean and the fluctuation-theorem average with
    standard errors, the Fokker–Planck ∫Ṡ dt beside, and a histogram."""

    name = "trajectory_thermodynamics"
    consumes = {"thermodynamics": ("entropy_production_rate",)}

    def __init__(self, paths: int = 4096, start: float = 0.25, end: float = 0.75, steps: int = 512, bins: int = 120,
                 histogram_range: list[float] = [-3.0, 3.0]):  # noqa: B006
        if paths < 2:
            raise ScenarioError(f"must be >= 2 (a standard error needs two), got {paths}", key="paths")
        if not 0 < start < end < 1:
            raise ScenarioError(f"need 0 < start < end < 1 (fractions of tau), got {start}, {end}", key="start")
        if steps < 1 or bins < 1:
            raise ScenarioError(f"steps and bins must be >= 1, got {steps}, {bins}", key="steps")
        if len(histogram_range) != 2 or not histogram_range[0] < histogram_range[1]:
            raise ScenarioError(f"must be [low, high] with low < high, got {histogram_range}", key="histogram_range")
        self.paths, self.start, self.end, self.steps, self.bins = paths, start, end, steps, bins
        self.edges = np.linspace(*histogram_range, bins + 1)

    @classmethod
    def summary_columns(cls, ds):
        return recorded(ds, [Column("<ds_tot>", "trajectory_entropy_production_mean", 110),
                             Column("+-", "trajectory_entropy_production_mean_stderr", 111),
                             Column("int S dt", "entropy_production_fokker_planck", 112),
                             Column("<e^-ds>", "fluctuation_theorem_average", 113),
                             Column("+- ", "fluctuation_theorem_average_stderr", 114)])

    @classmethod
    def figures(cls, ds):
        return {"entropy_production": entropy_production_figure} if "trajectory_entropy_production_histogram" in ds \
            else {}

    def prepare(self, setup):
        times = setup.times.numpy()
        self.indices = [int(np.argmin(np.abs(times - f * setup.tau))) for f in (self.start, self.end)]
        t_a, t_b = (float(times[i]) for i in self.indices)
        if not t_a < t_b:
            raise ScenarioError(f"start and end fall on the same saved time ({t_a:.4g}): use more time_steps",
                                key="end")
        self.interval = (t_a, t_b)
        inside = torch.linspace(t_a, t_b, self.steps + 1, dtype=torch.float64)
        for protocol in setup.protocols.values():
            process, key = protocol.process, f"protocols.{protocol.name}"
            if not isinstance(process, ForceField):
                raise ScenarioError(f"trajectory thermodynamics needs the force f_t(x) of the process; "
                                    f"'{process.name}' declares none", key=key)
            temperature = process.temperature(inside)
            if not bool(((temperature > 0) & torch.isfinite(temperature)).all()):
                raise ScenarioError(f"trajectory thermodynamics needs 0 < T_t < inf on [{t_a:.4g}, {t_b:.4g}]; process "
                                    f"'{process.name}' has T_t = {float(temperature.min()):.3g} there", key=key)
            if process.marginal(t_a) is None:
                raise ScenarioError(f"Delta s_sys needs the closed-form marginal P_t of '{process.name}'", key=key)

    def coordinates(self):
        return {"entropy_production_bin": Coordinate(0.5 * (self.edges[1:] + self.edges[:-1]),
                                                     "entropy production bin", display_units="k_B",
                                                     bounds=np.stack([self.edges[:-1], self.edges[1:]], axis=1))}

    def variables(self):
        interval = {"t_start": self.interval[0], "t_end": self.interval[1], "paths": self.paths, "steps": self.steps}
        return {
            "trajectory_entropy_production_mean": Variable(
                (), "mean stochastic entropy production", "1", "E[Delta s_tot]", "(36)", display_units="k_B",
                attrs={**interval, "ancillary_variables": "trajectory_entropy_production_mean_stderr"},
                description="mean stochastic entropy production along forward paths"),
            "trajectory_entropy_production_mean_stderr": Variable(
                (), "standard error of the mean production", "1", "se(E[Delta s_tot])", "(36)", display_units="k_B",
                description="Monte Carlo standard error of E[Delta s_tot]"),
            "entropy_production_fokker_planck": Variable(
                (), "Fokker-Planck entropy production", "1", "int S_t dt", "(36)", display_units="k_B",
                attrs=interval,
                description="Fokker-Planck entropy production over the same interval"),
            "fluctuation_theorem_average": Variable(
                (), "integral fluctuation theorem average", "1", "E[exp(-Delta s_tot)]", "IFT",
                attrs={**interval, "ancillary_variables": "fluctuation_theorem_average_stderr"},
                description="integral fluctuation theorem average (1 in theory)"),
            "fluctuation_theorem_average_stderr": Variable(
                (), "standard error of the IFT average", "1", "se(E[exp(-Delta s_tot)])", "IFT",
                description="Monte Carlo standard error of E[exp(-Delta s_tot)]"),
            "trajectory_entropy_production_histogram": Variable(
                BINS, "density of the entropy production", "1", "p(Delta s_tot)", "(36)", display_units="1/k_B",
                description="probability density of Delta s_tot over the bins"),
            "trajectory_entropy_production_outside": Variable(
                (), "fraction outside the histogram", "1", "P(outside)", "(36)",
                description="fraction of paths with Delta s_tot outside the histogram range"),
        }

    def observe(self, run, measured):
        total = self._entropy_production(run).cpu().numpy()
        weights = np.exp(-total)
        rate = measured["thermodynamics"]["entropy_production_rate"]
        low, high = self.indices
        grid = run.times.cpu().numpy()
        histogram, _ = np.histogram(total, bins=self.edges, density=False)
        return {
            "trajectory_entropy_production_mean": float(total.mean()),
            "trajectory_entropy_production_mean_stderr": float(total.std(ddof=1) / math.sqrt(len(total))),
            "entropy_production_fokker_planck": float(time_integral(rate[low:high + 1], grid[low:high + 1])),
            "fluctuation_theorem_average": float(weights.mean()),
            "fluctuation_theorem_average_stderr": float(weights.std(ddof=1) / math.sqrt(len(weights))),
            "trajectory_entropy_production_histogram": histogram / (len(total) * np.diff(self.edges)),
            "trajectory_entropy_production_outside": float(1 - histogram.sum() / len(total)),
        }

    def _entropy_production(self, run) -> torch.Tensor:
        """Δs_tot of ``paths`` Euler–Maruyama paths from x_a ~ P_{t_a} (Stratonovich medium part)."""
        process, device, dtype = run.process, run.times.device, run.times.dtype
        t_a, t_b = self.interval
        generator = run.streams.generator(f"{self.name}.paths", device=device)
        x = process.sample_marginal(t_a, self.paths, generator).to(dtype)
        system = process.marginal(t_a).log_prob(x)
        medium = torch.zeros(len(x), dtype=dtype, device=device)
        h = (t_b - t_a) / self.steps
        temperatures = process.temperature(torch.linspace(t_a, t_b, 2 * self.steps + 1, dtype=dtype, device=device))
        for k in range(self.steps):
            t = t_a + k * h
            noise = torch.randn(x.shape, generator=generator, device=device, dtype=dtype)
            moved = x + h * process.force_field(t, x) + torch.sqrt(2 * temperatures[2 * k] * h) * noise
            midpoint = 0.5 * (x + moved)
            medium += (process.force_field(t + h / 2, midpoint) * (moved - x)).sum(1) / temperatures[2 * k + 1]
            x = moved
        return medium + system - process.marginal(t_b).log_prob(x)


@hookimpl
def stochthermo_register_observers():
    return [TrajectoryThermodynamics]
