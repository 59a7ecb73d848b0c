r"""Capabilities: what a plugin can do, declared by the methods it implements, not by its class.

Observers and estimators ask ``isinstance(plugin, Capability)`` of these runtime-checkable
:class:`typing.Protocol`\ s (which look at the methods present, so a third-party class declares a
capability simply by implementing it) and never test another plugin's concrete class or attribute names.
Each protocol's docstring is its contract; ``docs/architecture.md`` ("Capabilities") lists who provides and
who uses which.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

#: ``sample(generator) -> (t, x, u)``: a batch of forward times (b,), positions (b, d) and regression targets
#: (b, d) whose conditional mean given (t, x) is the exact velocity ν_t(x)
TargetSampler = Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


@runtime_checkable
class ConditionalTarget(Protocol):
    r"""A process that gives a *conditional training target*: pairs (x, u) at t ~ U[0, τ] with
    :math:`E[u \mid x_t = x] = \nu_t(x)`, so that regressing on u (conditional flow matching) learns ν.
    Provided by the linear-force processes (the conditional velocity of a data component) and by optimal
    transport (minibatch-OT couplings); used by the ``neural`` estimator."""

    def conditional_target_problem(self) -> str | None:
        """Why no target can be given for this process's data (checked when the scenario is built), or None."""

    def conditional_target_sampler(self, batch: int, *, device: torch.device,
                                   dtype: torch.dtype) -> TargetSampler:
        """A sampler of ``batch`` (t, x, u) triples on ``device`` in ``dtype``."""


@runtime_checkable
class MinibatchCoupling(Protocol):
    """A process whose conditional target couples a pool of data and prior samples (minibatch OT): a batch
    of ``batch`` pairs is drawn from a coupled pool of ``pool`` (``coupling_batch`` of the ``neural``
    estimator)."""

    def coupled_target_sampler(self, batch: int, pool: int, *, device: torch.device,
                               dtype: torch.dtype) -> TargetSampler:
        """As :meth:`ConditionalTarget.conditional_target_sampler`, the pairs drawn from a coupled pool."""


@runtime_checkable
class GaussianConditional(Protocol):
    r"""A linear-force process whose law given a data point y is :math:`\mathcal N(M_t y, v_t I)` with
    :math:`M_t = a_t R(\theta_t)` (a scale times a rotation; docs/theory.md §1, §5), so that the score of the
    conditional law is known: what denoising score matching needs. ``moments(t)`` returns an object with
    float tensors ``scale``, ``angle``, ``variance`` (a_t, θ_t, v_t) and their time derivatives ``dscale``,
    ``dangle``, ``dvariance``."""

    def moments(self, t: float):
        """The conditional moments at forward time t."""

    def initial_noise_speed(self) -> float:
        r""":math:`\lim_{t\to 0} d\sqrt{v_t}/dt` (may be ∞)."""

    def score_matching_problem(self) -> str | None:
        """Why the conditional law is not isotropic Gaussian for this process (a general force), or None."""


@runtime_checkable
class ForceField(Protocol):
    r"""A process with a force :math:`f_t(x)` in Eq. (2), dx = f dt + √(2T) dB, so that the stochastic
    dynamics sharing its marginals can be sampled and the implied score ŝ = (f − ν̂)/T formed (docs/theory.md
    §8). Non-finite where the force diverges (m_t = 0 for cosine and cond-OT at t = τ). Provided by the
    linear processes; used by the reverse-SDE solvers, the score-scaled exact estimator and
    ``trajectory_thermodynamics``."""

    def force_field(self, t: float, x: torch.Tensor) -> torch.Tensor:
        """f_t(x) for x of shape (n, d)."""


@runtime_checkable
class KineticCostBound(Protocol):
    r"""A process with Jensen's bound on its kinetic cost, :math:`c_2 \le \int(\dot m^2E|y|^2 + \dot\sigma^2
    n_d)dt` for an (m, σ) schedule (docs/theory.md §2, Eqs. (93)-(95)); used by ``monte_carlo_cost``."""

    def kinetic_cost_bound(self) -> float:
        """The bound (∞ where the noise speed diverges at t = 0, T_0 > 0)."""

    def initial_noise_speed(self) -> float:
        r""":math:`\lim_{t\to 0} d\sqrt{v_t}/dt` (may be ∞)."""


@dataclass(frozen=True)
class ImageLayout:
    """How a vector of the engine is an image: ``shape`` (H, W, C), pixels = ``offset`` + ``scale`` · x."""

    shape: tuple[int, ...]
    offset: np.ndarray
    scale: float


@runtime_checkable
class HoldsImages(Protocol):
    """A distribution whose points are images (``images``); used by ``image_snapshots`` and the figures."""

    def image_layout(self) -> ImageLayout:
        """The image shape and the pixel normalisation."""


@runtime_checkable
class Trained(Protocol):
    """An estimator fitted by a training loop (``neural``): its settings are known when the scenario is
    built, its loss curve once it has been trained."""

    @property
    def record_every(self) -> int:
        """Training steps between two recorded losses."""

    @property
    def training_steps(self) -> int:
        """The number of training steps."""

    def training_losses(self) -> np.ndarray | None:
        """The recorded losses, once trained (None before)."""
