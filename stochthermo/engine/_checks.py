r"""Plugins checked while they run: what an observer returns against what it declares, and whether a process's
flow carries its own marginals.

* :func:`check_declared`: when a task's observers have run, every observer must have returned exactly its
  declared variables, each with as many dims as it declares and the sizes of the dims the engine knows
  (``time``, ``perturbation`` and the observer's own coordinates). A :class:`SimulationError` names the
  observer, the variable and the shapes.
* :func:`check_marginals`: the particles a process's exact velocity carried from :math:`P_\tau` must follow its
  marginals. At t = 0 (against the data law) and, where the
  flow was integrated from the velocity rather than an exact flow map, at t = τ/2, the particles' mean and
  second moment :math:`E|x|^2` must lie within :data:`STANDARD_ERRORS` standard errors of the marginal's,
  plus :data:`SYSTEMATIC` of the marginal's scale for the integrator's own error. The standard error is that of
  independent draws (:math:`\sqrt{\operatorname{tr}\Sigma / n_\mathrm{eff}}` for the mean,
  :math:`\sqrt{\operatorname{Var}|x|^2 / n_\mathrm{eff}}` for the second moment, the variance exact for mixtures and
  point clouds (:func:`square_norm_moments`), :math:`n_\mathrm{eff} = 1/\sum_i w_i^2`), at least the error of
  quasi-random and quantile ensembles: at 8 standard errors a correct process is refused with probability
  below 1e-14 per moment where the central limit theorem applies (a heavy-tailed |x|² needs more particles for
  it), so the check catches a process whose velocity does not generate its marginals (a sign error, a wrong
  schedule), not sampling noise.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from stochthermo.errors import SimulationError
from stochthermo.roles._observer import Run, coordinate_values

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
        known = {**sizes, **{dim: len(coordinate_values(values)) for dim, values in observer.coordinates().items()}}
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
    """The forward particles of ``run`` against the data law at t = 0 and its process's closed-form marginal at
    τ/2 (module docstring); nothing when no observer computed the flows."""
    if "flows" not in run.__dict__:  # no observer needed the flows: nothing was transported
        return
    forward = run.forward
    weights = forward.weights.to(torch.float64)
    effective = float(1.0 / (weights**2).sum())
    # t = 0 against the data law itself (P_0 = q for every process); t = τ/2 against marginal(τ/2) where the
    # flow was integrated from the velocity (an exact flow map is held to its velocity when a plugin loads)
    checks = [(0, run.process.data)]
    middle = len(forward.times) // 2
    if run.process.flow_map() is None and (law := run.process.marginal(float(forward.times[middle]))) is not None:
        checks.append((middle, law))
    for k, law in checks:
        t = float(forward.times[k])
        x = forward.positions[k].to(torch.float64)
        if not bool(torch.isfinite(x).all()):
            return  # non-finite particles: the finite check names the quantity and the times
        mean = law.mean().to(x).reshape(-1)
        second, second_variance = square_norm_moments(law, mean)
        found_mean = weights @ x
        found_second = float(weights @ (x**2).sum(1))
        mean_error = math.sqrt(max(second - float(mean @ mean), 0.0) / effective)
        second_error = math.sqrt(second_variance / effective)
        off_mean = float((found_mean - mean).norm())
        off_second = abs(found_second - second)
        if not (off_mean <= STANDARD_ERRORS * mean_error + SYSTEMATIC * math.sqrt(second)
                and off_second <= STANDARD_ERRORS * second_error + SYSTEMATIC * second):
            raise SimulationError(
                f"process '{run.process.name}' does not carry its own marginals: at t = {t:.6g} its velocity took "
                f"P_tau to particles of mean {found_mean.cpu().numpy().round(6).tolist()} and E|x|^2 = "
                f"{found_second:.6g}, but marginal(t) has {mean.cpu().numpy().round(6).tolist()} and {second:.6g} "
                f"(protocol '{run.protocol}', seed {run.seed}): its velocity does not generate its marginals")


def square_norm_moments(law, mean: torch.Tensor | None = None) -> tuple[float, float]:
    r""":math:`E|x|^2` and :math:`\operatorname{Var}|x|^2` of a law: exact for Gaussian mixtures and smoothed point
    clouds (sums over their Gaussian components N(μ_k, Σ_k), each with :math:`E|x|^2 = \operatorname{tr}\Sigma_k +
    |\mu_k|^2` and :math:`E|x|^4 = (E|x|^2)^2 + 2\operatorname{tr}\Sigma_k^2 + 4\mu_k^\top\Sigma_k\mu_k`), the
    Gaussian value from the mean (``mean`` where the caller has it) and covariance otherwise."""
    mixture, cloud = law.mixture(), law.point_cloud()
    if mixture is not None:
        weights, means, covariances = mixture.weights, mixture.means, mixture.covariances
        trace = covariances.diagonal(dim1=1, dim2=2).sum(1)
        trace_squared = (covariances**2).sum((1, 2))
        quadratic = torch.einsum("ki,kij,kj->k", means, covariances, means)
    elif cloud is not None:
        weights, means = cloud.probabilities(), cloud.points
        if cloud.kernel is None:
            variance = cloud.std**2
            trace = torch.full_like(weights, means.shape[1] * variance)
            trace_squared = torch.full_like(weights, means.shape[1] * variance**2)
            quadratic = variance * (means**2).sum(1)
        else:
            trace = torch.trace(cloud.kernel).expand_as(weights)
            trace_squared = (cloud.kernel**2).sum().expand_as(weights)
            quadratic = torch.einsum("ki,ij,kj->k", means, cloud.kernel, means)
    else:
        covariance = law.covariance()
        mean = law.mean() if mean is None else mean
        weights, means = torch.ones(1, dtype=covariance.dtype), mean.reshape(1, -1).to(covariance)
        trace, trace_squared = torch.trace(covariance).reshape(1), (covariance**2).sum().reshape(1)
        quadratic = torch.einsum("ki,ij,kj->k", means, covariance, means)
    second_k = trace + (means**2).sum(1)
    fourth_k = second_k**2 + 2 * trace_squared + 4 * quadratic
    second = float(weights @ second_k)
    return second, max(float(weights @ fourth_k) - second**2, 0.0)
