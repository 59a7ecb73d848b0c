r"""The optimal-transport forward process: the constant-speed W_2 geodesic from q to the prior (docs/theory.md §3).

:math:`x_t = (1 - s)\,y + s\,T(y)`, :math:`s = t/\tau`, with :math:`T` the Brenier map q → P_τ. Particles
move on straight lines at constant velocity :math:`(T(y) - y)/\tau`, so :math:`v_2 \equiv W_2(P_0, P_\tau)/\tau`
and the speed limit (92) holds with equality. The Eulerian velocity at x is that of the particle through x:
:math:`\nu_t(x) = (T(y) - y)/\tau` with :math:`(1-s)y + sT(y) = x`.

Exact maps: in 1-D the monotone rearrangement :math:`T = F_{prior}^{-1}\circ F_q` (any laws with a cdf),
evaluated through normal scores for accurate tails; for Gaussian data and prior in any dimension the
linear Bures map. The flow is then transported exactly (no ODE). The process defines no temperature.

Any other data in d ≥ 2 (point clouds, non-Gaussian mixtures) is transported through samples: for each
seed, n data points :math:`y_i` and the n prior points :math:`z_i` the true reverse process starts from
are paired by the exact discrete OT plan (POT's network simplex, squared Euclidean cost), particles move
on straight lines :math:`x^i_t = (1 - s)y_i + s z_i`, and the Eulerian velocity is the normalised
Gaussian-kernel conditional expectation (paper (G19), docs/theory.md §3)

.. math:: \nu_t(x) = \frac{\sum_i K_h(x - x^i_t)\,(z_i - y_i)/\tau}{\sum_i K_h(x - x^i_t)}, \qquad
   K_h(u) = e^{-|u|^2/2h^2},

with :math:`h = c\,n^{-1/(d+4)}\,\bar s` (:math:`\bar s^2` the data's mean variance per dimension) unless
``bandwidth`` is given. The constant c = 1 comes from a convergence study (``benchmarks/ot_bandwidth.py``,
Gaussian data N((1, −0.5), diag(0.5², 1.2²)) → N(0, I), whose exact field is linear). Relative L²(P_t)
error of the kernel field at s = ½, over c ∈ {0.2, 0.5, 1, 1.5, 2, 3}:

    n = 512:  0.162  0.140  0.119  0.143  0.188  0.270
    n = 1024: 0.111  0.093  0.086  0.115  0.159  0.239
    n = 2048: 0.091  0.078  0.070  0.093  0.134  0.214

The minimum sits at c = 1 for every n and falls with n (below c the plan's sampling noise dominates,
above it the kernel's smoothing bias). A kernel average has less kinetic energy than the particles
(Jensen): the kernel flow's c_2 falls short of the plan's :math:`W_2^2/\tau` by 0.3 %, 1.2–2.4 %,
3.8–6.8 % and 7–11 % at c = 0.2, 0.5, 1, 1.5 (larger n, smaller deficit); the script prints it.
"""

from __future__ import annotations

import math

import torch

from stochthermo import Distribution, ForwardProcess, ScenarioError, hookimpl
from stochthermo.measures import make_ensemble, optimal_coupling
from stochthermo.numerics import RandomStreams, bures_map, posterior_average, safeguarded_newton

#: h = BANDWIDTH_CONSTANT · n^(−1/(d+4)) · s̄ (module docstring)
BANDWIDTH_CONSTANT = 1.0
#: most iterations of the 1-D preimage's safeguarded Newton (from y = x; it stops at float64 resolution)
PREIMAGE_ITERATIONS = 100
#: offset of the data sample's random stream from the seed (the prior sample uses the seed itself)


class OptimalTransport(ForwardProcess):
    """Displacement interpolation between the data law and the prior: along the exact OT map (1-D laws,
    Gaussian data and prior), or along the discrete OT plan of samples with a kernel velocity field
    (anything else in d ≥ 2; ``bandwidth`` h, default from the rule in the module docstring)."""

    name = "optimal_transport"

    def __init__(self, *, data, prior, tau, bandwidth: float | None = None):
        super().__init__(data=data, prior=prior, tau=tau)
        if data.dim != prior.dim:
            raise ScenarioError(f"data has dimension {data.dim} but the prior {prior.dim}", key="prior")
        data_mix, prior_mix = data.mixture(), prior.mixture()
        self.linear_map = None
        self.sample_based = False
        if data.dim == 1:
            pass
        elif (data_mix is not None and prior_mix is not None
              and len(data_mix.weights) == 1 and len(prior_mix.weights) == 1):
            self.linear_map = bures_map(data_mix.means[0], data_mix.covariances[0],
                                        prior_mix.means[0], prior_mix.covariances[0])
            self.data_mean, self.prior_mean = data_mix.means[0], prior_mix.means[0]
        else:
            self.sample_based = True
        if bandwidth is not None:
            if not self.sample_based:
                raise ScenarioError("the exact map needs no bandwidth (sample-based transport only: d >= 2, "
                                    "non-Gaussian data)", key="bandwidth")
            if bandwidth <= 0:
                raise ScenarioError(f"must be > 0, got {bandwidth}", key="bandwidth")
        self.bandwidth = bandwidth

    def draws_random_numbers(self):
        """Only the sample-based plan is drawn from the seed (the 1-D monotone map is exact)."""
        return self.sample_based

    def realise(self, n, seed, *, device, dtype):
        """The plan of this seed: n data points against the n prior points the true reverse process starts
        from (the same seeded ensemble the engine draws)."""
        if not self.sample_based:
            return
        prior_points = make_ensemble(self.prior, n, seed, device=device, dtype=dtype).positions
        generator = RandomStreams(seed).generator("coupling_data", device=device)
        data_points = self.data.sample(n, generator).to(dtype)
        weights = torch.full((n,), 1.0 / n, dtype=dtype, device=device)
        plan = optimal_coupling(data_points, weights, prior_points, weights, monotone=False, metric="sqeuclidean")
        self.plan_start, self.plan_end = data_points[plan.rows], prior_points[plan.cols]
        self.plan_log_mass = torch.log(plan.mass)
        if self.bandwidth is None:
            spread = math.sqrt(float(torch.diagonal(self.data.covariance()).mean()))
            self.kernel_width = BANDWIDTH_CONSTANT * n ** (-1 / (self.data.dim + 4)) * spread
        else:
            self.kernel_width = self.bandwidth

    def plan_cost(self) -> float:
        """Σ π_ij |z_j − y_i|² / τ: the particles' own kinetic cost, W_2² of the samples over τ."""
        return float(self.plan_log_mass.exp() @ ((self.plan_end - self.plan_start) ** 2).sum(1)) / self.tau

    @property
    def conservative(self) -> bool:
        return True

    def temperature(self, t):
        return torch.full_like(t, math.nan)

    def end_distribution(self):
        return self.prior

    def sample_marginal(self, t, n, generator):
        """Draws of the displacement interpolation at s = t/τ: of the seed's plan (sample-based: a plan
        point pair drawn by its mass), or of q pushed by x = (1 − s) y + s T(y) (exact maps)."""
        s = t / self.tau
        if self.sample_based:
            index = torch.multinomial(self.plan_log_mass.exp(), n, replacement=True, generator=generator)
            return (1 - s) * self.plan_start[index] + s * self.plan_end[index]
        y = self.data.sample(n, generator)
        return (1 - s) * y + s * self.transport_map(y)

    def transport_map(self, y: torch.Tensor) -> torch.Tensor:
        """T(y): the Brenier map from the data law to the prior, y (n, d)."""
        if self.linear_map is None:
            return self.prior.from_normal_score(self.data.normal_score(y))
        return self.prior_mean + (y - self.data_mean) @ self.linear_map.mT

    def preimage(self, x: torch.Tensor, s: float) -> torch.Tensor:
        """The y with (1 − s) y + s T(y) = x (unique: the map is monotone)."""
        if self.linear_map is not None:
            eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
            interpolation = (1 - s) * eye + s * self.linear_map
            rhs = x - s * (self.prior_mean - self.data_mean @ self.linear_map.mT)
            return torch.linalg.solve(interpolation, rhs.mT).mT
        centre = 0.5 * (float(self.data.mean()[0]) + float(self.prior.mean()[0]))
        half_width = 60 * math.sqrt(max(float(self.data.covariance()[0, 0]), float(self.prior.covariance()[0, 0])))
        half_width += float((x.detach() - centre).abs().max())

        def residual_and_slope(y):
            # T(y) may be ±inf far in the tails: the sign still orders the bracket, but 0·inf must not occur
            moved = s * self.transport_map(y) if s > 0 else 0.0
            slope = (1 - s) + (s * self.map_derivative(y)[:, None] if s > 0 else 0.0)
            return (1 - s) * y + moved - x, slope

        return safeguarded_newton(residual_and_slope, torch.full_like(x, centre - half_width),
                                  torch.full_like(x, centre + half_width), PREIMAGE_ITERATIONS, start=x)

    def map_derivative(self, y: torch.Tensor) -> torch.Tensor:
        """T'(y) = q(y) / p(T(y)) in 1-D (monotone rearrangement), (n,)."""
        return torch.exp(self.data.log_prob(y) - self.prior.log_prob(self.transport_map(y)))

    def velocity_and_divergence(self, t, x, *, probes=16, generator=None):
        """Closed form for the exact maps, from one preimage: with J = ∂T/∂y, ν = (T(y) − y)/τ and
        ∇·ν = tr((J − I)((1 − s)I + sJ)⁻¹)/τ (J = T'(y) in 1-D, the Bures matrix for Gaussians)."""
        if self.sample_based:
            return super().velocity_and_divergence(t, x, probes=probes, generator=generator)
        s = t / self.tau
        y = self.preimage(x, s)
        velocity = (self.transport_map(y) - y) / self.tau
        if self.linear_map is None:
            slope = self.map_derivative(y)
            return velocity, (slope - 1) / ((1 - s) + s * slope) / self.tau
        eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
        value = torch.trace(torch.linalg.solve((1 - s) * eye + s * self.linear_map, self.linear_map - eye))
        return velocity, torch.full((len(x),), float(value) / self.tau, dtype=x.dtype, device=x.device)

    def marginal(self, t):
        """P_t of the exact maps (a :class:`DisplacementInterpolation`); ``None`` when sample-based."""
        return None if self.sample_based else DisplacementInterpolation(self, t / self.tau)

    def velocity(self, t, x):
        if self.sample_based:
            s = t / self.tau
            centres = (1 - s) * self.plan_start + s * self.plan_end
            displacement = (self.plan_end - self.plan_start) / self.tau
            return posterior_average(x, centres, displacement, self.kernel_width**2, self.plan_log_mass).mean
        y = self.preimage(x, t / self.tau)
        return (self.transport_map(y) - y) / self.tau

    def flow_map(self):
        """Exact straight lines (1-D and Gaussian maps); none for the sample-based kernel field."""
        return None if self.sample_based else self._straight_lines

    def _straight_lines(self, x0, times):
        """Straight lines through x0 at ``times[0]``: x_t = (1 − s) y + s T(y), s = t/τ."""
        y = self.preimage(x0, float(times[0]) / self.tau)
        target = self.transport_map(y)
        s = (times / self.tau).to(x0)[:, None, None]
        positions = (1 - s) * y + s * target
        velocities = ((target - y) / self.tau).expand_as(positions).clone()
        return positions, velocities

    # ---- conditional training target (capabilities ConditionalTarget, MinibatchCoupling) ----------------
    def conditional_target_problem(self):
        return None

    def conditional_target_sampler(self, batch, *, device, dtype):
        return self.coupled_target_sampler(batch, batch, device=device, dtype=dtype)

    def coupled_target_sampler(self, batch, pool, *, device, dtype):
        """Minibatch OT couplings: ``pool`` data and prior samples paired by the exact OT plan of the pool
        (POT's network simplex; in 1-D the monotone pairing, which is that plan), ``batch`` of the pairs,
        :math:`x = (1 - s)y + sz`, target (z − y)/τ. The exact plan costs O(pool³) in d ≥ 2 (6 ms at 256,
        0.2 s at 1024 in 2-D)."""
        import ot

        process, n = self, batch
        data, prior = process.data.to(device, dtype), process.prior.to(device, dtype)

        def sample(generator):
            y, z = data.sample(pool, generator), prior.sample(pool, generator)
            if y.shape[1] == 1:  # in 1-D the monotone pairing is the exact plan for the squared cost
                y, z = y.sort(0).values, z.sort(0).values
            else:
                plan = ot.emd(torch.full((pool,), 1.0 / pool, device=device, dtype=dtype),
                              torch.full((pool,), 1.0 / pool, device=device, dtype=dtype), ot.dist(y, z))
                z = z[plan.argmax(1)]  # the plan of two uniform point sets of one size is a permutation
            if pool > n:  # a batch of the coupled pairs
                chosen = torch.randperm(pool, generator=generator, device=device)[:n]
                y, z = y[chosen], z[chosen]
            t = process.tau * torch.rand(n, generator=generator, device=device, dtype=dtype)
            s = (t / process.tau)[:, None]
            return t, (1 - s) * y + s * z, (z - y) / process.tau

        return sample


class DisplacementInterpolation(Distribution):
    r"""The law of (1 − s) y + s T(y), y ~ q, for an exact map: density
    :math:`q(y)/|\det((1 - s)I + sJ(y))|` at the preimage y (built by the process, not registered)."""

    name = "displacement_interpolation"

    def __init__(self, process: OptimalTransport, s: float):
        self.process, self.s = process, s

    @property
    def dim(self):
        return self.process.data.dim

    def _push(self, y):
        return (1 - self.s) * y + self.s * self.process.transport_map(y)

    def sample(self, n, generator):
        return self._push(self.process.data.sample(n, generator))

    def log_prob(self, x):
        process, s = self.process, self.s
        y = process.preimage(x, s)
        if process.linear_map is None:
            jacobian = torch.log((1 - s) + s * process.map_derivative(y))
        else:
            eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
            jacobian = torch.logdet((1 - s) * eye + s * process.linear_map).expand(len(x))
        return process.data.log_prob(y) - jacobian

    def _quadrature(self):
        """Nodes and weights of the data law's normal-score (1-D) grid, pushed by the interpolation."""
        ensemble = make_ensemble(self.process.data, 4097, 0, device=self.process.data.mean().device)
        return self._push(ensemble.positions), ensemble.weights

    def mean(self):
        if self.process.linear_map is None:
            x, w = self._quadrature()
            return w @ x
        return self._push(self.process.data_mean[None])[0]

    def covariance(self):
        if self.process.linear_map is None:
            x, w = self._quadrature()
            centred = x - w @ x
            return (centred * w[:, None]).T @ centred
        eye = torch.eye(self.dim, dtype=self.process.linear_map.dtype)
        interpolation = (1 - self.s) * eye + self.s * self.process.linear_map
        return interpolation @ self.process.data.covariance() @ interpolation.T


@hookimpl
def stochthermo_register_processes():
    return [OptimalTransport]
