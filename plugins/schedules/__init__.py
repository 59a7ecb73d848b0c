"""Built-in noise schedules: the analytic ones (cosine, conditional OT, linear-β VP, Ornstein–Uhlenbeck, VE)
and a diffusers scheduler config read as a continuous schedule."""

from .diffusers import Diffusers, read_scheduler_config
from .standard import VE, CondOT, Cosine, OrnsteinUhlenbeck, VPLinear

__all__ = ["VE", "CondOT", "Cosine", "Diffusers", "OrnsteinUhlenbeck", "VPLinear", "read_scheduler_config"]
