"""Particles transported along the time grid, with their velocities: what observers measure."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .ensemble import Ensemble


@dataclass(frozen=True)
class Trajectory:
    """An ensemble carried by a flow, stored on the *forward* time grid (ascending ``times``).

    ``positions`` and ``velocities`` have shape (T, n, d); ``velocities[k]`` is the velocity field the
    particles follow, evaluated at ``positions[k]`` and forward time ``times[k]``.
    """

    times: torch.Tensor
    positions: torch.Tensor
    velocities: torch.Tensor
    weights: torch.Tensor
    normal_scores: torch.Tensor | None

    @property
    def dim(self) -> int:
        return self.positions.shape[-1]

    def expectation(self, values: torch.Tensor) -> torch.Tensor:
        """Weighted mean over particles of ``values`` (T, n) -> (T,)."""
        return values @ self.weights

    def kinetic_energy(self) -> torch.Tensor:
        """∫ |ν_t|² P_t dx at every time, (T,)."""
        return self.expectation((self.velocities**2).sum(-1))


def run_flow(flow, ensemble: Ensemble, times: torch.Tensor) -> Trajectory:
    """Transport ``ensemble`` from forward time ``times[-1]`` = τ back to 0 (the reverse, generating
    direction) with ``flow(x0, reverse_times) -> (positions, velocities)``, and store it on the forward grid.
    """
    positions, velocities = flow(ensemble.positions, times.flip(0))
    return Trajectory(times, positions.flip(0), velocities.flip(0), ensemble.weights, ensemble.normal_scores)


def run_flows(flow, ensembles: dict[str, Ensemble], times: torch.Tensor) -> dict[str, Trajectory]:
    """:func:`run_flow` for several ensembles at once: one flow over all their particles, then split."""
    names = list(ensembles)
    sizes = [len(ensembles[n].weights) for n in names]
    joined = Ensemble(torch.cat([ensembles[n].positions for n in names]),
                      torch.cat([ensembles[n].weights for n in names]), None)
    together = run_flow(flow, joined, times)
    parts = zip(names, together.positions.split(sizes, dim=1), together.velocities.split(sizes, dim=1), strict=True)
    return {name: Trajectory(times, pos, vel, ensembles[name].weights, ensembles[name].normal_scores)
            for name, pos, vel in parts}
