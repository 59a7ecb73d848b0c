r"""The score Fokker–Planck residual of an estimator's implied score (docs/theory.md §8; FP-Diffusion,
arXiv:2210.04296; the ODE–SDE gap, arXiv:2311.15996).

The true score :math:`s = \nabla\ln P_t` of dx = f dt + g dB (g² = 2T_t) satisfies

.. math:: \partial_t s = \nabla\Big[\tfrac12 g^2(\nabla\cdot s + |s|^2) - f\cdot s - \nabla\cdot f\Big].

For an estimator's velocity ν̂ the implied score is ŝ = (f − ν̂)/T, and the residual
:math:`R_t(x) = \partial_t\hat s - \nabla[T(\nabla\cdot\hat s + |\hat s|^2) - f\cdot\hat s
- \nabla\cdot f]` vanishes for
every t exactly when ŝ is the score of the density path it generates with the process's noise, which is
when its probability-flow ODE and its reverse SDE produce the same laws. The observer records
``fp_residual`` :math:`= (E_{P_t}|R_t|^2)^{1/2}` over the forward particles at each saved time: the space
derivatives by autograd — the divergence of ŝ exactly for d ≤ 3, above that by Hutchinson's estimator
:math:`\nabla\cdot\hat s \approx \frac1P\sum_p z_p^\top(\partial\hat s)z_p` with ``probes`` Rademacher
vectors z_p (seeded; unbiased, and so is the gradient of the bracket, which is linear in it) — and ∂_t ŝ by a
central difference with step ``time_step``·τ (error O(h²)). With probes, ``fp_residual_probe_error``
records :math:`(E_{P_t}\sum_i \mathrm{se}_i^2)^{1/2}`, the standard error of R from the spread of the
per-probe residuals (0 for the exact divergence): a residual below it is not resolved. It is undefined
(NaN) where T_t is 0 or infinite (t = 0 and, for cosine and
cond-OT, t = τ), and at the ends of [0, τ] where the difference would leave the interval.

Closed form (tested): for Gaussian data under a scheduled process and the exact estimator with
``score_scale`` λ, ŝ = λs with s = −(x − mμ)/V, and R = −2λ(1 − λ)T s/V, so
:math:`\|R\| = 2|\lambda(1-\lambda)|\,T_t/V_t^{3/2}` (per dimension); zero for λ = 1.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from stochthermo import Observer, ScenarioError, Variable, hookimpl
from stochthermo.numerics import DIVERGENCE
from stochthermo.roles import Column, ForceField, recorded

#: above this dimension the divergence of the score is estimated by Hutchinson's probes
EXACT_DIVERGENCE_MAX_DIM = 3
UNDEFINED = "NaN where T_t is 0 or infinite (the implied score (f - nu^)/T is undefined) and at t = 0, tau"


class FokkerPlanckResidual(Observer):
    """√E_{P_t}|R_t|² of the score Fokker–Planck equation for the estimator's implied score, over time."""

    name = "fokker_planck_residual"

    def __init__(self, time_step: float = 1e-5, probes: int = 16):
        if not 0 < time_step < 0.01:
            raise ScenarioError(f"must be in (0, 0.01) (a fraction of tau), got {time_step}", key="time_step")
        if probes < 2:
            raise ScenarioError(f"must be >= 2 (a standard error needs two), got {probes}", key="probes")
        self.time_step, self.probes = time_step, probes

    @classmethod
    def summary_columns(cls, ds):
        return recorded(ds, [Column("max FP res", "fp_residual_max", 120)])

    def prepare(self, setup):
        for protocol in setup.protocols.values():
            if not isinstance(protocol.process, ForceField):
                raise ScenarioError(f"the implied score (f - nu^)/T needs the force of '{protocol.process.name}'",
                                    key=f"protocols.{protocol.name}")

    def variables(self):
        return {
            "fp_residual": Variable(("time",), "RMS score Fokker-Planck residual", "1", "sqrt(E_P_t |R_t|^2)", "FP",
                                    nonfinite=UNDEFINED, attrs={"ancillary_variables": "fp_residual_probe_error"},
                                    description="root-mean-square residual of the score Fokker-Planck equation for "
                                                "the implied score over P_t"),
            "fp_residual_probe_error": Variable(("time",), "standard error of the FP residual", "1",
                                                "sqrt(E_P_t sum se_i^2)", "FP",
                                                nonfinite=UNDEFINED,
                                                description="standard error of the residual from Hutchinson's probes "
                                                            "(0: exact divergence, d <= 3)"),
            "fp_residual_max": Variable((), "largest score Fokker-Planck residual", "1",
                                        "max_t sqrt(E_P_t |R_t|^2)", "FP", nonfinite="NaN where it is nowhere defined",
                                        description="largest defined residual of the score Fokker-Planck equation"),
        }

    def observe(self, run, measured):
        times = run.times.tolist()
        tau = times[-1] - times[0]
        h = self.time_step * tau
        temperature = run.process.temperature(run.times).cpu().numpy()
        out, probe_error = np.full(len(times), np.nan), np.full(len(times), np.nan)
        for k, t in enumerate(times):
            nearby = run.process.temperature(torch.tensor([t - h, t, t + h], dtype=torch.float64))
            if not (0 < k < len(times) - 1 and bool((nearby > 0).all())
                    and float(nearby.max()) * tau < DIVERGENCE and math.isfinite(temperature[k])):
                continue
            generator = run.streams.generator(f"{self.name}.probes", k, device=run.times.device)
            residual, error = self._residual(run, t, h, run.forward.positions[k], generator)
            out[k] = math.sqrt(float((residual**2).sum(1) @ run.forward.weights))
            probe_error[k] = math.sqrt(float((error**2).sum(1) @ run.forward.weights))
        finite = out[np.isfinite(out)]
        return {"fp_residual": out, "fp_residual_probe_error": probe_error,
                "fp_residual_max": float(finite.max()) if finite.size else math.nan}

    def _score(self, run, t: float, x: torch.Tensor) -> torch.Tensor:
        temperature = float(run.process.temperature(torch.tensor(t, dtype=torch.float64)))
        return (run.process.force_field(t, x) - run.estimator.velocity(t, x)) / temperature

    def _residual(self, run, t: float, h: float, x: torch.Tensor,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """R_t(x) = ∂_t ŝ − ∇[T(∇·ŝ + |ŝ|²) − f·ŝ − ∇·f] at the particles x (n, d), and its probe standard
        error per particle and component (zeros for the exact divergence)."""
        with torch.no_grad():
            time_derivative = (self._score(run, t + h, x) - self._score(run, t - h, x)) / (2 * h)
        temperature = float(run.process.temperature(torch.tensor(t, dtype=torch.float64)))
        with torch.enable_grad():
            y = x.detach().clone().requires_grad_(True)
            score, force = self._score(run, t, y), run.process.force_field(t, y)
            rest = temperature * (score**2).sum(1) - (force * score).sum(1) - exact_divergence(force, y)
            if x.shape[1] <= EXACT_DIVERGENCE_MAX_DIM:
                divergences = [exact_divergence(score, y)]
            else:
                probes = (torch.randint(0, 2, (self.probes, *x.shape), generator=generator, device=x.device)
                          .to(x.dtype) * 2 - 1)
                divergences = [(torch.autograd.grad((score * z).sum(), y, create_graph=True)[0] * z).sum(1)
                               for z in probes]
            residuals = torch.stack([time_derivative - torch.autograd.grad(
                (temperature * divergence + rest).sum(), y, retain_graph=True)[0] for divergence in divergences])
        if len(residuals) == 1:
            return residuals[0].detach(), torch.zeros_like(x)
        return residuals.mean(0).detach(), (residuals.std(0) / math.sqrt(len(residuals))).detach()


def exact_divergence(field: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Σ_i ∂field_i/∂x_i by autograd, keeping the graph (d backward passes)."""
    return sum(torch.autograd.grad(field[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(x.shape[1]))


@hookimpl
def stochthermo_register_observers():
    return [FokkerPlanckResidual]
