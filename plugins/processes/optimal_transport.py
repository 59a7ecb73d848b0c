r"""The optimal-transport forward process: the constant-speed W_2 geodesic from q to the prior (physics.md §3).

:math:`x_t = (1 - s)\,y + s\,T(y)`, :math:`s = t/\tau`, with :math:`T` the Brenier map q → P_τ. Particles
move on straight lines at constant velocity :math:`(T(y) - y)/\tau`, so :math:`v_2 \equiv W_2(P_0, P_\tau)/\tau`
and the speed limit (92) holds with equality. The Eulerian velocity at x is that of the particle through x:
:math:`\nu_t(x) = (T(y) - y)/\tau` with :math:`(1-s)y + sT(y) = x`.

Exact maps: in 1-D the monotone rearrangement :math:`T = F_{prior}^{-1}\circ F_q` (any laws with a cdf),
evaluated through normal scores for accurate tails; for Gaussian data and prior in any dimension the
linear Bures map. The flow is transported exactly (no ODE). The process defines no temperature.
"""

from __future__ import annotations

import math

import torch

from stochthermo import ForwardProcess, ScenarioError, hookimpl
from stochthermo.gaussian import bures_map
from stochthermo.roots import bisect


class OptimalTransport(ForwardProcess):
    """Displacement interpolation between the data law and the prior along the exact OT map: 1-D laws, or
    Gaussian data and prior in any dimension."""

    name = "optimal_transport"

    def __init__(self, *, data, prior, tau):
        super().__init__(data=data, prior=prior, tau=tau)
        if data.dim != prior.dim:
            raise ScenarioError(f"data has dimension {data.dim} but the prior {prior.dim}", key="prior")
        data_mix, prior_mix = data.mixture(), prior.mixture()
        if data.dim == 1:
            self.linear_map = None
        elif (data_mix is not None and prior_mix is not None
              and len(data_mix.weights) == 1 and len(prior_mix.weights) == 1):
            self.linear_map = bures_map(data_mix.means[0], data_mix.covariances[0],
                                        prior_mix.means[0], prior_mix.covariances[0])
            self.data_mean, self.prior_mean = data_mix.means[0], prior_mix.means[0]
        else:
            raise ScenarioError("exact optimal transport needs one-dimensional laws or a Gaussian data law "
                                "and a Gaussian prior", key="process")

    @property
    def conservative(self) -> bool:
        return True

    def temperature(self, t):
        return torch.full_like(t, math.nan)

    def end_distribution(self):
        return self.prior

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
        half_width += float((x - centre).abs().max())

        def root_is_above(mid):
            # T(mid) may be ±inf far in the tails: the sign still orders the bracket, but 0·inf must not occur
            moved = s * self.transport_map(mid) if s > 0 else 0.0
            return (1 - s) * mid + moved < x

        return bisect(root_is_above, torch.full_like(x, centre - half_width), torch.full_like(x, centre + half_width))

    def velocity(self, t, x):
        y = self.preimage(x, t / self.tau)
        return (self.transport_map(y) - y) / self.tau

    def flow(self, x0, times):
        """Exact straight lines through x0 at ``times[0]``."""
        y = self.preimage(x0, float(times[0]) / self.tau)
        target = self.transport_map(y)
        s = (times / self.tau).to(x0)[:, None, None]
        positions = (1 - s) * y + s * target
        velocities = ((target - y) / self.tau).expand_as(positions).clone()
        return positions, velocities


@hookimpl
def stochthermo_register_processes():
    return [OptimalTransport]
