r"""The long-time limit of the probability-flow map against the semi-discrete Brenier map
(arXiv:2410.13431; docs/theory.md §9).

For data given as (weighted) points and a variance-preserving process with prior N(0, cI), the flow map
:math:`\Phi_T` (:func:`stochthermo.measures.probability_flow`: the exact empirical velocity, integrated in the
signal level so that T = ∞ is an ordinary start) sends each prior sample to one point; the semi-discrete Brenier
map T (:func:`stochthermo.measures.solve_semidiscrete`) does too. Over ``horizons`` (equivalent OU times
T = −ln a_T; ``.inf`` allowed and always included), with ``samples`` prior draws z:

* ``basin_mismatch_limit`` = P(Φ_T(z) ≠ Φ_∞(z)) with its binomial standard error, ``map_distance_limit`` =
  :math:`\|\Phi_T - \Phi_\infty\|_{L^2(prior)}`; the same against the Brenier map (``..._brenier``);
* ``basin_mass_error``: the largest |prior mass of a basin of Φ_T − its point's weight|: at T = ∞ a
  sampling-level check that the flow carries the prior onto the data, at finite T the prior error's effect
  on the weights generated;
* ``flow_jacobian_asymmetry``: mean of ‖J − Jᵀ‖_F/‖J‖_F for the flow from a_T to the signal level
  ``jacobian_level`` (a gradient map has a symmetric Jacobian; the Brenier map is one);
* ``limit_convergence_rate``: r in :math:`\|\Phi_T - \Phi_\infty\| \approx C e^{-rT}`, least squares on the
  logarithm over the finite horizons where the distance is positive;
* the semi-discrete solve's diagnostics: the largest |cell mass − weight| (with its standard error for the
  stochastic solver), empty cells, convergence, and, where both solvers run (2-D Gaussian prior), the prior
  mass the two maps assign to different points (``semidiscrete_solver_disagreement``);
* in 2-D, the basins of Φ_T and the Laguerre cells of T on a ``grid`` × ``grid`` square of half-width 3√c
  (the ``basins`` figure).

The numbers do not depend on the VP schedule (the flow in the signal level is schedule-free); they are
computed once per point set, seed and settings in a process and repeated for each VP protocol and sweep
variant.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from stochthermo import Coordinate, Observer, ScenarioError, Variable, hookimpl
from stochthermo.measures import (
    FLOW_STEPS,
    METHODS,
    jacobian_asymmetry,
    point_basins,
    point_posterior_mean,
    resolve_method,
    solve_semidiscrete,
    variance_preserving,
)
from stochthermo.roles import Column, recorded

from .figures import basins_figure

DEFAULT_HORIZONS = (0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, math.inf)
#: half-width of the basin grid in prior standard deviations
GRID_EXTENT = 3.0
#: measurements kept for reuse by later protocols and sweep variants (oldest dropped first)
CACHE_SIZE = 8
_MEASURED: dict[tuple, dict[str, np.ndarray]] = {}
NO_RATE = "NaN where fewer than two finite horizons have a positive distance to the limit"
ONE_SOLVER = "NaN where only one solver applies (the exact one needs a 2-D isotropic Gaussian prior)"


class LongTimeLimit(Observer):
    """Φ_T against Φ_∞ and against the semi-discrete Brenier map, over horizons T (module docstring)."""

    name = "long_time_limit"

    def __init__(self, horizons: list[float] | None = None, samples: int = 4096, steps: int = FLOW_STEPS,
                 jacobian_level: float = 0.9, jacobian_samples: int = 256, solver: str = "auto",
                 compare_solvers: bool = True, grid: int = 81):
        horizons = sorted(set(DEFAULT_HORIZONS if horizons is None else [*horizons, math.inf]))
        if horizons[0] < 0:
            raise ScenarioError(f"must be >= 0, got {horizons[0]}", key="horizons")
        if samples < 2 or jacobian_samples < 1 or steps < 8 or grid < 2:
            raise ScenarioError("samples >= 2, jacobian_samples >= 1, steps >= 8 and grid >= 2 are needed, got "
                                f"{samples}, {jacobian_samples}, {steps}, {grid}", key="samples")
        if not 0 < jacobian_level < 1:
            raise ScenarioError(f"must be a signal level in (0, 1), got {jacobian_level}", key="jacobian_level")
        if solver not in METHODS:
            raise ScenarioError(f"must be one of {', '.join(METHODS)}, got '{solver}'", key="solver")
        self.horizons, self.samples, self.steps, self.grid = horizons, samples, steps, grid
        self.jacobian_level, self.jacobian_samples = jacobian_level, jacobian_samples
        self.solver, self.compare_solvers = solver, compare_solvers
        self.dim, self.half_width, self.prior = None, None, None

    def prepare(self, setup):
        cloud = setup.data.point_cloud()
        if cloud is None or cloud.std != 0 or cloud.kernel is not None:
            raise ScenarioError(f"needs data given as points without smoothing, got '{setup.data.name}'", key="data")
        for name, protocol in setup.protocols.items():
            c = variance_preserving(protocol.process)
            if c is None:
                raise ScenarioError(f"protocol '{name}' is not variance preserving (v_t = c(1 - a_t^2), no rotation)",
                                    key="protocols")
            prior_variance = setup.prior.covariance().diagonal()
            if not torch.allclose(setup.prior.mean(), torch.zeros_like(setup.prior.mean()), atol=0) or not bool(
                    torch.allclose(prior_variance, torch.full_like(prior_variance, c), rtol=1e-9)):
                raise ScenarioError(f"must be N(0, {c:g} I), the stationary law of protocol '{name}'", key="prior")
        try:
            resolve_method(self.solver, setup.prior)
        except ValueError as error:
            raise ScenarioError(str(error), key="solver") from None
        self.dim, self.prior = setup.data.dim, setup.prior
        self.half_width = GRID_EXTENT * math.sqrt(float(prior_variance[0]))  # the prior's, identical in every variant

    def coordinates(self):
        out = {"horizon": Coordinate(np.array(self.horizons), "flow horizon T")}
        if self.dim == 2:
            grid = np.linspace(-self.half_width, self.half_width, self.grid)
            out["basin_x"] = Coordinate(grid, "prior point, first coordinate")
            out["basin_y"] = Coordinate(grid, "prior point, second coordinate")
        return out

    @classmethod
    def summary_columns(cls, ds):
        return recorded(ds, [Column("P(Phi_inf!=T)", "basin_mismatch_brenier", 149, position={"horizon": -1}),
                             Column("rate r", "limit_convergence_rate", 150),
                             Column("mass err", "semidiscrete_mass_error", 151),
                             Column("solvers differ", "semidiscrete_solver_disagreement", 152)])

    @classmethod
    def figures(cls, ds):
        return {"basins": basins_figure} if "flow_basins" in ds else {}

    def variables(self):
        def per_horizon(long_name, symbol, description="", error=None):
            attrs = {"ancillary_variables": error} if error else {}
            return Variable(("horizon",), long_name, "1", symbol, "arXiv:2410.13431", description=description,
                            attrs=attrs)

        def scalar(long_name, symbol, nonfinite=None, description="", error=None):
            attrs = {"ancillary_variables": error} if error else {}
            return Variable((), long_name, "1", symbol, "arXiv:2410.13431", nonfinite=nonfinite,
                            description=description, attrs=attrs)

        out = {
            "basin_mismatch_limit": per_horizon("mass where Phi_T and Phi_inf differ",
                                                "P(Phi_T != Phi_inf)",
                                                description="prior mass sent to different points by Phi_T and Phi_inf",
                                                error="basin_mismatch_limit_error"),
            "basin_mismatch_limit_error": per_horizon("binomial s.e. of basin_mismatch_limit", "s.e.",
                                                      description="binomial standard error of basin_mismatch_limit"),
            "map_distance_limit": per_horizon("L2 distance of Phi_T to Phi_inf", "|Phi_T - Phi_inf|",
                                              description="L2(prior) distance between Phi_T and Phi_inf"),
            "basin_mismatch_brenier": per_horizon("mass where Phi_T and Brenier map differ",
                                                  "P(Phi_T != T)",
                                                  description="prior mass sent to different points by Phi_T and the "
                                                              "Brenier map", error="basin_mismatch_brenier_error"),
            "basin_mismatch_brenier_error": per_horizon("binomial s.e. of basin_mismatch_brenier", "s.e.",
                                                        description="binomial standard error of "
                                                                    "basin_mismatch_brenier"),
            "map_distance_brenier": per_horizon("L2 distance of Phi_T to the Brenier map",
                                                "|Phi_T - T|",
                                                description="L2(prior) distance between Phi_T and the Brenier map"),
            "basin_mass_error": per_horizon("largest basin mass error of Phi_T",
                                            "max|P(J_T = j) - w_j|",
                                            description="largest |prior mass of the basin of Phi_T - weight| (0 at T "
                                                        "= inf up to sampling: the flow carries the prior onto the "
                                                        "data)"),
            "flow_jacobian_asymmetry": per_horizon("asymmetry of the flow map Jacobian",
                                                   "asym(J)",
                                                   description="mean |J - J^T|_F / |J|_F of the flow map up to "
                                                               "jacobian_level"),
            "limit_convergence_rate": scalar("convergence rate of Phi_T to Phi_inf", "r", NO_RATE,
                                             description="rate r of |Phi_T - Phi_inf| ~ C exp(-r T)"),
            "semidiscrete_mass_error": scalar("largest cell mass error of the map",
                                              "max|mu(L_j) - w_j|",
                                              description="largest |cell mass - weight| of the semi-discrete map",
                                              error="semidiscrete_mass_standard_error"),
            "semidiscrete_mass_standard_error": scalar("standard error of that cell mass", "s.e.",
                                                       description="standard error of that cell mass (0: exact "
                                                                   "masses)"),
            "semidiscrete_empty_cells": scalar("empty cells of the semi-discrete map", "#empty",
                                               description="cells of the semi-discrete map holding no prior mass"),
            "semidiscrete_converged": scalar("semi-discrete solve converged", "converged",
                                             description="1 where the semi-discrete solve met its tolerance"),
            "semidiscrete_solver_disagreement": scalar("mass where the two solvers differ", "P(T_newton != T_pot)",
                                                       ONE_SOLVER,
                                                       description="prior mass the exact and the stochastic solvers' "
                                                                   "maps send to different points"),
        }
        if self.dim == 2:
            out["flow_basins"] = Variable(("horizon", "basin_y", "basin_x"), "data index reached by the flow", "1",
                                          "J_T(z)",
                                          "arXiv:2410.13431",
                                          description="index of the point Phi_T sends the grid point to")
            out["basin_data_points"] = Variable(("basin_y", "basin_x"), "data point in the grid cell", "1", "j(y_j)",
                                                "arXiv:2410.13431",
                                                description="index of the data point lying in the grid cell (the "
                                                            "heaviest where several do), -1 where none: the points "
                                                            "on the plane of the basins, whatever their number")
            out["brenier_cells"] = Variable(("basin_y", "basin_x"), "Laguerre cell of the Brenier map", "1", "j*(z)",
                                            "arXiv:2410.13431",
                                            description="index of the Laguerre cell of the Brenier map holding the "
                                                        "grid point")
        return out

    def observe(self, run, measured):
        """Measured once per point set, prior, seed and settings, and reused across the VP protocols and the
        sweep variants that share them (the flow in the signal level does not depend on the schedule)."""
        c = variance_preserving(run.process)
        cloud = run.process.data.point_cloud()
        key = (cloud.points.cpu().double().numpy().tobytes(), cloud.probabilities().cpu().double().numpy().tobytes(),
               round(c, 12), run.seed, tuple(self.horizons), self.samples, self.steps, self.grid, self.jacobian_level,
               self.jacobian_samples, self.solver, self.compare_solvers)
        if key not in _MEASURED:
            while len(_MEASURED) >= CACHE_SIZE:
                _MEASURED.pop(next(iter(_MEASURED)))
            _MEASURED[key] = self._measure(run, c)
        return {name: value.copy() for name, value in _MEASURED[key].items()}

    def _measure(self, run, c):
        cloud = run.process.data.point_cloud()
        points, weights = cloud.points.double().cpu(), cloud.probabilities().double().cpu()
        count = len(points)
        prior = self.prior.to(torch.device("cpu"), torch.float64)  # the prior, whatever the reverse start
        z = prior.sample(self.samples, run.streams.generator(f"{self.name}.prior"))
        solution = solve_semidiscrete(prior, points, weights, method=self.solver,
                                      seed=run.streams.seed_of(f"{self.name}.semidiscrete"))
        brenier = solution.map.assign(z)
        out = {"semidiscrete_mass_error": solution.mass_error,
               "semidiscrete_mass_standard_error": solution.mass_standard_error,
               "semidiscrete_empty_cells": solution.empty_cells,
               "semidiscrete_converged": float(solution.converged),
               "semidiscrete_solver_disagreement": self._disagreement(prior, points, weights, solution, z,
                                                                      run.streams)}
        basins = torch.stack([point_basins(points, weights, c, z, horizon, steps=self.steps)[0]
                              for horizon in self.horizons])
        limit = basins[-1]

        def compare(other):
            differ = (basins != other).double().mean(1)
            distance = ((points[basins] - points[other]) ** 2).sum(-1).mean(1).sqrt()
            return differ.numpy(), torch.sqrt(differ * (1 - differ) / self.samples).numpy(), distance.numpy()

        basin_masses = torch.stack([torch.bincount(b, minlength=count) for b in basins]).double() / self.samples
        out["basin_mass_error"] = (basin_masses - weights).abs().max(1).values.numpy()
        (out["basin_mismatch_limit"], out["basin_mismatch_limit_error"],
         out["map_distance_limit"]) = compare(limit)
        (out["basin_mismatch_brenier"], out["basin_mismatch_brenier_error"],
         out["map_distance_brenier"]) = compare(brenier)
        posterior_mean = point_posterior_mean(points, weights, c)
        out["flow_jacobian_asymmetry"] = np.array([
            float(jacobian_asymmetry(posterior_mean, z[:self.jacobian_samples], horizon, self.jacobian_level,
                                     steps=self.steps).mean()) for horizon in self.horizons])
        out["limit_convergence_rate"] = _fitted_rate(np.array(self.horizons), out["map_distance_limit"])
        if self.dim == 2:
            axis = torch.linspace(-self.half_width, self.half_width, self.grid, dtype=torch.float64)
            grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1).reshape(-1, 2)
            out["flow_basins"] = torch.stack([
                point_basins(points, weights, c, grid, horizon, steps=self.steps)[0]
                for horizon in self.horizons]).reshape(-1, self.grid, self.grid).numpy()
            out["brenier_cells"] = solution.map.assign(grid).reshape(self.grid, self.grid).numpy()
            out["basin_data_points"] = _points_on_grid(points.numpy(), weights.numpy(), axis.numpy())
        return {name: np.asarray(value, dtype=float) for name, value in out.items()}

    def _disagreement(self, prior, points, weights, solution, z, streams) -> float:
        """Prior mass on which the exact and the stochastic solvers' maps differ (NaN unless both apply)."""
        if not self.compare_solvers or resolve_method("auto", prior) != "newton":
            return math.nan
        other = "pot" if solution.method == "newton" else "newton"
        second = solve_semidiscrete(prior, points, weights, method=other,
                                    seed=streams.seed_of(f"{self.name}.semidiscrete_second"))
        return float((second.map.assign(z) != solution.map.assign(z)).double().mean())


def _points_on_grid(points: np.ndarray, weights: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """(len(axis), len(axis)) indexed [y, x]: the index of the data point in each cell of the grid whose cell
    centres are ``axis`` on both axes (the heaviest where several share a cell), -1 where none."""
    marks = np.full((len(axis), len(axis)), -1.0)
    step = axis[1] - axis[0]
    cells = np.rint((points - axis[0]) / step).astype(int)
    inside = ((cells >= 0) & (cells < len(axis))).all(axis=1)
    for j in np.argsort(weights, kind="stable"):  # heavier points are written last and win a shared cell
        if inside[j]:
            marks[cells[j, 1], cells[j, 0]] = j
    return marks


def _fitted_rate(horizons: np.ndarray, distances: np.ndarray) -> float:
    """−slope of log distance against T, least squares over the finite horizons with a positive distance."""
    usable = np.isfinite(horizons) & (distances > 0)
    if usable.sum() < 2:
        return math.nan
    return float(-np.polyfit(horizons[usable], np.log(distances[usable]), 1)[0])


@hookimpl
def stochthermo_register_observers():
    return [LongTimeLimit]
