r"""The observable speed limit (thermodynamic uncertainty relation; docs/theory.md §10).

For any observable r(x), its mean along the forward process changes at the rate
:math:`\partial_t\langle r\rangle_{P_t} = \langle\nabla r\cdot\nu_t\rangle_{P_t}` (the continuity equation,
integrated by parts: no finite difference). The part of ν_t orthogonal to gradients (the housekeeping
velocity) does not contribute, so by Cauchy–Schwarz

.. math:: v_r(t) = \frac{|\partial_t\langle r\rangle|}{\sqrt{\langle|\nabla r|^2\rangle}} \le v_2(t),
          \qquad \frac{1}{\tau}\Big(\int_0^\tau v_r\,dt\Big)^2 \le \frac1\tau L_\tau^2 \le c_2,

with equality in the first where ∇r is parallel to the optimal-transport velocity ∇φ_t. An observable is
therefore a lower bound on the Wasserstein speed that needs no density: a coordinate, a projection, |x|², the
mean brightness of an image, or any torch function of x.

``observables`` lists them (the ``observable`` dimension): ``coordinate:K`` (x_K), ``projection:a,b,...`` (a·x),
``square_norm`` (|x|²), ``mean`` (the mean over coordinates: an image's brightness), or ``package.module:name``
(a torch function r(x) of a batch (n, d) returning (n,); imported, as a scenario file is code you trust). The
rate and ⟨|∇r|²⟩ are averages over the forward particles with ∇r by autograd; v_2(t) and c_2 are read from the
``thermodynamics`` observer. Recorded: ``observable_speed`` v_r(t), ``observable_mean`` ⟨r⟩_{P_t},
``slack_observable_speed`` v_2 − v_r and ``holds_observable_speed``, ``observable_cost`` (∫v_r dt)²/τ with its
slack against c_2 and status. A status holds when the slack is at least −``rtol`` times v_2 (the largest v_2
over time for the rate). v_r is NaN where ⟨|∇r|²⟩ = 0 (r constant on P_t).
"""

from __future__ import annotations

import numpy as np
import torch

from stochthermo import Coordinate, Observer, ScenarioError, Variable, hookimpl, import_callable
from stochthermo.numerics import time_integral
from stochthermo.roles import HOLDS, NOT_APPLICABLE, STATUS_ATTRS, VIOLATED, Column, RelationColumn, recorded

BUILT_IN = ("coordinate:K", "projection:a,b,...", "square_norm", "mean")
CONSTANT = "NaN where <|grad r|^2> = 0 (r is constant on P_t)"


class ObservableSpeed(Observer):
    """v_r(t) ≤ v_2(t) and (∫v_r dt)²/τ ≤ c_2 for each of ``observables`` (module docstring)."""

    name = "observable_speed"
    consumes = {"thermodynamics": ("wasserstein_speed_squared", "kinetic_cost")}

    def __init__(self, observables: list[str] | None = None, rtol: float = 1e-6):
        self.labels = observables or ["coordinate:0", "square_norm"]
        if len(set(self.labels)) != len(self.labels):
            raise ScenarioError(f"observables must be distinct, got {self.labels}", key="observables")
        if not 0 <= rtol < 1:
            raise ScenarioError(f"must be in [0, 1), got {rtol}", key="rtol")
        self.rtol = rtol
        self.functions = [_built_in(label, i) or import_callable(label, f"observables[{i}]")
                          for i, label in enumerate(self.labels)]

    def prepare(self, setup):
        dim = setup.data.dim
        for i, (label, function) in enumerate(zip(self.labels, self.functions, strict=True)):
            x = setup.data.sample(3, torch.Generator().manual_seed(0))
            if label.startswith("coordinate:") and not 0 <= int(label.split(":")[1]) < dim:
                raise ScenarioError(f"coordinate {label.split(':')[1]} of {dim}-D data", key=f"observables[{i}]")
            if label.startswith("projection:") and len(label.split(":")[1].split(",")) != dim:
                raise ScenarioError(f"a projection of {dim}-D data needs {dim} numbers", key=f"observables[{i}]")
            try:
                value = function(x)
            except Exception as exc:  # any failure of the user's observable is bad input
                raise ScenarioError(f"calling the observable on a batch (3, {dim}) failed: {type(exc).__name__}: "
                                    f"{exc}", key=f"observables[{i}]") from None
            if not isinstance(value, torch.Tensor) or value.shape != (3,) or not bool(torch.isfinite(value).all()):
                got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ScenarioError(f"an observable must return a finite tensor (n,) for x (n, d); got {got}",
                                    key=f"observables[{i}]")

    def coordinates(self):
        return {"observable": Coordinate(np.array(self.labels), "observable r")}

    @classmethod
    def summary_columns(cls, ds):
        return recorded(ds, [Column("v_r cost", "observable_cost", 140, position={"observable": 0})])

    @classmethod
    def relation_columns(cls, ds):
        return recorded(ds, [RelationColumn("v_r<=v_2", "holds_observable_speed", 140, "slack_observable_speed"),
                             RelationColumn("L_r^2/tau<=c2", "holds_observable_cost", 141, "slack_observable_cost")])

    def variables(self):
        both = ("observable", "time")
        return {
            "observable_mean": Variable(both, "mean of the observable over P_t", "1", "<r>_t", "TUR"),
            "observable_speed": Variable(both, "observable speed", "1", "v_r(t)",
                                         "TUR", nonfinite=CONSTANT,
                                         description="observable speed |d<r>/dt| / sqrt(<|grad r|^2>)"),
            "slack_observable_speed": Variable(both, "slack of v_r <= v_2", "1", "v_2 - v_r", "TUR",
                                               nonfinite=CONSTANT),
            "holds_observable_speed": Variable(("observable",), "status of v_r <= v_2", "1", "[v_r <= v_2]", "TUR",
                                               attrs={**STATUS_ATTRS, "rtol": self.rtol}),
            "observable_cost": Variable(("observable",), "squared observable path length over tau", "1",
                                        "(int v_r dt)^2/tau", "TUR", nonfinite=CONSTANT),
            "slack_observable_cost": Variable(("observable",), "slack of the observable cost bound", "1",
                                              "c_2 - (int v_r dt)^2/tau", "TUR", nonfinite=CONSTANT,
                                              description="slack of (int v_r dt)^2/tau <= c_2"),
            "holds_observable_cost": Variable(("observable",), "status of the observable cost bound", "1",
                                              "[(int v_r dt)^2/tau <= c_2]", "TUR",
                                              attrs={**STATUS_ATTRS, "rtol": self.rtol},
                                              description="status of (int v_r dt)^2/tau <= c_2"),
        }

    def draws_random_numbers(self, setup):
        return False  # a function of the flows alone

    def observe(self, run, measured):
        forward, times = run.forward, run.times.cpu().numpy()
        tau = times[-1] - times[0]
        speed_2 = np.sqrt(np.maximum(measured["thermodynamics"]["wasserstein_speed_squared"], 0.0))
        cost_2 = float(measured["thermodynamics"]["kinetic_cost"])
        weights = forward.weights
        out = {name: [] for name in self.variables()}
        for function in self.functions:
            means, rates, gradients = [], [], []
            for k in range(len(times)):
                x = forward.positions[k].detach().clone().requires_grad_(True)
                with torch.enable_grad():
                    value = function(x)
                    (gradient,) = torch.autograd.grad(value.sum(), x)
                means.append(float(weights @ value.detach()))
                rates.append(float(weights @ (gradient * forward.velocities[k]).sum(1)))
                gradients.append(float(weights @ (gradient**2).sum(1)))
            gradients = np.array(gradients)
            with np.errstate(divide="ignore", invalid="ignore"):
                speed = np.where(gradients > 0, np.abs(rates) / np.sqrt(gradients), np.nan)
            cost = time_integral(speed, times) ** 2 / tau
            slack, cost_slack = speed_2 - speed, cost_2 - cost
            out["observable_mean"].append(means)
            out["observable_speed"].append(speed)
            out["slack_observable_speed"].append(slack)
            out["holds_observable_speed"].append(_status(np.nanmin(slack) if np.isfinite(slack).any() else np.nan,
                                                         self.rtol * speed_2.max()))
            out["observable_cost"].append(cost)
            out["slack_observable_cost"].append(cost_slack)
            out["holds_observable_cost"].append(_status(cost_slack, self.rtol * cost_2))
        return {name: np.asarray(values, dtype=np.int8 if name.startswith("holds_") else float)
                for name, values in out.items()}


def _status(worst: float, tolerance: float) -> int:
    if not np.isfinite(worst):
        return NOT_APPLICABLE
    return HOLDS if worst >= -tolerance else VIOLATED


def _built_in(label: str, index: int):
    """The function of a built-in observable, or None for a ``package.module:name``."""
    kind, _, argument = label.partition(":")
    key = f"observables[{index}]"
    if kind == "square_norm" and not argument:
        return lambda x: (x**2).sum(1)
    if kind == "mean" and not argument:
        return lambda x: x.mean(1)
    if kind == "coordinate":
        if not argument.isdigit():
            raise ScenarioError(f"expected coordinate:K with K a coordinate's index, got '{label}'", key=key)
        return lambda x, i=int(argument): x[:, i]
    if kind == "projection":
        try:
            direction = torch.tensor([float(a) for a in argument.split(",")], dtype=torch.float64)
        except ValueError:
            raise ScenarioError(f"expected projection:a,b,... with numbers, got '{label}'", key=key) from None
        return lambda x: x @ direction.to(x)
    if "." not in kind and kind in {b.split(":")[0] for b in BUILT_IN}:
        raise ScenarioError(f"malformed observable '{label}' (built-ins: {', '.join(BUILT_IN)})", key=key)
    return None


@hookimpl
def stochthermo_register_observers():
    return [ObservableSpeed]
