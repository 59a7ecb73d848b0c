r"""Thermodynamic cost of the forward process (physics.md §2).

Along the true process (particles of :math:`P_t` carried by the exact velocity):

* :math:`T_t\dot S_t^{tot} = \int|\nu_t|^2 P_t\,dx` (Eq. (36)), the dissipation rate;
* :math:`\dot S_t^{tot}`, only where :math:`0 < T_t < \infty`;
* :math:`v_2(t)^2 = \int|\nabla\phi_t|^2P_t\,dx` (Eq. (66)), equal to :math:`T_t\dot S_t` for a conservative
  process and in one dimension (every 1-D field is a gradient), the housekeeping part
  :math:`T_t\dot S^{hk}_t = T_t\dot S_t - v_2^2` then being zero (Eq. (67));
* the costs :math:`c_2 = \int v_2^2dt`, :math:`w_D = \int T\dot S\,dt`, the path length
  :math:`L_\tau = \int v_2 dt`, and the speed-limit terms :math:`L_\tau^2/\tau \ge W_2(P_0,P_\tau)^2/\tau`
  (Eq. (92)).
"""

from __future__ import annotations

import numpy as np

from stochthermo import Observer, SimulationError, Variable, hookimpl
from stochthermo.integrate import time_integral
from stochthermo.wasserstein import w2_squared

T = ("time",)


class Thermodynamics(Observer):
    """Temperature, entropy production, Wasserstein speed and the costs c_2, w_D, L_τ, W_2²/τ."""

    name = "thermodynamics"

    def variables(self):
        return {
            "temperature": Variable(T, "temperature", "1", "T_t", "(22)", nonfinite=(
                "T_t diverges where m_t = 0 (t = tau for cosine and cond_ot) and is undefined (NaN) for the "
                "optimal-transport protocol")),
            "dissipation_rate": Variable(T, "dissipation rate (temperature times total entropy production "
                                         "rate)", "1", "T_t dS_t^tot/dt", "(36)"),
            "entropy_production_rate": Variable(T, "total entropy production rate", "1", "dS_t^tot/dt", "(36)",
                                                nonfinite="defined only where 0 < T_t < inf (NaN elsewhere)"),
            "wasserstein_speed_squared": Variable(T, "squared Wasserstein speed (excess dissipation rate)",
                                                  "1", "v_2(t)^2", "(66)"),
            "housekeeping_rate": Variable(T, "housekeeping dissipation rate", "1", "T_t dS_t^hk/dt", "(67)"),
            "kinetic_cost": Variable((), "kinetic cost (integrated squared Wasserstein speed)", "1", "c_2",
                                     "(81)-(83)"),
            "dissipation": Variable((), "integrated dissipation", "1", "w_D", "(81)"),
            "path_length": Variable((), "Wasserstein path length", "1", "L_tau", "(92)"),
            "path_length_cost": Variable((), "squared path length over tau", "1", "L_tau^2/tau", "(92)"),
            "geodesic_cost": Variable((), "squared W_2 distance between P_0 and P_tau over tau", "1",
                                      "W_2(P_0,P_tau)^2/tau", "(92)"),
        }

    def observe(self, run, measured):
        true = run.true
        if not run.process.conservative and true.dim > 1:
            raise SimulationError(f"protocol '{run.protocol}': the excess/housekeeping split of a "
                                  "non-conservative process needs a Helmholtz projection, not available here")
        times = run.times.cpu().numpy()
        tau = times[-1] - times[0]
        temperature = run.process.temperature(run.times).cpu().numpy()
        dissipation_rate = true.kinetic_energy().cpu().numpy()
        speed_squared = dissipation_rate.copy()  # gradient field: v_2² = ∫|ν|²P (Eq. (67))
        with np.errstate(divide="ignore", invalid="ignore"):
            valid = (temperature > 0) & np.isfinite(temperature)
            entropy_rate = np.where(valid, dissipation_rate / np.where(valid, temperature, 1.0), np.nan)
        path_length = time_integral(np.sqrt(speed_squared), times)
        return {
            "temperature": temperature,
            "dissipation_rate": dissipation_rate,
            "entropy_production_rate": entropy_rate,
            "wasserstein_speed_squared": speed_squared,
            "housekeeping_rate": dissipation_rate - speed_squared,
            "kinetic_cost": time_integral(speed_squared, times),
            "dissipation": time_integral(dissipation_rate, times),
            "path_length": path_length,
            "path_length_cost": path_length**2 / tau,
            "geodesic_cost": w2_squared(true, 0, true, -1) / tau,
        }


@hookimpl
def stochthermo_register_observers():
    return [Thermodynamics]


