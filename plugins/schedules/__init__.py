"""Built-in noise schedules: the analytic ones (cosine, conditional OT, linear-β VP, Ornstein–Uhlenbeck), the
variance-exploding ones (VE, Song's geometric VE, Karras's EDM) and a diffusers scheduler config read as a
continuous schedule."""

from .diffusers import Diffusers, read_scheduler_config
from .standard import CondOT, Cosine, OrnsteinUhlenbeck, VPLinear
from .variance_exploding import VE, Edm, GeometricVE

__all__ = ["VE", "CondOT", "Cosine", "Diffusers", "Edm", "GeometricVE", "OrnsteinUhlenbeck", "VPLinear",
           "read_scheduler_config"]
