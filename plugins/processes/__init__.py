"""Built-in forward processes: a linear force from a schedule (``scheduled``), a non-conservative rotation
(``rotational``) and the W_2 geodesic (``optimal_transport``)."""

from .optimal_transport import OptimalTransport
from .rotational import Rotational
from .scheduled import Scheduled

__all__ = ["OptimalTransport", "Rotational", "Scheduled"]
