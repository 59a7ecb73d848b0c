r"""Solvers: how particles are moved, separate from the equation that says what moves them.

The layering follows diffrax: the *equation* (:class:`Equation`: the velocity field the particles follow,
the forward process whose force :math:`f_t` and temperature :math:`T_t` a stochastic scheme needs, and the
exact flow map or singular-endpoint step where the process knows one), the *solver* (a plugin of this
role: RK4, the exact maps, later Euler–Maruyama and friends), and *what is saved* (the time grid the
observers read, independent of the solver's own steps).

A reverse process is integrated backwards in forward time, from τ to 0 (docs/theory.md §1, "Time"). A
solver receives the save times in the order of integration and returns positions and velocities at each:
``velocities[k]`` is the velocity field of the equation (for a stochastic scheme: the probability-flow
velocity :math:`\hat\nu_t`) at ``positions[k]``, because the observers average it over the particles.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import torch

from stochthermo.roles._component import Component
from stochthermo.roles._equation import Equation


class Solver(Component):
    """Abstract solver. Parameters are scenario keys, e.g. ``solver: {name: rk4, steps_per_save: 4}``."""

    kind: ClassVar[str] = "solver"
    #: whether the solver consumes random numbers (it then receives a seeded generator)
    stochastic: ClassVar[bool] = False

    def check(self, equation: Equation) -> str | None:
        """Why the solver cannot integrate ``equation`` (checked when the scenario is built), or ``None``."""
        return None

    @abstractmethod
    def solve(self, equation: Equation, x0: torch.Tensor, save_times: torch.Tensor, *,
              generator: torch.Generator | None = None,
              common_noise: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Integrate ``equation`` from ``x0`` (n, d) at ``save_times[0]`` through ``save_times`` (in the
        order of integration); returns (positions, velocities), each (len(save_times), n, d). Only a
        stochastic solver is passed ``generator`` (seeded) and ``common_noise`` by the engine; given
        ``common_noise = k`` (n a multiple of k) it drives particles i, i + k, i + 2k, ... with the same
        increments: the batch is several ensembles of k particles, coupled by common random numbers so that
        differences between them carry no independent sampling noise."""
        raise NotImplementedError
