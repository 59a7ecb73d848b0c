"""Convergence study behind the default bandwidth of sample-based optimal transport (docs/theory.md §3).

Gaussian data N((1, −0.5), diag(0.5², 1.2²)) carried to N(0, I): the exact OT map is linear (Bures), so the
exact Eulerian field is known. For each sample size n and bandwidth constant c (h = c n^(−1/(d+4)) s̄) it
prints the relative L²(P_t) error of the kernel field at t = τ/2 (over the plan's own particles at that
time), and the kinetic cost of the kernel flow started at the plan's prior points against the plan's
W_2²/τ (the Jensen deficit).

    python benchmarks/ot_bandwidth.py
"""

from __future__ import annotations

import torch

from stochthermo.numerics._integrate import rk4
from stochthermo_plugins.distributions import Gaussian
from stochthermo_plugins.processes.optimal_transport import OptimalTransport


def main() -> None:
    data = Gaussian(mean=[1.0, -0.5], covariance=[[0.25, 0.0], [0.0, 1.44]])
    prior = Gaussian(mean=[0.0, 0.0], std=1.0)
    exact = OptimalTransport(data=data, prior=prior, tau=1.0)
    data_law = _non_gaussian_view(data)
    times = torch.linspace(1.0, 0.0, 33, dtype=torch.float64)
    print(f"{'n':>6} {'c':>5} {'h':>7} {'field L2 err':>13} {'c_2 kernel':>11} {'W2^2/tau plan':>14} {'deficit':>8}")
    for n in (512, 1024, 2048):
        for constant in (0.2, 0.5, 1.0, 1.5, 2.0, 3.0):
            sample = OptimalTransport(data=data_law, prior=prior, tau=1.0)
            sample.realise(n, 0, device=torch.device("cpu"), dtype=torch.float64)
            spread = float(torch.diagonal(data.covariance()).mean()) ** 0.5
            sample.kernel_width = constant * n ** (-1 / (data.dim + 4)) * spread
            midpoint = 0.5 * (sample.plan_start + sample.plan_end)
            error = sample.velocity(0.5, midpoint) - exact.velocity(0.5, midpoint)
            reference = exact.velocity(0.5, midpoint)
            relative = float((error**2).sum(1).mean() / (reference**2).sum(1).mean()) ** 0.5
            _, velocities = rk4(sample.velocity, sample.plan_end, times)
            energy = (velocities**2).sum(-1).mean(-1).flip(0)
            kernel_cost = float(torch.trapezoid(energy, times.flip(0)))
            plan_cost = sample.plan_cost()
            print(f"{n:>6} {constant:>5} {sample.kernel_width:>7.4f} {relative:>13.4f} {kernel_cost:>11.4f} "
                  f"{plan_cost:>14.4f} {1 - kernel_cost / plan_cost:>8.2%}")


def _non_gaussian_view(gaussian):
    """The same law without its Gaussian structure, so that the process takes the sample-based path."""
    view = Gaussian.__new__(Gaussian)
    view.__dict__.update(gaussian.__dict__)
    view.mixture = lambda: None
    return view


if __name__ == "__main__":
    main()
