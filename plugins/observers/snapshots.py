r"""Densities of the forward and the perturbed reverse processes at chosen times (paper Fig. 6 layout).

In 1-D the density of a quantile ensemble is exact up to finite differences,
:math:`p(x_j) = \varphi(z_j)/(dx/dz)_j`, interpolated onto a common grid ``x``; the weighted samples of a
stochastic solver give a Gaussian kernel density estimate (Scott's bandwidth
:math:`h = \hat\sigma\, n_\mathrm{eff}^{-1/5}`, scipy's ``gaussian_kde``: a histogram of a thousand samples on
two hundred bins is mostly noise; a histogram where the samples have no spread). In 2-D it is a normalised
histogram on the grid ``x1`` × ``x2``. Where the process knows P_t in closed form
(:meth:`~stochthermo.ForwardProcess.marginal`), ``forward_density_exact`` holds it on the same grid: the reference
the figure draws. Times are fractions of τ, snapped to the nearest grid time (the coordinate ``snapshot_time``
holds the forward times actually used; reverse time is τ − t).
"""

from __future__ import annotations

import numpy as np
import torch

from stochthermo import Coordinate, Observer, ScenarioError, Variable, hookimpl
from stochthermo.measures import quantile_density

from .figures import densities_figure

#: why the closed-form forward density may be NaN
NO_CLOSED_FORM = "NaN where the process gives P_t in no closed form, or P_t has no density (atoms of the data at t = 0)"
#: the grid covers every law of the scenario to this many standard deviations
GRID_EXTENT = 4.5


class Snapshots(Observer):
    """Forward and reverse densities at ``times`` (fractions of τ) on a grid of ``points`` per axis."""

    name = "snapshots"

    def __init__(self, times: list[float] = [0.0, 1 / 3, 2 / 3, 1.0], points: int = 201):  # noqa: B006
        if any(not 0 <= f <= 1 for f in times):
            raise ScenarioError(f"fractions of tau must lie in [0, 1], got {times}", key="times")
        if points < 8:
            raise ScenarioError(f"must be >= 8, got {points}", key="points")
        self.fractions = times
        self.points = points

    @classmethod
    def figures(cls, ds):
        return {"densities": densities_figure} if "forward_density" in ds and "reverse_density" in ds else {}

    def prepare(self, setup):
        if setup.data.dim > 2:
            raise ScenarioError(f"density snapshots exist for 1-D and 2-D data, not {setup.data.dim}-D")
        self.space = ("x",) if setup.data.dim == 1 else ("x1", "x2")
        self.grid = self._grid(setup)
        times = setup.times.numpy()
        self.indices = [int(np.argmin(np.abs(times - f * times[-1]))) for f in self.fractions]
        self.snapshot_times = times[self.indices]

    def _grid(self, setup) -> list[np.ndarray]:
        laws = [setup.data, setup.prior, *setup.perturbations.values()]
        low = np.min([(law.mean() - GRID_EXTENT * law.covariance().diagonal().sqrt()).numpy() for law in laws], 0)
        high = np.max([(law.mean() + GRID_EXTENT * law.covariance().diagonal().sqrt()).numpy() for law in laws], 0)
        return [np.linspace(lo, hi, self.points) for lo, hi in zip(low, high, strict=True)]

    def coordinates(self):
        space = {name: Coordinate(values, f"position {name}")
                 for name, values in zip(self.space, self.grid, strict=True)}
        return {**space, "snapshot_time": Coordinate(self.snapshot_times, "forward time of the snapshot")}

    def variables(self):
        space = self.space
        return {
            "forward_density": Variable(("snapshot_time", *space), "density of the forward process", "1",
                                        "P_t(x)", "(1)"),
            "reverse_density": Variable(("perturbation", "snapshot_time", *space),
                                        "density of the perturbed reverse process", "1", "P~_t(x)", "(79)"),
            "forward_density_exact": Variable(("snapshot_time", *space), "closed-form forward density", "1",
                                              "P_t(x) exact", "(1)", nonfinite=NO_CLOSED_FORM,
                                              description="P_t from the process's closed-form marginal on the grid"),
        }

    def draws_random_numbers(self, setup):
        return False  # a function of the flows alone

    def observe(self, run, measured):
        return {
            "forward_density": self._densities(run.forward),
            "reverse_density": np.stack([self._densities(tr) for tr in run.perturbed.values()]),
            "forward_density_exact": self._exact_densities(run),
        }

    def _exact_densities(self, run) -> np.ndarray:
        """P_t on the grid from the process's marginal; NaN where it has none or no density (atoms at t = 0)."""
        mesh = np.meshgrid(*self.grid, indexing="ij")
        points = torch.from_numpy(np.stack([axis.ravel() for axis in mesh], axis=1)).to(run.times)
        out = []
        for k in self.indices:
            marginal = run.process.marginal(float(run.times[k]))
            density = np.full(mesh[0].shape, np.nan)
            if marginal is not None:
                try:
                    density = marginal.log_prob(points).exp().reshape(mesh[0].shape).cpu().numpy()
                except ValueError:  # an empirical law of kernel width 0 (the data's atoms at t = 0): no density
                    pass
            out.append(np.where(np.isfinite(density), density, np.nan))
        return np.stack(out)

    def _densities(self, trajectory) -> np.ndarray:
        grid = self.grid
        out = []
        for k in self.indices:
            positions = trajectory.positions[k]
            if trajectory.normal_scores is not None:
                density = quantile_density(positions, trajectory.normal_scores).cpu().numpy()
                defined = np.isfinite(density)  # see quantile_density: undefined only at negligible mass
                out.append(np.interp(grid[0], positions[defined, 0].cpu().numpy(), density[defined], left=0.0,
                                     right=0.0))
            elif len(grid) == 1 and bool(positions.std() > 0):  # a KDE needs samples that are not all one point
                from scipy.stats import gaussian_kde  # scipy.stats on first use: loading the plugins stays cheap

                kde = gaussian_kde(positions[:, 0].cpu().numpy(), bw_method="scott",
                                   weights=trajectory.weights.cpu().numpy())
                out.append(kde(grid[0]))
            else:
                edges = [torch.from_numpy(_edges(g)) for g in grid]
                hist = torch.histogramdd(positions.cpu(), bins=edges, weight=trajectory.weights.cpu(), density=True)
                out.append(hist.hist.numpy())
        return np.stack(out)


def _edges(centres: np.ndarray) -> np.ndarray:
    step = centres[1] - centres[0]
    return np.concatenate([centres - step / 2, centres[-1:] + step / 2])


@hookimpl
def stochthermo_register_observers():
    return [Snapshots]
