r"""Imperfect estimation (docs/theory.md §4, Eq. (100)): the residual L, D_t along the estimated flow, the slack
of (100), the likelihood of held-out data, and the training loss curve.

Every term refers to the pair that ΔW_1 compares: the true reverse process, whose law is written P_t — the
forward marginal when it starts from :math:`P_\tau`, the prior carried by the exact flow with
``reverse_start: prior`` — and the estimated one from the perturbed start.

* :math:`L(t) = E_{P_t}|\nu_t - \hat\nu_t|^2` over the particles of the true reverse process (quantile
  nodes in 1-D) and :math:`L = \frac1\tau\int_0^\tau L(t)\,dt`;
* :math:`D_t = \int(\tilde P_t - P_t)^2/P_t`, the Pearson χ² of the estimated reverse process started from
  the perturbed law against the true one, as :math:`E_{\tilde P_t}[\tilde P_t/P_t] - 1` over the perturbed
  particles, whose log densities follow the log-density ODE along ν̂ (:func:`stochthermo.numerics.log_density_flow`:
  exact divergence for d ≤ 3, ``probes`` Hutchinson probes above), and :math:`\log P_t` from the process's
  closed-form marginal, or, from the prior, by the log-density ODE of the exact flow from t to τ;
  :math:`D_{max} = \max_t D_t`. For the exact estimator :math:`\tilde P_t/P_t` is constant along
  particles, so :math:`D_t = D_0` (E1);
* Eq. (100): :math:`|\Delta W_1|/\sqrt{\tau D_{max}} \le \sqrt{w_D} + \sqrt{1 + 1/D_{max}}\sqrt{\tau L}`,
  its slack (right minus left) and status, with the tolerance rule of ``bounds``;
* :math:`E_q\log\hat p_0(y)` over ``heldout`` fresh data draws, by integrating the log-density ODE from y at
  t = 0 to τ and evaluating the reverse start law there;
* the training loss curve of a ``neural`` estimator (NaN for others).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from stochthermo import Coordinate, Observer, ScenarioError, Variable, hookimpl
from stochthermo.numerics import log_density_flow, time_integral
from stochthermo.roles import HOLDS, NOT_APPLICABLE, STATUS_ATTRS, VIOLATED, RelationColumn, Trained, recorded

PT = ("perturbation", "time")
NO_DENSITY = "NaN where P_t has no closed-form density (sample-based OT) or D_0 is infinite"


class Estimation(Observer):
    """L(t), L, D_t, D_max, the slack of Eq. (100), the held-out log-likelihood and the training loss."""

    name = "estimation"
    consumes = {"response": ("wasserstein_1_change", "reference_dissipation")}

    def __init__(self, probes: int = 16, heldout: int = 1024, rtol: float = 1e-6):
        if probes < 1:
            raise ScenarioError(f"must be >= 1, got {probes}", key="probes")
        if heldout < 2:
            raise ScenarioError(f"must be >= 2, got {heldout}", key="heldout")
        if not 0 <= rtol < 1:
            raise ScenarioError(f"must be in [0, 1), got {rtol}", key="rtol")
        self.probes, self.heldout, self.rtol = probes, heldout, rtol
        self.records = 0

    @classmethod
    def relation_columns(cls, ds):
        return recorded(ds, [RelationColumn("(100)", "holds_imperfect_estimation", 80)])

    def prepare(self, setup):
        stochastic = [p for p in setup.protocols.values() if p.solver.stochastic]
        if stochastic:
            raise ScenarioError(f"D_t and the likelihood follow the log-density ODE of a deterministic flow; protocol "
                                f"'{stochastic[0].name}' uses the stochastic solver '{stochastic[0].solver.name}'")
        cloud = setup.data.point_cloud()
        if cloud is not None and cloud.std == 0:
            raise ScenarioError("the residual at t = 0 and the likelihood need a data law with a density: give the "
                                "data a kernel width (noise or smoothing > 0)")
        trained = [p.estimator for p in setup.protocols.values() if isinstance(p.estimator, Trained)]
        intervals = {estimator.record_every for estimator in trained}
        if len(intervals) > 1:
            raise ScenarioError(f"the trained estimators record their loss every {sorted(intervals)} steps: use one "
                                "record_every, so that the loss curves share the training_step axis")
        self.record_every = intervals.pop() if intervals else 1
        self.records = max((estimator.training_steps // self.record_every for estimator in trained), default=0)

    def coordinates(self):
        if not self.records:
            return {}
        return {"training_step": Coordinate(self.record_every * np.arange(1, self.records + 1),
                                           "training step at the end of a recording interval")}

    def variables(self):
        out = {
            "estimation_residual_rate": Variable(("time",), "squared velocity estimation error", "1",
                                                 "E_P_t |nu_t - nu^_t|^2", "(100)",
                                                 description="squared estimation error of the velocity over P_t"),
            "estimation_residual": Variable((), "time-averaged squared estimation error", "1", "L", "(100)"),
            "estimated_divergence": Variable(PT, "chi-square of the estimated flow", "1", "D_t", "(100)",
                                             nonfinite=NO_DENSITY,
                                             description="chi-square of the estimated perturbed reverse process "
                                                         "against P_t"),
            "estimated_divergence_max": Variable(("perturbation",), "largest chi-square of the estimated flow",
                                                 "1", "D_max", "(100)", nonfinite=NO_DENSITY,
                                                 description="largest chi-square along the estimated flow"),
            "slack_imperfect_estimation": Variable(("perturbation",), "slack of the imperfect-estimation bound",
                                                   "1", "slack[(100)]", "(100)", nonfinite=NO_DENSITY),
            "holds_imperfect_estimation": Variable(("perturbation",), "status of the imperfect-estimation bound",
                                                   "1", "[(100)]", "(100)", attrs={**STATUS_ATTRS, "rtol": self.rtol}),
            "heldout_log_likelihood": Variable((), "held-out mean log-likelihood",
                                               "1", "E_q log p^_0", "(100)",
                                               description="mean log-likelihood of held-out data under the estimated "
                                                           "flow"),
        }
        if self.records:
            out["training_loss"] = Variable(("training_step",), "flow-matching training loss", "1", "loss", "(100)",
                                            nonfinite="NaN for estimators that are not trained",
                                            description="flow-matching training loss (mean over the recording "
                                                        "interval)")
        return out

    def observe(self, run, measured):
        times = run.times
        grid = times.cpu().numpy()
        tau = float(grid[-1] - grid[0])
        rate = np.array([self._residual(run, k) for k in range(len(grid))])
        residual = time_integral(rate, grid) / tau
        divergence = self._divergences(run)
        d_max = divergence.max(-1)
        change = np.asarray(measured["response"]["wasserstein_1_change"])
        w_d = float(measured["response"]["reference_dissipation"])  # of the path ΔW_1 is measured on
        with np.errstate(divide="ignore", invalid="ignore"):
            smaller = np.abs(change) / np.sqrt(tau * d_max)
            larger = math.sqrt(w_d) + np.sqrt(1 + 1 / d_max) * math.sqrt(tau * residual)
            slack = larger - smaller
            status = np.where(slack >= -self.rtol * np.maximum(larger, smaller), HOLDS, VIOLATED)
        status = np.where(np.isfinite(slack), status, NOT_APPLICABLE).astype(np.int8)
        out = {"estimation_residual_rate": rate, "estimation_residual": residual,
               "estimated_divergence": divergence, "estimated_divergence_max": d_max,
               "slack_imperfect_estimation": slack, "holds_imperfect_estimation": status,
               "heldout_log_likelihood": self._heldout(run)}
        if self.records:
            losses = np.full(self.records, np.nan)
            recorded = run.estimator.training_losses() if isinstance(run.estimator, Trained) else None
            if recorded is not None:
                losses[: len(recorded)] = recorded
            out["training_loss"] = losses
        return out

    def _residual(self, run, k: int) -> float:
        true = run.true
        error = ((run.estimator.velocity(float(run.times[k]), true.positions[k]) - true.velocities[k]) ** 2).sum(1)
        return float(error @ true.weights)

    def _divergences(self, run) -> np.ndarray:
        """D_t on the grid (forward time), (perturbation, time): one log-density flow over all the perturbed
        particles together."""
        names = list(run.perturbed)
        if run.process.marginal(float(run.times[0])) is None:
            return np.full((len(names), len(run.times)), np.nan)
        starts = [run.perturbed[name].positions[-1] for name in names]
        log_starts = [run.perturbations[name].log_prob(x) for name, x in zip(names, starts, strict=True)]
        positions, log_densities = self._log_density_flow(run, torch.cat(starts), torch.cat(log_starts),
                                                          run.times.flip(0))
        positions, log_densities = positions.flip(0), log_densities.flip(0)
        log_true = torch.stack([self._log_true_density(run, k, positions[k]) for k in range(len(run.times))])
        ratios = torch.exp(log_densities - log_true).split([len(x) for x in starts], dim=1)
        return np.stack([(ratio @ run.perturbed[name].weights).cpu().numpy() - 1
                         for name, ratio in zip(names, ratios, strict=True)])

    def _log_true_density(self, run, k: int, x: torch.Tensor) -> torch.Tensor:
        """log of the true reverse process's law at the k-th time: the closed-form P_t when it starts from P_τ;
        otherwise (``reverse_start: prior``) the law Q_t of the prior carried by the exact flow,
        log Q_t(x) = log p(X_τ) + ∫_t^τ ∇·ν ds along the exact flow X from x (the log-density ODE)."""
        if run.reverse_start == "end_distribution":
            return run.process.marginal(float(run.times[k])).log_prob(x)
        if k == len(run.times) - 1:
            return run.true_start.log_prob(x)
        positions, log_change = log_density_flow(
            lambda t, y: run.process.velocity_and_divergence(t, y, probes=self.probes), x, torch.zeros(len(x)).to(x),
            run.times[k:])
        return run.true_start.log_prob(positions[-1]) - log_change[-1]

    def _heldout(self, run) -> float:
        generator = run.streams.generator(f"{self.name}.held_out", device=run.times.device)
        data = run.process.data.sample(self.heldout, generator).to(run.times.dtype)
        positions, log_change = self._log_density_flow(run, data, torch.zeros(len(data)).to(data), run.times)
        return float((run.true_start.log_prob(positions[-1]) - log_change[-1]).mean())

    def _log_density_flow(self, run, x0, log_p0, times):
        generator = run.streams.generator(f"{self.name}.probes", device=x0.device)

        def field(t, x):
            return run.estimator.velocity_and_divergence(t, x, probes=self.probes, generator=generator)

        return log_density_flow(field, x0, log_p0, times)


@hookimpl
def stochthermo_register_observers():
    return [Estimation]
