r"""Response of generation to a perturbed start (docs/theory.md §4, Eqs. (78)-(81)).

The true reverse process starts from :math:`P_0^\dagger = P_\tau` and the perturbed one from
:math:`\tilde P_0^\dagger`; both follow the same velocity field. With reverse time :math:`\tilde t = \tau - t`
and both laws indexed by forward time t:

* :math:`W_1(t) = W_1(P_t, \tilde P_t)` and :math:`\partial_t W_1` (envelope theorem, exact in 1-D);
* :math:`D_0`, the Pearson χ² of the perturbed start (Eq. (78)), constant along the flow;
* :math:`v_{loss}(t)^2 = (\partial_t W_1)^2 / D_0`, :math:`c_1 = \int v_{loss}^2 dt`;
* :math:`\Delta W_1 = W_1(q, p) - W_1(P_0^\dagger, \tilde P_0^\dagger)` and the response
  :math:`\eta = (\Delta W_1)^2/(\tau D_0)`;
* the kinetic energy of the true reverse process over its own law :math:`Q_t`,
  :math:`E_{Q_t}|\nu_t|^2`, and its integral: the :math:`T_t\dot S_t` and :math:`w_D` that bound
  :math:`v_{loss}^2` and :math:`c_1` in (80)-(83) (for a gradient field also :math:`v_2^2` and :math:`c_2` of
  that path). :math:`Q_t = P_t` when the true reverse process starts from :math:`P_\tau`; with
  ``reverse_start: prior`` and :math:`P_\tau \ne` prior it is the generator's own path, and these differ
  from the forward process's costs that ``thermodynamics`` reports.

``wasserstein: exact`` computes W_1 with the exact plan (monotone in 1-D, POT's network simplex in d ≥ 2);
``sliced`` uses the sliced distance over ``projections`` directions
(:func:`stochthermo.measures.sliced_w1_and_rate`), much cheaper for large ensembles. In d ≥ 2 the finite-sample
bias of W_1 at the ensemble size — W_1 between two independent samples of the true start law and of the data
law — is recorded beside ΔW_1.

Under a stochastic solver (a reverse SDE) W_1 is taken between the weighted particle samples at each saved
time (the sorted coupling in 1-D) and :math:`\partial_t W_1` by second-order finite differences of W_1(t):
the velocity a particle carries is then ν̂ at its position, not the mean local velocity of its law, so the
envelope theorem does not apply (docs/theory.md §8).

``wasserstein: common_support`` represents the perturbed start by the true start's own particles with
importance weights :math:`w_i \propto u_i\,\tilde P_0^\dagger(x_i)/P_0^\dagger(x_i)`: under exact estimation one
flow carries both laws, so W_1 at every time is an optimal-transport problem between two weightings of the
same moving particles, with no two-sample bias; what remains is the fluctuation of the weights, whose
relative variance is D_0 (docs/theory.md §4). It needs the exact estimator, a deterministic solver and a
finite D_0 (refused otherwise, with the reason); its noise floor — the W_1 between the true weights and a
multinomial resampling of them on the same particles — is recorded in ``wasserstein_1_bias_*``.

``wasserstein: auto`` (the default) picks, when the scenario is built: ``exact`` in 1-D (the quantile
ensembles' monotone coupling has no sampling error to remove); ``common_support`` in 2 ≤ d ≤
``COMMON_SUPPORT_MAX_DIM`` where every protocol carries its starts by one deterministic exact flow and every
D_0 is finite; ``exact`` otherwise (a trained estimator, a stochastic solver, an infinite D_0, where the
importance weights do not exist, or a higher dimension: between N(0, I) and N(0, 0.81 I) at 1024 particles
the common support's W_1 is within 3 % of the closed form up to d = 4 but 17 % above it at d = 6, 36 % at
8 and 115 % at 16, tests/test_common_support.py, while the exact method's two starts share their normal
draws and their W_1 matches the closed form in any dimension). The method used is recorded in the
``estimator`` attribute of ``wasserstein_1``.

When :math:`D_0 = \infty` the relations say nothing: :math:`v_{loss}`, :math:`c_1` and η are NaN and the reason is
recorded in the variable ``chi_square_method``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from stochthermo import Observer, ScenarioError, Variable, hookimpl
from stochthermo.errors import did_you_mean
from stochthermo.measures import (
    KL_PROXY,
    ChiSquare,
    change_bracket,
    chi_square,
    one_sided_z,
    optimal_coupling,
    sampling_bias,
    sliced_w1_and_rate,
    w1_and_rate,
    w1_bracket,
)
from stochthermo.numerics import time_integral
from stochthermo.roles import Column, Trajectory, recorded

from .figures import costs_figure, speeds_figure

WASSERSTEIN_METHODS = ("auto", "exact", "sliced", "common_support")
#: the largest dimension in which ``auto`` takes the common support (module docstring)
COMMON_SUPPORT_MAX_DIM = 4
PT = ("perturbation", "time")
P = ("perturbation",)
INFINITE_CHI_SQUARE = "NaN where the chi-square divergence D_0 is infinite (the relations say nothing)"
NO_BRACKET = ("NaN where no bracket applies (weighted particles under a stochastic solver) or, for eta, where D_0 "
              "is infinite or only approximated (the KL proxy)")


class Response(Observer):
    """W_1 between true and perturbed reverse flows, its rate, v_loss², D_0, ΔW_1, η and c_1."""

    name = "response"

    def __init__(self, wasserstein: str = "auto", projections: int = 128, kl_proxy: bool = False,
                 confidence: float = 0.95):
        if not 0 < confidence < 1:
            raise ScenarioError(f"must be in (0, 1), got {confidence}", key="confidence")
        #: the joint confidence of the ΔW_1 and η intervals (every one-sided bound at (1 − confidence)/k)
        self.confidence = confidence
        if wasserstein not in WASSERSTEIN_METHODS:
            raise ScenarioError(f"must be one of {', '.join(WASSERSTEIN_METHODS)}, got '{wasserstein}'"
                                f"{did_you_mean(wasserstein, WASSERSTEIN_METHODS)}", key="wasserstein")
        if projections < 1:
            raise ScenarioError(f"must be >= 1, got {projections}", key="projections")
        self.wasserstein, self.projections = wasserstein, projections
        #: D_0 by the KL proxy (G21) where no exact method applies, instead of the Monte Carlo measurement
        self.kl_proxy = kl_proxy
        #: the method in use: ``wasserstein``, with ``auto`` resolved by :meth:`prepare`
        self.method = "exact" if wasserstein == "auto" else wasserstein
        #: D_0 depends on the protocol (through P_τ) and the perturbation, not on the seed
        self._chi_square: dict[tuple[str, str], ChiSquare] = {}

    @classmethod
    def summary_columns(cls, ds):
        spread = [Column("eta se", "response", 21, statistic="stderr")] if ds.sizes.get("seed", 1) > 1 else []
        # a Monte Carlo D_0 shows its standard error beside it: nothing approximate is printed unmarked
        measured = "chi_square_stderr" in ds and bool((ds.chi_square_stderr != 0).any())
        d0_error = [Column("D_0 se", "chi_square_stderr", 11)] if measured else []
        # a sampled eta shows its confidence interval beside it (1-D quadratures have an interval of width 0)
        sampled = "response_upper" in ds and bool((ds.response_upper != ds.response_lower).any())
        interval = ([Column("eta lo", "response_lower", 20.1), Column("eta hi", "response_upper", 20.2)]
                    if sampled else [])
        # the KL proxy (G21) is not a measurement of D_0: its column says so
        proxy = "chi_square_method" in ds and any(str(m).startswith("approximation")
                                                  for m in np.ravel(ds.chi_square_method.values))
        d0 = Column("D_0 (KL proxy)" if proxy else "D_0", "chi_square", 10)
        return recorded(ds, [d0, *d0_error, Column("eta", "response", 20), *interval,
                             *spread,
                             Column("c_1", "loss_cost", 30),
                             # high dimension: the paper reports eta in units of n_d (Fig. 8)
                             Column("eta/n_d", "response", 100, per="data_dimension")])

    @classmethod
    def figures(cls, ds):
        out = {}
        if all(v in ds for v in ("response", "loss_cost")):
            out["costs"] = costs_figure
        if all(v in ds for v in ("wasserstein_speed_squared", "loss_speed_squared")):
            out["speeds"] = speeds_figure
        return out

    def draws_random_numbers(self, setup):
        """In 1-D nothing (quadratures, exact brackets) but the common support's resampling floor; above, also
        the bracket's splits and the sampling floors."""
        return setup.data.dim > 1 or self.method == "common_support"

    def prepare(self, setup):
        """Resolve ``auto`` (module docstring); for ``common_support`` check that every protocol carries both
        starts by one deterministic exact flow and that every D_0 is finite (the importance weights'
        variance)."""
        if self.wasserstein == "auto":
            self.method = ("common_support" if 1 < setup.data.dim <= COMMON_SUPPORT_MAX_DIM
                           and _common_support_problem(setup) is None else "exact")
        elif self.wasserstein == "common_support":
            problem = _common_support_problem(setup)
            if problem:
                raise ScenarioError(problem, key="wasserstein")

    def _perturbed(self, run) -> dict[str, Trajectory]:
        """The perturbed reverse processes; for ``common_support`` the true particles with importance weights
        w_i ∝ u_i P̃_0†(x_i)/P_0†(x_i) at the start (the same flow carries both laws)."""
        if self.method != "common_support":
            return run.perturbed
        true = run.true
        start = true.positions[-1]
        log_start = run.true_start.log_prob(start)
        out = {}
        for name, law in run.perturbations.items():
            log_ratio = law.log_prob(start) - log_start
            weights = true.weights * torch.exp(log_ratio - log_ratio.max())
            out[name] = Trajectory(true.times, true.positions, true.velocities, weights / weights.sum(), None)
        return out

    def _noise_floor(self, run, index: int) -> float:
        """W_1 between the true weights and a multinomial resampling of them on the same particles at the
        given time index: the fluctuation level of a common-support W_1 at this ensemble size."""
        true = run.true
        generator = run.streams.generator(f"{self.name}.bootstrap", device=true.weights.device)
        n = len(true.weights)
        counts = torch.bincount(torch.multinomial(true.weights, n, replacement=True, generator=generator),
                                minlength=n).to(true.weights)
        x = true.positions[index]
        coupling = optimal_coupling(x, true.weights, x, counts / n, monotone=False, metric="euclidean")
        return float(coupling.mass @ (x[coupling.rows] - x[coupling.cols]).norm(dim=1))

    def _w1_and_rate(self, a, b):
        if self.method == "sliced":
            return sliced_w1_and_rate(a, b, self.projections)
        return w1_and_rate(a, b)

    def variables(self):
        return {
            "wasserstein_1": Variable(PT, "W_1 between true and perturbed reverse", "1",
                                      "W_1(P_t, P~_t)", "(79)", attrs={"estimator": self.method},
                                      description="W_1 distance between true and perturbed reverse processes"),
            "wasserstein_1_rate": Variable(PT, "forward-time derivative of W_1", "1", "d_t W_1", "(79)"),
            "loss_speed_squared": Variable(PT, "squared speed of the loss", "1", "v_loss(t)^2", "(80)",
                                           nonfinite=INFINITE_CHI_SQUARE),
            "chi_square": Variable(P, "chi-square divergence of the start", "1", "D_0",
                                   "(78)", nonfinite="infinite where the perturbed start's tails are too heavy",
                                   attrs={"ancillary_variables": "chi_square_stderr chi_square_method"},
                                   description="Pearson chi-square divergence of the perturbed start"),
            "chi_square_method": Variable(P, "method of the chi-square divergence", "1", "", "(78)",
                                          description="how D_0 was computed, or why it is infinite"),
            "chi_square_stderr": Variable(P, "standard error of the chi-square", "1",
                                          "se(D_0)", "(78)", nonfinite=("infinite where the Monte Carlo estimate's "
                                                                        "variance is, or D_0 is"),
                                          description="Monte Carlo standard error of D_0 (0 where computed exactly)"),
            "wasserstein_1_change": Variable(P, "change of W_1 over the reverse process", "1", "Delta W_1",
                                             "(81)", attrs={"ancillary_variables": "wasserstein_1_change_lower "
                                                            "wasserstein_1_change_upper wasserstein_1_bracket_method"}),
            "response": Variable(P, "response of W_1 to the perturbation", "1", "eta",
                                 "(81)", nonfinite=INFINITE_CHI_SQUARE,
                                 attrs={"ancillary_variables": "response_lower response_upper"},
                                 description="response (squared W_1 change per unit chi-square and time)"),
            "loss_cost": Variable(P, "integrated squared loss speed", "1", "c_1", "(81)",
                                  nonfinite=INFINITE_CHI_SQUARE),
            "reference_dissipation_rate": Variable(("time",), "kinetic energy of the reverse process", "1",
                                                   "E_Q_t |nu_t|^2", "(80)",
                                                   description="kinetic energy of the true reverse process over its "
                                                               "own law (the dissipation rate that bounds v_loss^2)"),
            "reference_dissipation": Variable((), "integrated reverse kinetic energy", "1", "int E_Q_t |nu_t|^2 dt",
                                              "(81)",
                                              description="integrated kinetic energy of the true reverse process (the "
                                                          "w_D that bounds c_1)"),
            "wasserstein_1_change_lower": Variable(P, "lower confidence bound of Delta W_1", "1",
                                                   "Delta W_1 lower", "(81)", nonfinite=NO_BRACKET,
                                                   attrs={"confidence": self.confidence}),
            "wasserstein_1_change_upper": Variable(P, "upper confidence bound of Delta W_1", "1",
                                                   "Delta W_1 upper", "(81)", nonfinite=NO_BRACKET,
                                                   attrs={"confidence": self.confidence}),
            "response_lower": Variable(P, "lower confidence bound of the response", "1", "eta lower", "(81)",
                                       nonfinite=NO_BRACKET, attrs={"confidence": self.confidence}),
            "response_upper": Variable(P, "upper confidence bound of the response", "1", "eta upper", "(81)",
                                       nonfinite=NO_BRACKET + "; infinite where D_0 may be 0 at this confidence",
                                       attrs={"confidence": self.confidence}),
            "wasserstein_1_bracket_method": Variable(P, "methods of the W_1 bracket", "1", "",
                                                     "(81)",
                                                     description="how each end of the W_1 bracket was obtained"),
            "wasserstein_1_method": Variable((), "distance behind W_1, c_1 and eta",
                                             "1", "", "(79)",
                                             description="the distance of wasserstein_1, its rate, c_1 and the point "
                                                         "eta (exact, sliced or common_support; the bracket is always "
                                                         "of W_1)"),
            "wasserstein_1_bias_start": Variable((), "W_1 sampling floor of the start law", "1",
                                                 "W_1(P_0^dagger_n, P_0^dagger_n')", "(79)",
                                                 attrs={"estimator": self.method},
                                                 description="W_1 between two independent samples of the true start "
                                                             "law at the ensemble size (finite-sample bias)"),
            "wasserstein_1_bias_data": Variable((), "W_1 sampling floor of the data law", "1", "W_1(q_n, q_n')",
                                                "(79)", attrs={"estimator": self.method},
                                                description="W_1 between two independent samples of the data law at "
                                                            "the ensemble size (finite-sample bias)"),
        }

    def observe(self, run, measured):
        times = run.times.cpu().numpy()
        tau = times[-1] - times[0]
        reference = run.true_start
        out = {name: [] for name in self.variables()}
        for name, trajectory in self._perturbed(run).items():
            w1, rate = (v.cpu().numpy() for v in self._w1_and_rate(run.true, trajectory))
            if run.stochastic:  # the saved velocities are ν̂, not the SDE law's: differentiate W_1(t) itself
                rate = np.gradient(w1, times)
            key = (run.protocol, name)
            if key not in self._chi_square:
                self._chi_square[key] = chi_square(run.perturbations[name], reference, kl_proxy=self.kl_proxy)
            divergence = self._chi_square[key]
            d0 = divergence.value
            speed2 = rate**2 / d0 if math.isfinite(d0) else np.full_like(rate, np.nan)
            change = w1[0] - w1[-1]  # reverse end (t = 0) minus reverse start (t = τ)
            out["wasserstein_1"].append(w1)
            out["wasserstein_1_rate"].append(rate)
            out["loss_speed_squared"].append(speed2)
            out["chi_square"].append(d0)
            out["chi_square_method"].append(divergence.method)
            out["chi_square_stderr"].append(divergence.stderr if math.isfinite(d0) else math.inf)
            out["wasserstein_1_change"].append(change)
            out["response"].append(change**2 / (tau * d0) if math.isfinite(d0) else np.nan)
            out["loss_cost"].append(time_integral(speed2, times))
            self._bracket(run, name, w1, divergence, tau, out)
        result = {key: np.array(values) for key, values in out.items() if values}
        result["wasserstein_1_method"] = np.array(self.method)
        result["reference_dissipation_rate"] = run.true.kinetic_energy().cpu().numpy()
        result["reference_dissipation"] = time_integral(result["reference_dissipation_rate"], times)
        n, device, dtype = len(run.true.weights), run.times.device, run.times.dtype
        for key, law, index in (("wasserstein_1_bias_start", run.true_start, -1),
                                ("wasserstein_1_bias_data", run.process.data, 0)):
            if self.method == "common_support":
                result[key] = np.array(self._noise_floor(run, index))
                continue
            projections = self.projections if self.method == "sliced" else None
            result[key] = np.array(sampling_bias(law, n, run.seed, projections=projections, device=device,
                                                 dtype=dtype))
        return result


    def _bracket(self, run, name: str, w1: np.ndarray, divergence: ChiSquare, tau: float, out: dict) -> None:
        """The confidence intervals of ΔW_1 and η (docs/theory.md §4.3), Bonferroni over every random bound so
        that all hold together at ``confidence``: for coupled starts one bracket of ΔW_1 itself from the pairs
        (:func:`stochthermo.measures.change_bracket`), else W_1 at each end bracketed apart
        (:func:`stochthermo.measures.w1_bracket`); D_0 by its standard error. Exact (width 0) for 1-D quantile
        ensembles under a deterministic solver, which are quadratures, not samples."""
        true, perturbed = run.true, run.perturbed[name]
        d0, d0_error = divergence.value, divergence.stderr
        d0_bounds = 2 if math.isfinite(d0) and d0_error > 0 else 0
        sample = all(bool(torch.all(t.weights == t.weights[0])) for t in (true, perturbed))
        coupled = name in run.flows.coupled
        if true.dim == 1 and not run.stochastic:
            random_bounds = d0_bounds
        elif sample:
            random_bounds = d0_bounds + (2 if coupled else 4)
        else:
            for key in ("wasserstein_1_change_lower", "wasserstein_1_change_upper", "response_lower",
                        "response_upper"):
                out[key].append(np.nan)
            out["wasserstein_1_bracket_method"].append("none: weighted particles are not a sample")
            return
        alpha = (1 - self.confidence) / max(random_bounds, 1)
        antithetic = run.flows.sampling == "antithetic"
        seed = run.streams.seed_of(f"{self.name}.bracket.{name}")
        if true.dim == 1 and not run.stochastic:
            low = high = float(w1[0] - w1[-1])
            method = "quadrature (1-D quantile ensembles)"
        elif coupled:
            change = change_bracket((true.positions[0], perturbed.positions[0]),
                                    (true.positions[-1], perturbed.positions[-1]), alpha=alpha, seed=seed,
                                    antithetic=antithetic)
            low, high = change.lower.bound, change.upper.bound
            method = f"upper: {change.upper.method}; lower: {change.lower.method} (each at {alpha:.3g})"
        else:
            end, start = (w1_bracket(true.positions[k], perturbed.positions[k], alpha_lower=alpha, alpha_upper=alpha,
                                     paired=False, antithetic=antithetic, seed=seed + k) for k in (0, -1))
            low, high = end.lower.bound - start.upper.bound, end.upper.bound - start.lower.bound
            method = (f"W_1 at t = 0: upper {end.upper.method}, lower {end.lower.method}; at t = tau: upper "
                      f"{start.upper.method}, lower {start.lower.method} (each at {alpha:.3g})")
        out["wasserstein_1_change_lower"].append(low)
        out["wasserstein_1_change_upper"].append(high)
        out["wasserstein_1_bracket_method"].append(method)
        if not math.isfinite(d0) or divergence.method == KL_PROXY:  # the proxy is no bound on D_0: no interval
            out["response_lower"].append(np.nan)
            out["response_upper"].append(np.nan)
            return
        z = one_sided_z(alpha) if d0_error > 0 else 0.0
        d0_low, d0_high = d0 - z * d0_error, d0 + z * d0_error
        square_low = 0.0 if low <= 0 <= high else min(low**2, high**2)
        square_high = max(low**2, high**2)
        out["response_lower"].append(square_low / (tau * d0_high))
        out["response_upper"].append(square_high / (tau * d0_low) if d0_low > 0 else math.inf)


def _common_support_problem(setup) -> str | None:
    """Why the common-support W_1 cannot represent the perturbed starts of ``setup``, or ``None``."""
    for protocol in setup.protocols.values():
        if not protocol.estimator.exact or protocol.solver.stochastic:
            return (f"common_support represents both starts on one set of particles carried by one flow: protocol "
                    f"'{protocol.name}' needs the exact estimator and a deterministic solver (use exact or sliced)")
        start = setup.prior if setup.reverse_start == "prior" else protocol.process.end_distribution()
        for name, law in setup.perturbations.items():
            divergence = chi_square(law, start)
            if not math.isfinite(divergence.value):
                return (f"common_support needs a finite chi-square D_0, the variance of the importance weights; "
                        f"perturbation '{name}' has D_0 = inf against the true start of protocol '{protocol.name}' "
                        f"({divergence.method}): use exact or sliced")
    return None


@hookimpl
def stochthermo_register_observers():
    return [Response]
