r"""The speed-accuracy relations of docs/theory.md §4 as slacks (larger minus smaller side) and statuses.

=========================  ==============================================  =========  ==================
relation                   inequality                                      equation   applies to
=========================  ==============================================  =========  ==================
``dissipation_rate``       :math:`v_{loss}(t)^2 \le T_t\dot S_t` at every t  (80)       exact estimation
``wasserstein_speed``      :math:`v_{loss}(t)^2 \le v_2(t)^2` at every t    (82)       conservative, exact
``response``               :math:`\eta \le c_1`                             (81)       all processes
``dissipation``            :math:`c_1 \le w_D`                              (81)       exact estimation
``kinetic_cost``           :math:`c_1 \le c_2`                              (83)       conservative, exact
``path_length``            :math:`L_\tau^2/\tau \le c_2`                    (92)       all processes
``geodesic``               :math:`W_2(P_0,P_\tau)^2/\tau \le L_\tau^2/\tau` (92)       all processes
=========================  ==============================================  =========  ==================

Where η is known within a confidence interval (the ``response`` observer's ``response_lower``,
``response_upper``: in d ≥ 2 a measurement, docs/theory.md §4.3) and c_1 is of W_1 too (not ``sliced``),
η ≤ c_1 *holds* when the whole interval lies below c_1, is *violated* when it lies wholly above, and is
*unresolved* otherwise. Otherwise a relation *holds* when its slack is at least :math:`-\mathrm{rtol}\cdot`
its scale: the largest of the
magnitudes of its two sides, of the dissipation that bounds them (:math:`w_D` for integrated relations,
:math:`\max_t T_t\dot S_t` for pointwise ones), for η and c_1 of :math:`\max_t W_1^2/(\tau D_0)`, and
the float64 rounding of :math:`E|y|^2/\tau` (per τ for rates), so that two sides that both vanish (a static
process, a flow that is a pure translation) compare at rounding level. ``rtol`` is the numerical tolerance of the
quadratures, recorded in the variable's attributes. It is *not applicable* for a non-conservative process where marked,
where D_0 is infinite, and, for (80), (82), c_1 ≤ w_D and (83), when the reverse process follows a trained
estimator rather than the exact velocity (those relations assume ν̂ = ν; Eq. (100) of the ``estimation``
observer covers that case; η ≤ c_1 is Cauchy–Schwarz and holds for any flow), and for a stochastic solver
(a reverse SDE moves the perturbed law with a mean local velocity that differs from the true one's, so the
derivation of (80)-(83) does not apply; docs/theory.md §8). η ≤ c_1 and (92) stay theorems there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from stochthermo import Observer, ScenarioError, Variable, hookimpl
from stochthermo.roles import HOLDS, NOT_APPLICABLE, STATUS_ATTRS, UNRESOLVED, VIOLATED, RelationColumn, recorded


@dataclass(frozen=True)
class Relation:
    name: str
    text: str
    equation: str
    dims: tuple[str, ...]
    smaller: Callable[[dict], np.ndarray]
    larger: Callable[[dict], np.ndarray]
    conservative_only: bool
    #: derived for a reverse process that follows the exact velocity (not applicable to trained estimators)
    exact_only: bool
    #: the confidence interval (lower, upper) of the smaller side, where it is a measurement with an error bar
    smaller_interval: Callable[[dict], tuple[np.ndarray, np.ndarray]] | None = None
    #: why it holds by construction of the numerics, where it does (no independent check then)
    by_construction: str | None = None


def _eta_interval(response: dict) -> tuple[np.ndarray, np.ndarray]:
    """η's confidence interval where c_1 is of the same distance, W_1 (not the sliced one: no interval then)."""
    if str(response["wasserstein_1_method"]) == "sliced":
        return np.array(np.nan), np.array(np.nan)
    return response["response_lower"], response["response_upper"]


def _thermo(key):
    return lambda m: m["thermodynamics"][key]


def _resp(key):
    return lambda m: m["response"][key]


#: (80)-(83) compare the loss with the true reverse process's own T Ṡ and w_D (``response``: over the law of
#: that path); for a gradient field its v_2² and c_2 are the same numbers
RELATIONS = (
    Relation("dissipation_rate", "v_loss^2 <= T dS/dt", "(80)", ("perturbation", "time"),
             _resp("loss_speed_squared"), _resp("reference_dissipation_rate"), False, True),
    Relation("wasserstein_speed", "v_loss^2 <= v_2^2", "(82)", ("perturbation", "time"),
             _resp("loss_speed_squared"), _resp("reference_dissipation_rate"), True, True),
    Relation("response", "eta <= c_1", "(81)", ("perturbation",), _resp("response"), _resp("loss_cost"), False,
             False, lambda m: _eta_interval(m["response"])),
    Relation("dissipation", "c_1 <= w_D", "(81)", ("perturbation",), _resp("loss_cost"),
             _resp("reference_dissipation"), False, True),
    Relation("kinetic_cost", "c_1 <= c_2", "(83)", ("perturbation",), _resp("loss_cost"),
             _resp("reference_dissipation"), True, True),
    Relation("path_length", "L^2/tau <= c_2", "(92)", (), _thermo("path_length_cost"),
             _thermo("kinetic_cost"), False, False,
             by_construction="holds by construction (Cauchy-Schwarz on the one time quadrature of v_2 and v_2^2)"),
    Relation("geodesic", "W_2^2/tau <= L^2/tau", "(92)", (), _thermo("geodesic_cost"),
             _thermo("path_length_cost"), False, False),
)

#: the summary table's column header of each relation, in the order of RELATIONS
HEADERS = ("(80)", "(82)", "(81)eta<=c1", "(81)c1<=wD", "(83)", "(92)L", "(92)W2")


class Bounds(Observer):
    """Slack and status of every inequality of docs/theory.md §4 and of the speed limit (92)."""

    name = "bounds"
    consumes = {"thermodynamics": ("path_length_cost", "kinetic_cost", "geodesic_cost", "dissipation"),
                "response": ("loss_speed_squared", "reference_dissipation_rate", "response", "loss_cost",
                             "reference_dissipation", "wasserstein_1", "chi_square", "response_lower",
                             "response_upper", "wasserstein_1_method")}

    @classmethod
    def relation_columns(cls, ds):
        return recorded(ds, [RelationColumn(header, f"holds_{rel.name}", 10 * (i + 1), f"slack_{rel.name}",
                                            rel.by_construction)
                             for i, (rel, header) in enumerate(zip(RELATIONS, HEADERS, strict=True))])

    def __init__(self, rtol: float = 1e-6):
        if not 0 <= rtol < 1:
            raise ScenarioError(f"must be in [0, 1), got {rtol}", key="rtol")
        self.rtol = rtol

    def variables(self):
        out = {}
        for rel in RELATIONS:
            out[f"slack_{rel.name}"] = Variable(rel.dims, f"slack of {rel.text}", "1", f"slack[{rel.text}]",
                                                rel.equation, nonfinite="NaN where the relation does not apply")
            status_dims = tuple(d for d in rel.dims if d != "time")
            out[f"holds_{rel.name}"] = Variable(status_dims, f"status of {rel.text}", "1", f"[{rel.text}]",
                                                rel.equation, attrs={**STATUS_ATTRS, "rtol": self.rtol})
        return out

    @staticmethod
    def _natural_scale(rel: Relation, run, measured) -> np.ndarray | float:
        """The dissipation (max_t T Ṡ or w_D) and, for integrated relations of the response, the size
        η could have, max_t W_1² / (τ D_0): the magnitudes against which rounding is judged; never below
        float64 rounding of the data's E|y|²/τ (a static process, e.g. cosine from the prior to itself, makes
        every side and every dissipation 0 up to rounding)."""
        response = measured["response"]
        tau = float(run.times[-1] - run.times[0])
        rounding = np.finfo(np.float64).eps * run.process.data.second_moment() / tau
        if "time" in rel.dims:
            return max(response["reference_dissipation_rate"].max(), rounding / tau)
        if "perturbation" not in rel.dims:
            return max(measured["thermodynamics"]["dissipation"], rounding)
        possible_response = response["wasserstein_1"].max(-1) ** 2 / (tau * response["chi_square"])
        return np.maximum(np.maximum(response["reference_dissipation"], possible_response), rounding)

    def draws_random_numbers(self, setup):
        return False  # a function of the flows alone

    def observe(self, run, measured):
        out = {}
        for rel in RELATIONS:
            smaller, larger = np.asarray(rel.smaller(measured)), np.asarray(rel.larger(measured))
            smaller, larger = np.broadcast_arrays(smaller, larger)
            deterministic_exact = run.estimator.exact and not run.stochastic
            applicable = ((run.process.conservative or not rel.conservative_only)
                          and (deterministic_exact or not rel.exact_only))
            slack = larger - smaller if applicable else np.full(smaller.shape, np.nan)
            time_axes = tuple(i for i, d in enumerate(rel.dims) if d == "time")
            with np.errstate(invalid="ignore", divide="ignore"):
                scale = np.maximum(np.abs(larger), np.abs(smaller)).max(axis=time_axes, initial=0.0)
                scale = np.maximum(scale, self._natural_scale(rel, run, measured))
                worst = slack.min(axis=time_axes) if time_axes else slack
                status = np.where(worst >= -self.rtol * scale, HOLDS, VIOLATED)
                if rel.smaller_interval is not None:
                    lower, upper = rel.smaller_interval(measured)
                    # rounding is judged on the sides' own magnitudes: the dissipation in `scale` can exceed η
                    # and c_1 by orders of magnitude (a large D_0), and would swallow the interval
                    own = np.maximum(np.abs(larger), np.where(np.isfinite(upper), np.abs(upper), 0.0))
                    status = _interval_status(status, lower, upper, larger, self.rtol * own)
            status = np.where(np.isnan(worst), NOT_APPLICABLE, status).astype(np.int8)
            out[f"slack_{rel.name}"] = slack
            out[f"holds_{rel.name}"] = status
        return out


def _interval_status(status: np.ndarray, lower: np.ndarray, upper: np.ndarray, larger: np.ndarray,
                     tolerance: np.ndarray) -> np.ndarray:
    """A relation whose smaller side is known within [lower, upper]: holds if all of the interval does, violated
    if none of it does and the point values violate it too (the larger side, c_1, is a point estimate without an
    interval: an interval above a point c_1 that the point η stays below is a disagreement of two estimates, not
    a violation), unresolved otherwise; the point status where there is no interval (NaN)."""
    lower, upper = np.broadcast_arrays(lower, upper)
    known = ~(np.isnan(lower) | np.isnan(upper))
    by_interval = np.where(upper <= larger + tolerance, HOLDS,
                           np.where((lower > larger + tolerance) & (status == VIOLATED), VIOLATED, UNRESOLVED))
    return np.where(known, by_interval, status)


@hookimpl
def stochthermo_register_observers():
    return [Bounds]
