"""Built-in solvers: RK4 and the exact flow maps for the probability-flow ODE (``auto`` picks), and the
reverse SDEs (Euler–Maruyama, stochastic Heun)."""

from .ode import Automatic, ExactFlow, RungeKutta4
from .sde import EulerMaruyama, StochasticHeun

__all__ = ["Automatic", "EulerMaruyama", "ExactFlow", "RungeKutta4", "StochasticHeun"]
