"""Type aliases shared by the roles and the numerics (a neutral module: it imports nothing of stochthermo).

* :data:`VelocityField`: ``velocity(t, x) -> ν_t(x)``, x of shape (n, d), t a float in forward time;
* :data:`FlowMap`: an exact flow through a time grid;
* :data:`EndpointStep`: the last step into t = 0 where a velocity field is singular there.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: ``velocity(t, x) -> ν_t(x)``: x (n, d), the value (n, d)
VelocityField = Callable[[float, torch.Tensor], torch.Tensor]
#: (x0 at times[0], times) -> (positions, velocities), each (len(times), n, d)
FlowMap = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
#: (x at time t > 0, t) -> (position, velocity) at t = 0, where the velocity field is singular at t = 0
EndpointStep = Callable[[torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]]

__all__ = ["EndpointStep", "FlowMap", "VelocityField"]
