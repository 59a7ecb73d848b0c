r"""Thermodynamic cost of the forward process (docs/theory.md §2).

Over the forward marginals :math:`P_t` (particles of :math:`P_\tau` carried by the exact velocity,
:attr:`~stochthermo.Run.forward`, or, with the grid split, quadrature over the exact density):

* :math:`T_t\dot S_t^{tot} = \int|\nu_t|^2 P_t\,dx` (Eq. (36)), the dissipation rate;
* :math:`\dot S_t^{tot}`, only where :math:`0 < T_t < \infty`;
* :math:`v_2(t)^2 = \int|\nabla\phi_t|^2P_t\,dx` (Eq. (66)), equal to :math:`T_t\dot S_t` for a conservative
  process and in one dimension (every 1-D field is a gradient), the housekeeping part
  :math:`T_t\dot S^{hk}_t = T_t\dot S_t - v_2^2` then being zero (Eq. (67)). For a non-conservative process in
  2-D (or always, with ``split: grid``) both come from the Helmholtz projection of ν_t on a grid over the
  exact marginal :math:`P_t` (:func:`stochthermo.numerics.helmholtz_split`), with the orthogonality residual and the
  housekeeping share :math:`\int T\dot S^{hk}dt / \int(v_2^2 + T\dot S^{hk})dt`;
* the costs :math:`c_2 = \int v_2^2dt`, :math:`w_D = \int T\dot S\,dt`, the path length
  :math:`L_\tau = \int v_2 dt`, and the speed-limit terms :math:`L_\tau^2/\tau \ge W_2(P_0,P_\tau)^2/\tau`
  (Eq. (92)).
"""

from __future__ import annotations

import numpy as np
import torch

from stochthermo import Observer, ScenarioError, Variable, hookimpl
from stochthermo.measures import w2_squared
from stochthermo.numerics import HelmholtzSplit, covering_grid, helmholtz_split, time_integral
from stochthermo.roles import Column, recorded

T = ("time",)
SPLITS = ("auto", "grid")
#: below 2 cells per standard deviation of P_t's narrowest feature the split is off by more than 1 %
MIN_CELLS_PER_WIDTH = 2.0


#: the attribute of a forward quantity (a property of the forward process, whatever the sampler)
FORWARD_ONLY = ("the forward process alone (the same for every protocol of one process, whatever its solver: "
                "see the dataset attribute forward_processes)")


class Thermodynamics(Observer):
    """Temperature, entropy production, Wasserstein speed, the housekeeping part and the costs c_2, w_D,
    L_τ, W_2²/τ. ``split``: ``auto`` (exact for conservative processes, grid otherwise) or ``grid``. The
    grid at time t covers P_t to ``grid_extent`` component widths with ``cells_per_width`` cells per width
    of its narrowest component, and at most ``max_grid_points`` cells per axis."""

    name = "thermodynamics"

    def __init__(self, split: str = "auto", cells_per_width: float = 2.5, grid_extent: float = 6.0,
                 max_grid_points: int = 400):
        if split not in SPLITS:
            raise ScenarioError(f"must be one of {', '.join(SPLITS)}, got '{split}'", key="split")
        if cells_per_width < MIN_CELLS_PER_WIDTH:
            raise ScenarioError(f"grid too coarse: must be >= {MIN_CELLS_PER_WIDTH:g} cells per width of P_t's "
                                f"narrowest feature (the split is off by 10 % at 1), got {cells_per_width}",
                                key="cells_per_width")
        if grid_extent <= 0:
            raise ScenarioError(f"must be > 0, got {grid_extent}", key="grid_extent")
        self.split, self.cells_per_width, self.grid_extent = split, cells_per_width, grid_extent
        self.max_grid_points = max_grid_points
        self.grids = {}
        #: results by (forward group, seed, device, dtype, torch threads): the protocols of one forward process
        #: measure it once; a later run of the scenario on other numerics (another device, dtype or thread count,
        #: whose reductions round differently) measures it again
        self._measured: dict[tuple, dict] = {}

    @classmethod
    def summary_columns(cls, ds):
        return recorded(ds, [Column("c_2", "kinetic_cost", 40), Column("w_D", "dissipation", 60),
                             Column("hk share", "housekeeping_share", 70), Column("W2^2/tau", "geodesic_cost", 80),
                             Column("c_2/n_d", "kinetic_cost", 101, per="data_dimension")])

    def prepare(self, setup):
        """Fix the grids of every protocol that needs the split, one per time, and check that each covers
        and resolves P_t within ``max_grid_points`` cells per axis."""
        times = setup.times.tolist()
        for protocol in setup.protocols.values():
            process = protocol.process
            if (process.conservative and self.split == "auto") or setup.data.dim == 1:
                continue
            key = f"protocols.{protocol.name}"
            if setup.data.dim != 2:
                raise ScenarioError(f"the excess/housekeeping split of the non-conservative process '{process.name}'"
                                    f" is computed on a 2-D grid; the data are {setup.data.dim}-D", key=key)
            grids = []
            for t in times:
                marginal = process.marginal(t)
                if marginal is None:
                    raise ScenarioError(f"process '{process.name}' has no closed-form marginal P_t for the grid "
                                        "split", key=key)
                try:
                    grid = covering_grid(marginal, self.cells_per_width, self.grid_extent)
                except ValueError as exc:
                    raise ScenarioError(f"grid too coarse for the data's extent at t = {t:.4g} (protocol "
                                        f"'{protocol.name}'): {exc}; give the data a kernel width (noise or "
                                        "smoothing > 0)", key=key) from None
                if max(len(grid.x1), len(grid.x2)) > self.max_grid_points:
                    raise ScenarioError(
                        f"grid too coarse for the data's extent: at t = {t:.4g} (protocol '{protocol.name}') "
                        f"resolving P_t needs {max(len(grid.x1), len(grid.x2))} cells per axis "
                        f"(spacing {max(grid.spacing):.3g}), more than max_grid_points = {self.max_grid_points}: "
                        "raise max_grid_points or widen the data's kernel", key="max_grid_points")
                grids.append(grid)
            self.grids[protocol.name] = grids

    def variables(self):
        variables = {
            "temperature": Variable(T, "temperature", "1", "T_t", "(22)", nonfinite=(
                "T_t diverges where m_t = 0 (t = tau for cosine and cond_ot) and is undefined (NaN) for the "
                "optimal-transport protocol")),
            "dissipation_rate": Variable(T, "dissipation rate", "1", "T_t dS_t^tot/dt", "(36)",
                                         description="dissipation rate (temperature times total entropy production "
                                                     "rate)"),
            "entropy_production_rate": Variable(T, "total entropy production rate", "1", "dS_t^tot/dt", "(36)",
                                                display_units="k_B",
                                                nonfinite="defined only where 0 < T_t < inf (NaN elsewhere)"),
            "wasserstein_speed_squared": Variable(T, "squared Wasserstein speed",
                                                  "1", "v_2(t)^2", "(66)",
                                                  description="squared Wasserstein speed (excess dissipation rate)"),
            "housekeeping_rate": Variable(T, "housekeeping dissipation rate", "1", "T_t dS_t^hk/dt", "(67)"),
            "orthogonality_residual": Variable(T, "orthogonality residual of the split", "1",
                                               "<grad phi, nu - grad phi>_P / int |nu|^2 P", "(67)",
                                               description="relative orthogonality residual of the "
                                                           "excess/housekeeping split (0 where the split is exact)"),
            "housekeeping_share": Variable((), "housekeeping share of the dissipation", "1",
                                           "int T dS^hk dt / int T dS dt", "(67)"),
            "kinetic_cost": Variable((), "kinetic cost", "1", "c_2",
                                     "(81)-(83)",
                                     description="kinetic cost (integrated squared Wasserstein speed)"),
            "dissipation": Variable((), "integrated dissipation", "1", "w_D", "(81)"),
            "path_length": Variable((), "Wasserstein path length", "1", "L_tau", "(92)"),
            "path_length_cost": Variable((), "squared path length over tau", "1", "L_tau^2/tau", "(92)"),
            "geodesic_cost": Variable((), "geodesic cost", "1",
                                      "W_2(P_0,P_tau)^2/tau", "(92)",
                                      description="squared W_2 distance between P_0 and P_tau over tau"),
        }
        # every one of them is a property of the forward process alone: equal for protocols that share it
        for var in variables.values():
            var.attrs["measured_on"] = FORWARD_ONLY
        return variables

    def draws_random_numbers(self, setup):
        return False  # a function of the flows alone

    def observe(self, run, measured):
        """The forward quantities of ``run``'s process, measured once per forward group and seed (every
        protocol of one process gets that one measurement: the forward marginals do not depend on the sampler)."""
        key = (run.forward_group, run.seed, str(run.times.device), str(run.times.dtype), torch.get_num_threads())
        if key not in self._measured:
            self._measured[key] = self._measure(run)
        return {name: np.copy(value) for name, value in self._measured[key].items()}

    def _measure(self, run):
        times = run.times.cpu().numpy()
        tau = times[-1] - times[0]
        temperature = run.process.temperature(run.times).cpu().numpy()
        if run.protocol in self.grids:  # every term from the one quadrature, so that T Ṡ = v_2² + T Ṡ^hk
            splits = [self._split(run, k) for k in range(len(times))]
            dissipation_rate = np.array([s.total for s in splits])
            speed_squared = np.array([s.excess for s in splits])
            housekeeping = np.array([s.housekeeping for s in splits])
            residual = np.array([s.orthogonality for s in splits])
            share = time_integral(housekeeping, times) / time_integral(speed_squared + housekeeping, times)
        else:  # gradient field: v_2² = ∫|ν|²P, no housekeeping part (Eq. (67))
            dissipation_rate = run.forward.kinetic_energy().cpu().numpy()
            speed_squared, housekeeping = dissipation_rate.copy(), np.zeros_like(dissipation_rate)
            residual, share = np.zeros_like(dissipation_rate), 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            valid = (temperature > 0) & np.isfinite(temperature)
            entropy_rate = np.where(valid, dissipation_rate / np.where(valid, temperature, 1.0), np.nan)
        path_length = time_integral(np.sqrt(speed_squared), times)
        return {
            "temperature": temperature,
            "dissipation_rate": dissipation_rate,
            "entropy_production_rate": entropy_rate,
            "wasserstein_speed_squared": speed_squared,
            "housekeeping_rate": housekeeping,
            "orthogonality_residual": residual,
            "housekeeping_share": share,
            "kinetic_cost": time_integral(speed_squared, times),
            "dissipation": time_integral(dissipation_rate, times),
            "path_length": path_length,
            "path_length_cost": path_length**2 / tau,
            "geodesic_cost": self._geodesic_cost(run) / tau,
        }

    def _geodesic_cost(self, run) -> float:
        """W_2(P_0, P_τ)² between the ends of the forward trajectory, whose length L_τ is measured."""
        return w2_squared(run.forward, 0, run.forward, -1)

    def _split(self, run, k: int) -> HelmholtzSplit:
        t = float(run.times[k])
        return helmholtz_split(self.grids[run.protocol][k], lambda x: run.process.velocity_and_log_density(t, x),
                               device=run.times.device)


@hookimpl
def stochthermo_register_observers():
    return [Thermodynamics]


