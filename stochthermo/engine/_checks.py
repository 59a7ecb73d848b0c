r"""Plugins checked while they run: what an observer returns against what it declares, and whether a process's
flow carries its own marginals.

* :func:`check_declared`: when a task's observers have run, every observer must have returned exactly its
  declared variables, each with as many dims as it declares and the sizes of the dims the engine knows
  (``time``, ``perturbation`` and the observer's own coordinates). A :class:`SimulationError` names the
  observer, the variable and the shapes.
* :func:`check_marginals`: where a process knows its marginal :math:`P_t` in closed form, the particles its
  exact velocity carried from :math:`P_\tau` must follow it. At t = 0 and t = τ/2 the particles' mean and
  second moment :math:`E|x|^2` must lie within :data:`STANDARD_ERRORS` standard errors of the marginal's,
  plus :data:`SYSTEMATIC` of the marginal's scale for the integrator's own error. The standard error is that of
  independent draws (:math:`\sqrt{\operatorname{tr}\Sigma / n_\mathrm{eff}}` for the mean,
  :math:`\sqrt{(2\operatorname{tr}\Sigma^2 + 4\mu^\top\Sigma\mu)/n_\mathrm{eff}}` for the second moment, the
  Gaussian value, :math:`n_\mathrm{eff} = 1/\sum_i w_i^2`), larger than the error of quasi-random and quantile
  ensembles, so the check only catches a process whose velocity does not generate its marginals (a sign error,
  a wrong schedule), never sampling noise.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from stochthermo.errors import SimulationError
from stochthermo.roles._observer import Run

#: how many standard errors of independent draws a forward moment may lie from its closed form
STANDARD_ERRORS = 8.0
#: the integrator's own relative error allowed on top (RK4 and the reverse SDEs at the default steps stay far below)
SYSTEMATIC = 0.1


def check_declared(observers, measured: dict[str, dict], *, sizes: dict[str, int], protocol: str,
                   seed: int) -> None:
    """Each observer's results against its :meth:`~stochthermo.Observer.variables` (module docstring)."""
    for observer in observers:
        label = f"observer '{observer.name}'"
        where = f"(protocol '{protocol}', seed {seed})"
        results = measured[observer.name]
        if not isinstance(results, dict):
            raise SimulationError(f"{label} returned {type(results).__name__}, not a mapping of variables {where}")
        declared = observer.variables()
        known = {**sizes, **{dim: len(values) for dim, values in observer.coordinates().items()}}
        for name, var in declared.items():
            if name not in results:
                raise SimulationError(f"{label} did not return its declared variable '{name}' {where}")
            unknown = [dim for dim in var.dims if dim not in known]
            if unknown:
                raise SimulationError(f"{label} declares '{name}' over dims {unknown} that have no coordinates()")
            expected = tuple(known[dim] for dim in var.dims)
            shape = np.shape(results[name])
            if shape != expected:
                comma = "," if len(expected) == 1 else ""
                raise SimulationError(f"{label} returned '{name}' of shape {shape}; it declares "
                                      f"({', '.join(var.dims)}{comma}) = {expected} {where}")
        extra = sorted(set(results) - set(declared))
        if extra:
            raise SimulationError(f"{label} returned undeclared variables {', '.join(extra)} {where}")


def check_marginals(run: Run) -> None:
    """The forward particles of ``run`` against its process's closed-form marginals (module docstring); nothing
    when no observer computed the flows or the process knows no marginal."""
    if "flows" not in run.__dict__:  # no observer needed the flows: nothing was transported
        return
    forward = run.forward
    weights = forward.weights.to(torch.float64)
    effective = float(1.0 / (weights**2).sum())
    for k in (0, len(forward.times) // 2):
        t = float(forward.times[k])
        law = run.process.marginal(t)
        if law is None:
            return
        x = forward.positions[k].to(torch.float64)
        mean, covariance = law.mean().to(x).reshape(-1), law.covariance().to(x)
        second = float(torch.trace(covariance) + mean @ mean)
        found_mean = weights @ x
        found_second = float(weights @ (x**2).sum(1))
        mean_error = math.sqrt(float(torch.trace(covariance)) / effective)
        second_error = math.sqrt(float(2 * torch.trace(covariance @ covariance) + 4 * mean @ covariance @ mean)
                                 / effective)
        off_mean = float((found_mean - mean).norm())
        off_second = abs(found_second - second)
        if not (off_mean <= STANDARD_ERRORS * mean_error + SYSTEMATIC * math.sqrt(second)
                and off_second <= STANDARD_ERRORS * second_error + SYSTEMATIC * second):
            raise SimulationError(
                f"process '{run.process.name}' does not carry its own marginals: at t = {t:.6g} its velocity took "
                f"P_tau to particles of mean {found_mean.cpu().numpy().round(6).tolist()} and E|x|^2 = "
                f"{found_second:.6g}, but marginal(t) has {mean.cpu().numpy().round(6).tolist()} and {second:.6g} "
                f"(protocol '{run.protocol}', seed {run.seed}): its velocity does not generate its marginals")
