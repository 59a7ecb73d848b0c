r"""The log-density ODE: how the density of a flowing ensemble changes along its particles.

Along :math:`\dot x = \nu_t(x)` the continuity equation :math:`\partial_t p + \nabla\cdot(p\,\nu) = 0` gives
:math:`\frac{d}{dt}\log p_t(x_t) = -\nabla\cdot\nu_t(x_t)`, so densities of a flow follow from its start
density and the divergence of its velocity (docs/theory.md §4: D_t of an estimated reverse process; the
likelihood of held-out data under a learned flow).

The divergence is exact (one autograd pass per dimension) for d ≤ :data:`EXACT_DIMENSIONS`, and above it the
Hutchinson estimator :math:`E_\varepsilon[\varepsilon^\top (\partial\nu/\partial x)\,\varepsilon]` with a
stated number of Rademacher probes (unbiased; its standard error shrinks as 1/sqrt(probes)).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from stochthermo.numerics._integrate import rk4
from stochthermo.types import VelocityField

#: the divergence is exact up to this dimension, Hutchinson's estimator above
EXACT_DIMENSIONS = 3



def autograd_velocity_and_divergence(velocity: VelocityField, t: float, x: torch.Tensor, *, probes: int = 16,
                                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """ν_t (n, d) and ∇·ν_t (n,) at the rows of x from one evaluation of ν: the divergence exact for d ≤ 3,
    Hutchinson with ``probes`` Rademacher vectors above."""
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        nu = velocity(t, xr)
        d = x.shape[1]
        if d <= EXACT_DIMENSIONS:
            divergence = sum(torch.autograd.grad(nu[:, i].sum(), xr, retain_graph=i < d - 1)[0][:, i]
                             for i in range(d))
            return nu.detach(), divergence
        total = torch.zeros(len(x), dtype=x.dtype, device=x.device)
        for k in range(probes):
            sign = torch.randint(0, 2, x.shape, generator=generator, device=x.device).to(x.dtype) * 2 - 1
            jvp = torch.autograd.grad((nu * sign).sum(), xr, retain_graph=k < probes - 1)[0]
            total = total + (jvp * sign).sum(1)
        return nu.detach(), total / probes


def log_density_flow(field: Callable[[float, torch.Tensor], tuple[torch.Tensor, torch.Tensor]], x0: torch.Tensor,
                     log_p0: torch.Tensor, times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Carry particles x0 (n, d) with log densities log_p0 (n,) from ``times[0]`` through ``times`` by RK4 on
    the augmented system (ẋ = ν, (log p)˙ = −∇·ν), ``field(t, x)`` giving (ν, ∇·ν); returns positions
    (T, n, d) and log densities (T, n)."""
    d = x0.shape[1]

    def augmented(t, state):
        velocity, divergence = field(t, state[:, :d])
        return torch.cat([velocity, -divergence[:, None]], dim=1)

    states, _ = rk4(augmented, torch.cat([x0, log_p0[:, None]], dim=1), times)
    return states[..., :d], states[..., d]
