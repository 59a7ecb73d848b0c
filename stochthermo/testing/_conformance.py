r"""Conformance checks of every plugin role (import them from :mod:`stochthermo.testing`).

Each check raises :class:`~stochthermo.ConformanceError` (an ``AssertionError`` too, so pytest reports a
failed check) with a message naming the plugin and what is wrong; none relies on ``assert`` statements::

    from stochthermo.testing import check_schedule
    def test_my_schedule():
        check_schedule(MySchedule(alpha=2.0))

The registry runs these checks on the third-party classes it loads that need no parameters, and
:func:`~stochthermo.testing.check_observer` on their observers (docs/trust.md).

================================  ==========================================================================
check                             what it verifies
================================  ==========================================================================
:func:`check_schedule`            m(0) = 1, σ(0) = 0, T ≥ 0 (Eq. (24)); derivatives against autograd; dtype
                                  and shape kept
:func:`check_distribution`        sample shapes, dtype, seeding, mean; 1-D quantiles and normalisation
:func:`check_process`             velocity and temperature shapes, dtypes, devices; T ≥ 0 or undefined;
                                  the continuity equation on its own marginals where it declares them; its
                                  flow map against its velocity
:func:`check_estimator`           velocity shapes and dtype; the divergence against autograd; ν̂ = ν when it
                                  claims to be exact
:func:`check_solver`              shapes, dtype, start point, saved velocities, accuracy on a linear ODE,
                                  reproducibility from a seed
:func:`~stochthermo.testing.check_observer`  one run of a scenario: every declared variable returned with its
                                  dims and no undeclared non-finite value (in :mod:`stochthermo.testing`, as it
                                  runs the engine)
================================  ==========================================================================
"""

from __future__ import annotations

import math

import torch

from stochthermo.errors import ConformanceError
from stochthermo.measures._ensemble import normal_score_grid
from stochthermo.roles._distribution import Distribution
from stochthermo.roles._equation import Equation
from stochthermo.roles._estimator import Estimator
from stochthermo.roles._process import ForwardProcess
from stochthermo.roles._schedule import Schedule, schedule_problem
from stochthermo.roles._solver import Solver

#: interior points where schedule derivatives are compared with autograd
INTERIOR = torch.linspace(0.02, 0.98, 49, dtype=torch.float64)


def require(condition: bool, message: str) -> None:
    """Raise :class:`ConformanceError` with ``message`` unless ``condition``."""
    if not condition:
        raise ConformanceError(message)


# ---- schedules ---------------------------------------------------------------------------------------------
def check_schedule(schedule: Schedule, *, rtol: float = 1e-8) -> None:
    """m(0) = 1, σ(0) = 0 and τT ≥ 0 on [0, 1] (Eq. (24), :func:`stochthermo.roles.schedule_problem`);
    ∂m, ∂σ, ∂σ² match autograd on (0, 1); float64 in, float64 out, shapes kept."""
    label = f"schedule '{schedule.name}'"
    for name in ("m", "sigma", "dm", "dsigma", "dsigma2", "temperature"):
        out = getattr(schedule, name)(INTERIOR.reshape(7, 7))
        require(out.dtype == torch.float64, f"{label}: {name}() returned {out.dtype} for float64 input")
        require(out.shape == (7, 7), f"{label}: {name}() changed the shape (7, 7) to {tuple(out.shape)}")
    for derivative, function in (("dm", schedule.m), ("dsigma", schedule.sigma),
                                 ("dsigma2", lambda s: schedule.sigma(s) ** 2)):
        auto = _autograd_derivative(function, INTERIOR)
        analytic = getattr(schedule, derivative)(INTERIOR)
        require(torch.allclose(analytic, auto, rtol=rtol, atol=rtol),
                f"{label}: {derivative} differs from autograd by {float((analytic - auto).abs().max()):.3g}")
    problem = schedule_problem(schedule)
    require(problem is None, problem or "")


def _autograd_derivative(function, s: torch.Tensor) -> torch.Tensor:
    s = s.clone().requires_grad_(True)
    out = function(s)
    if not out.requires_grad:  # constant in s
        return torch.zeros_like(s)
    return torch.autograd.grad(out.sum(), s)[0]


# ---- distributions -----------------------------------------------------------------------------------------
def check_distribution(distribution: Distribution, *, n: int = 4096, seed: int = 0) -> None:
    """Samples have shape (n, d), the parameters' dtype and the generator's device, and the same seed gives
    the same draws; the sample mean agrees with ``mean()`` to 6 standard errors, and so does the mean of
    uniform points mapped by ``from_unit_cube`` where the law declares a ``unit_cube_dim``; in 1-D the
    log-density integrates to 1 and ``from_normal_score`` inverts ``normal_score``."""
    label = f"distribution '{distribution.name}'"
    draw = distribution.sample(n, torch.Generator().manual_seed(seed))
    require(draw.shape == (n, distribution.dim), f"{label}: sample shape {tuple(draw.shape)}")
    require(draw.dtype == torch.float64, f"{label}: samples are {draw.dtype}")
    again = distribution.sample(n, torch.Generator().manual_seed(seed))
    require(torch.equal(draw, again), f"{label}: the same seed gave different samples")
    standard_error = (distribution.covariance().diagonal() / n).sqrt()
    gap = ((draw.mean(0) - distribution.mean()).abs() / standard_error).max()
    require(gap < 6, f"{label}: sample mean is {float(gap):.1f} standard errors from mean()")
    cube = distribution.unit_cube_dim()
    if cube is not None:
        mapped = distribution.from_unit_cube(torch.rand(n, cube, dtype=torch.float64,
                                                        generator=torch.Generator().manual_seed(seed)))
        require(mapped.shape == (n, distribution.dim), f"{label}: from_unit_cube shape {tuple(mapped.shape)}")
        gap = ((mapped.mean(0) - distribution.mean()).abs() / standard_error).max()
        require(gap < 6, f"{label}: from_unit_cube of uniform points is {float(gap):.1f} standard errors from mean()")
    if distribution.dim != 1:
        return
    z, _ = normal_score_grid(801, device="cpu")
    x = distribution.from_normal_score(z)
    require(bool(torch.all(x[1:] >= x[:-1])), f"{label}: from_normal_score is not monotone")
    inner = (z.abs() < 6)
    back = distribution.normal_score(x)[inner]
    require(torch.allclose(back, z[inner], atol=1e-6), f"{label}: normal_score does not invert from_normal_score")
    low, high = float(x[0]), float(x[-1])
    grid = torch.linspace(low, high, 200001, dtype=torch.float64)[:, None]
    mass = float(torch.trapezoid(distribution.log_prob(grid).exp(), grid[:, 0]))
    require(math.isclose(mass, 1, abs_tol=1e-3), f"{label}: density integrates to {mass:.6f}")


# ---- processes ---------------------------------------------------------------------------------------------
def continuity_residual(process: ForwardProcess, t: float, x: torch.Tensor, h: float = 1e-5):
    """∂_t log P + ν·∇log P + ∇·ν at (t, x), with P_t the process's closed-form marginal (autograd for the
    space derivatives, a central difference in time); returns the residual, its scale max|∂_t log P| + 1,
    and ∇log P. Zero for the exact velocity of the marginals (the continuity equation (1) divided by P)."""
    dlogp_dt = (process.marginal(t + h).log_prob(x) - process.marginal(t - h).log_prob(x)) / (2 * h)
    xr = x.clone().requires_grad_(True)
    grad_logp = torch.autograd.grad(process.marginal(t).log_prob(xr).sum(), xr)[0]
    nu = process.velocity(t, xr)
    divergence = sum(torch.autograd.grad(nu[:, i].sum(), xr, retain_graph=True)[0][:, i] for i in range(x.shape[1]))
    residual = (dlogp_dt + (nu * grad_logp).sum(1) + divergence).detach()
    return residual, float(dlogp_dt.abs().max()) + 1, grad_logp


def check_process(process: ForwardProcess, *, points: int = 64, seed: int = 0, rtol: float = 1e-4) -> None:
    """``velocity`` maps (n, d) float64 to (n, d) float64 on the same device at interior times; the
    temperature keeps the shape of t and is ≥ 0 (∞ allowed) or NaN everywhere (a process without one, such as
    optimal transport); ``conservative`` is a bool; ``end_distribution()`` has the data's dimension; where
    the process declares closed-form marginals, the continuity equation ∂_t log P + ν·∇log P + ∇·ν = 0 holds
    at draws of P_t to ``rtol`` of max|∂_t log P| + 1; its flow map, if any, moves along its velocity."""
    label = f"process '{process.name}'"
    dim, tau = process.data.dim, process.tau
    require(isinstance(process.conservative, bool), f"{label}: conservative must be a bool")
    end = process.end_distribution()
    require(isinstance(end, Distribution) and end.dim == dim, f"{label}: end_distribution() must be a "
            f"{dim}-D Distribution")
    generator = torch.Generator().manual_seed(seed)
    times = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64) * tau
    temperature = process.temperature(times.reshape(3, 1))
    require(temperature.shape == (3, 1), f"{label}: temperature() changed the shape (3, 1) to "
            f"{tuple(temperature.shape)}")
    every_t = process.temperature(torch.linspace(0, tau, 257, dtype=torch.float64))
    undefined = torch.isnan(every_t)
    require(bool(undefined.all()) or not bool(undefined.any()),
            f"{label}: temperature is NaN at some times only (NaN means the process defines none)")
    require(bool(undefined.all()) or float(every_t.min()) >= -1e-12,
            f"{label}: negative temperature {float(every_t.min()):.3g} (Eq. (24))")
    for t in times.tolist():
        marginal = process.marginal(t)
        x = marginal.sample(points, generator) if marginal is not None else end.sample(points, generator)
        velocity = process.velocity(t, x)
        require(velocity.shape == x.shape, f"{label}: velocity of {tuple(x.shape)} has shape {tuple(velocity.shape)}")
        require(velocity.dtype == x.dtype and velocity.device == x.device,
                f"{label}: velocity returned {velocity.dtype} on {velocity.device} for {x.dtype} on {x.device}")
        require(bool(torch.isfinite(velocity).all()), f"{label}: non-finite velocity at t = {t:.3g}")
        if marginal is not None:
            residual, scale, _ = continuity_residual(process, t, x)
            worst = float(residual.abs().max())
            require(worst <= rtol * scale, f"{label}: continuity equation residual {worst:.3g} at t = {t:.3g} "
                    f"(scale {scale:.3g}): the velocity does not transport the declared marginals")
    flow_map = process.flow_map()
    if flow_map is not None:
        x0 = end.sample(points, generator)
        grid = torch.linspace(tau, 0.2 * tau, 5, dtype=torch.float64)
        positions, velocities = flow_map(x0, grid)
        require(positions.shape == (5, *x0.shape), f"{label}: flow map returned positions {tuple(positions.shape)}")
        for k in range(5):
            expected = process.velocity(float(grid[k]), positions[k])
            require(torch.allclose(velocities[k], expected, rtol=1e-6, atol=1e-8),
                    f"{label}: the flow map's velocity differs from velocity() at t = {float(grid[k]):.3g}")


# ---- estimators --------------------------------------------------------------------------------------------
def check_estimator(estimator: Estimator, *, points: int = 64, seed: int = 0) -> None:
    """``velocity`` maps (n, d) float64 to (n, d) float64 at interior times; ``velocity_and_divergence``
    agrees with autograd (d ≤ 3, exact trace); an estimator that declares ``exact = True`` returns the
    process's velocity."""
    label = f"estimator '{estimator.name}'"
    process = estimator.process
    x = process.end_distribution().sample(points, torch.Generator().manual_seed(seed))
    for t in (0.25 * process.tau, 0.75 * process.tau):
        velocity = estimator.velocity(t, x)
        require(velocity.shape == x.shape and velocity.dtype == x.dtype,
                f"{label}: velocity of {tuple(x.shape)} {x.dtype} is {tuple(velocity.shape)} {velocity.dtype}")
        if estimator.exact:
            require(torch.allclose(velocity, process.velocity(t, x), rtol=1e-10, atol=1e-12),
                    f"{label}: declares exact = True but differs from the process's velocity at t = {t:.3g}")
        if x.shape[1] <= 3:
            value, divergence = estimator.velocity_and_divergence(t, x)
            xr = x.clone().requires_grad_(True)
            nu = estimator.velocity(t, xr)
            trace = sum(torch.autograd.grad(nu[:, i].sum(), xr, retain_graph=True)[0][:, i] for i in range(x.shape[1]))
            require(torch.allclose(value, velocity) and torch.allclose(divergence, trace.detach(), rtol=1e-6,
                                                                       atol=1e-8),
                    f"{label}: velocity_and_divergence differs from the velocity and its autograd divergence")


# ---- solvers -----------------------------------------------------------------------------------------------
def linear_test_equation(rate: float = -0.7) -> Equation:
    r"""dx/dt = rate·x with its exact flow map :math:`x_0 e^{rate(t - t_0)}` (no process: for solvers that
    need only a velocity)."""

    def velocity(t, x):
        return rate * x

    def flow_map(x0, times):
        positions = x0[None] * torch.exp(rate * (times - times[0])).to(x0)[:, None, None]
        return positions, rate * positions

    return Equation(velocity, None, flow_map)


class OrnsteinUhlenbeck:
    r"""dx = −x dt + dB (f = −x, T = ½) from Gaussian data N(μ, c²), duck-typed as a process for solvers: ν_t(x) =
    −x + (x − m_t)/(2V_t) with m_t = μe^{−t}, V_t = c²e^{−2t} + (1 − e^{−2t})/2 (the exact velocity of its
    marginals), so a reverse SDE from N(m_τ, V_τ) ends at N(μ, c²)."""

    name = "ornstein_uhlenbeck"

    def __init__(self, mean: float = 1.0, std: float = 0.3, tau: float = 1.0):
        self.mean, self.variance, self.tau = mean, std**2, tau

    def moments(self, t: float) -> tuple[float, float]:
        decay = math.exp(-t)
        return self.mean * decay, self.variance * decay**2 + 0.5 * (1 - decay**2)

    def velocity(self, t, x):
        mean, variance = self.moments(t)
        return -x + (x - mean) / (2 * variance)

    def force_field(self, t, x):
        return -x

    def temperature(self, t):
        return torch.full_like(t, 0.5)


def ornstein_uhlenbeck_equation(**parameters) -> Equation:
    """The Ornstein–Uhlenbeck test dynamics as an :class:`~stochthermo.Equation` (for stochastic solvers)."""
    process = OrnsteinUhlenbeck(**parameters)
    return Equation(process.velocity, process)


def check_solver(solver: Solver, equation: Equation | None = None, *, atol: float = 0.05, seed: int = 0) -> None:
    """On ``equation`` (default :func:`linear_test_equation`, :func:`ornstein_uhlenbeck_equation` for a
    stochastic solver), integrated backwards from t = 1 to 0 over 33
    saved times: positions and velocities have shape (T, n, d) and the start's dtype and device, start at
    x0, and (deterministic solvers) carry the velocity field at the saved positions and stay within ``atol``
    of the exact flow map (the default ``atol`` only catches a solver that does not integrate the equation;
    give a tight one to test a solver's accuracy); a stochastic solver gives the same paths for the same seed
    and different ones for another."""
    label = f"solver '{solver.name}'"
    equation = equation or (ornstein_uhlenbeck_equation() if solver.stochastic else linear_test_equation())
    problem = solver.check(equation)
    require(problem is None, f"{label}: refuses the test equation: {problem}")
    x0 = torch.linspace(-2, 2, 17, dtype=torch.float64).reshape(-1, 1).repeat(1, 2)
    times = torch.linspace(1.0, 0.0, 33, dtype=torch.float64)

    def solve(s):
        return solver.solve(equation, x0, times, generator=torch.Generator().manual_seed(s))

    positions, velocities = solve(seed)
    require(positions.shape == (33, *x0.shape) and velocities.shape == positions.shape,
            f"{label}: returned {tuple(positions.shape)} and {tuple(velocities.shape)}, expected {(33, *x0.shape)}")
    require(positions.dtype == x0.dtype and positions.device == x0.device,
            f"{label}: returned {positions.dtype} on {positions.device} for {x0.dtype} on {x0.device}")
    require(torch.equal(positions[0], x0), f"{label}: positions[0] is not the start x0")
    if solver.stochastic:
        again, _ = solve(seed)
        other, _ = solve(seed + 1)
        require(torch.equal(positions, again), f"{label}: the same seed gave different paths")
        require(not torch.equal(positions, other), f"{label}: different seeds gave the same paths")
        return
    for k in (0, 16, 32):
        expected = equation.velocity(float(times[k]), positions[k])
        require(torch.allclose(velocities[k], expected, rtol=1e-10, atol=1e-12),
                f"{label}: velocities[{k}] is not the velocity field at positions[{k}]")
    if equation.flow_map is not None:
        exact, _ = equation.flow_map(x0, times)
        error = float((positions - exact).abs().max())
        require(error <= atol, f"{label}: error {error:.3g} against the exact flow exceeds {atol:g}")
