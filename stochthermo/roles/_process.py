r"""Forward processes: the Fokker–Planck dynamics from the data law :math:`P_0 = q` to :math:`P_\tau`.

.. math:: \partial_t P_t = -\nabla\cdot(\nu_t P_t), \qquad \nu_t = f_t - T_t \nabla \ln P_t \qquad (1)

A process knows its mean local velocity :math:`\nu_t(x)` exactly, its temperature :math:`T_t` (NaN where
the process defines none, as for optimal transport), its end law :math:`P_\tau` (the reverse process's true
start), and whether :math:`\nu_t` is a gradient field (``conservative``), in which case the housekeeping
entropy production vanishes and :math:`T_t\dot S_t = v_2(t)^2` (Eq. (67)).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import torch

from stochthermo.numerics._log_density import autograd_velocity_and_divergence
from stochthermo.roles._component import Component
from stochthermo.roles._distribution import Distribution
from stochthermo.types import EndpointStep, FlowMap


class ForwardProcess(Component):
    """Abstract forward process. Constructed with the scenario's data, prior and τ (context)."""

    kind: ClassVar[str] = "process"
    CONTEXT: ClassVar[frozenset[str]] = frozenset({"data", "prior", "tau"})

    def __init__(self, *, data: Distribution, prior: Distribution, tau: float):
        self.data = data
        self.prior = prior
        self.tau = float(tau)

    @property
    @abstractmethod
    def conservative(self) -> bool:
        """True when ν_t is a gradient field for every t (zero housekeeping dissipation)."""
        raise NotImplementedError

    @abstractmethod
    def velocity(self, t: float, x: torch.Tensor) -> torch.Tensor:
        """The exact mean local velocity ν_t(x) (Eq. (1)); x is (n, d)."""
        raise NotImplementedError

    @abstractmethod
    def temperature(self, t: torch.Tensor) -> torch.Tensor:
        """T_t on a tensor of times; NaN where the process defines no temperature."""
        raise NotImplementedError

    @abstractmethod
    def end_distribution(self) -> Distribution:
        """P_τ, the law the true reverse process starts from."""
        raise NotImplementedError

    def realise(self, n: int, seed: int, *, device: torch.device, dtype: torch.dtype) -> None:
        """Fix the random realisation of a sample-based process (e.g. the data and prior samples of an
        optimal-transport plan) for one seed of a run with ``n`` particles; called by the engine before
        the seed's flows. Nothing to do for processes given in closed form (the default)."""

    def draws_random_numbers(self) -> bool:
        """Whether :meth:`realise` draws a random realisation from the seed (a sample-based process): by default,
        whether the class overrides it."""
        return type(self).realise is not ForwardProcess.realise

    def marginal(self, t: float) -> Distribution | None:
        """P_t as a distribution with a density (for grid methods: the excess/housekeeping split, exact
        snapshots), or ``None`` where it is not known in closed form (the default)."""
        return None

    def sample_marginal(self, t: float, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` independent draws from P_t, (n, d) (Monte Carlo estimators). Default: from :meth:`marginal`."""
        marginal = self.marginal(t)
        if marginal is None:
            raise NotImplementedError(f"process '{self.name}' can neither give P_t nor sample it")
        return marginal.sample(n, generator)

    def velocity_and_divergence(self, t: float, x: torch.Tensor, *, probes: int = 16,
                                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """ν_t(x) and ∇·ν_t(x) (the log-density ODE, :func:`stochthermo.numerics.log_density_flow`): by
        autograd, exact for d ≤ 3, Hutchinson with ``probes`` above; override where ν is not differentiable
        by autograd."""
        return autograd_velocity_and_divergence(self.velocity, t, x, probes=probes, generator=generator)

    def velocity_and_log_density(self, t: float, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ν_t(x) and log P_t(x) together (grid methods); override where one computation gives both."""
        return self.velocity(t, x), self.marginal(t).log_prob(x)

    def flow_map(self) -> FlowMap | None:
        """The exact flow map of ν, ``(x0 at times[0], times) -> (positions, velocities)``, where the process
        knows one in closed form (the straight lines of optimal transport); ``None`` (the default): solvers
        integrate :meth:`velocity`."""
        return None

    def singular_endpoint(self) -> EndpointStep | None:
        """Where ν_t is singular at t = 0 (empirical data): the step ``(x at t > 0, t) -> (position, velocity)
        at t = 0`` that solvers take last; ``None`` (the default) where ν_0 is regular."""
        return None
