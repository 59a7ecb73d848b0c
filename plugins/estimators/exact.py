"""Built-in estimators: the exact velocity, optionally with a mis-specified score.

``exact`` with ``score_scale: λ`` (default 1) follows ν̂ = f − λ T ∇ln P_t = λ ν + (1 − λ) f: the exact
velocity with the score scaled by λ (docs/theory.md §8), a controlled model error for the ODE–SDE
comparison. For λ = 1 it is the process's velocity, with its exact flow map and endpoint step, and the
relations (80)-(83) apply to it; for λ ≠ 1 it is an imperfect estimator, and it needs a finite force and
temperature on [0, τ] (not cosine or cond-OT, whose force diverges at t = τ).
"""

from __future__ import annotations

import torch

from stochthermo import Estimator, ScenarioError, hookimpl
from stochthermo.numerics import DIVERGENCE
from stochthermo.roles import ForceField


class Exact(Estimator):
    """The process's own exact velocity ν_t (and its exact flow where the process has one); with
    ``score_scale`` λ ≠ 1, the velocity of a score scaled by λ, ν̂ = λν + (1 − λ)f."""

    name = "exact"

    def __init__(self, *, process, score_scale: float = 1.0):
        super().__init__(process=process)
        self.score_scale = score_scale
        #: ν̂ = ν exactly (the relations (80)-(83) apply)
        self.exact = score_scale == 1.0
        if self.exact:
            return
        if not isinstance(process, ForceField):
            raise ScenarioError(f"a scaled score needs the force f_t of the process; '{process.name}' declares none",
                                key="score_scale")
        temperature = process.temperature(torch.linspace(0, process.tau, 257, dtype=torch.float64))
        if not float(temperature.abs().max()) * process.tau < DIVERGENCE:
            raise ScenarioError(f"a scaled score needs a finite force and temperature on [0, tau]; '{process.name}' "
                                "has none at some t (m_t -> 0, or no temperature)", key="score_scale")

    def velocity(self, t, x):
        velocity = self.process.velocity(t, x)
        if self.exact:
            return velocity
        return self.score_scale * velocity + (1 - self.score_scale) * self.process.force_field(t, x)

    def velocity_and_divergence(self, t, x, *, probes=16, generator=None):
        if not self.exact:
            return super().velocity_and_divergence(t, x, probes=probes, generator=generator)
        return self.process.velocity_and_divergence(t, x, probes=probes, generator=generator)

    def flow_map(self):
        return self.process.flow_map() if self.exact else None

    def singular_endpoint(self):
        return self.process.singular_endpoint()


@hookimpl
def stochthermo_register_estimators():
    return [Exact]
