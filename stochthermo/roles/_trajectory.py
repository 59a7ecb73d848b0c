"""Particles transported along the time grid, with their velocities: what observers measure."""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
        """∫ ‖ν_t‖² P_t dx at every time, (T,)."""
        return self.expectation((self.velocities**2).sum(-1))


def run_flows(flow, ensembles: dict, times: torch.Tensor) -> dict:
    """Transport every ensemble from forward time ``times[-1]`` = τ back to 0 (the reverse, generating
    direction) with ``flow(x0, reverse_times) -> (positions, velocities)`` in one batch over all their
    particles, and store each on the forward grid: ``{key: Trajectory}`` for ``{key: Ensemble}``."""
    keys = list(ensembles)
    sizes = [len(ensembles[k].weights) for k in keys]
    positions, velocities = flow(torch.cat([ensembles[k].positions for k in keys]), times.flip(0))
    parts = zip(keys, positions.flip(0).split(sizes, dim=1), velocities.flip(0).split(sizes, dim=1), strict=True)
    return {key: Trajectory(times, pos, vel, ensembles[key].weights, ensembles[key].normal_scores)
            for key, pos, vel in parts}
