r"""A trained velocity: an MLP :math:`\hat\nu_\theta(t, x)` fitted by flow matching (docs/theory.md §4, (100)).

Training targets (what the loss regresses on; its minimiser is the exact ν_t):

* linear-force processes (``scheduled``, ``rotational``) — *conditional flow matching*: a data component
  k (a point of a point cloud, or a component :math:`\mathcal N(\mu_k, c_kI)` of an isotropic mixture) and
  t ~ U[0, τ], :math:`x = M_t\mu_k + \sqrt{V_k}\,\varepsilon`, :math:`V_k = a_t^2c_k + v_t`, target the
  conditional velocity :math:`u = \dot M_t\mu_k + (\dot V_k/2V_k + G_tJ)(x - M_t\mu_k)`, whose posterior
  average is ν_t (:mod:`.processes.linear`). The moments come from a table of 4097 times, linearly
  interpolated (relative error below 1e-7 in the targets);
* ``optimal_transport`` — *minibatch OT couplings*: a batch of data and prior samples paired by the exact
  OT plan of the batch (POT's network simplex; in 1-D the monotone pairing, which is that plan),
  :math:`x = (1 - s)y + sz`, target (z − y)/τ. The exact plan costs O(batch³) in d ≥ 2 (6 ms at 256, 0.2 s
  at 1024 in 2-D): give OT protocols a smaller ``batch`` there.

The conditional loss exceeds :math:`E|\hat\nu - \nu|^2` by an irreducible variance, so the residual L of
Eq. (100) is measured separately against the exact ν (observer ``estimation``).

Architecture: input x/σ_q and Fourier features :math:`\sin, \cos(2\pi f_j t/\tau)`, :math:`f_j = 2^{j-1}`,
``depth`` hidden layers of ``width`` SiLU units, output scaled by σ_q/τ (σ_q the data's standard deviation).
``objective: score_matching`` wraps the same MLP as a noise predictor (:mod:`.score_model`);
``fp_residual_weight`` w_R > 0 adds w_R · E|v_t^{3/2} R_t|² to its loss, R the score Fokker–Planck residual
of the model's own score at the first ``fp_collocation`` points of each batch (arXiv:2311.15996's
regularisation; the v^{3/2} scaling keeps it finite as v → 0, docs/theory.md §8).
Training (:func:`stochthermo.numerics.train`) runs on the scenario's device in ``precision`` (float32 by default:
2.5× the float64 step rate on CPU; the trained network is evaluated in the scenario's dtype), seeded, on
first use of the estimator, and is cached under ``cache`` (or in the file ``checkpoint``) by a hash of data,
process, model and settings.

Default budget (width 128, depth 3, batch 512, 12000 steps, lr 2e-3): chosen on the E1 mixture with the
cosine schedule, where η of the learned flow depends on how well the network resolves the stretch of the
gap between the modes near t = 0 (the end-to-end map's slope there is 2.2). At a fixed time budget the
error is optimisation-limited, not noise-limited: relative η errors over the four perturbations were
≤ 2.8 % at batch 2048 × 4000 steps, ≤ 1.0 % at 1024 × 12000 and ≤ 0.34 % at 512 × 16000 (training about
25, 105 and 105 s on 2 cores; 512 × 12000 takes about 65 s); a wider net (256: ≤ 3.6 %, 160 s) or more time
frequencies (10: ≤ 4.5 %) did not help.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from stochthermo import Estimator, ScenarioError, hookimpl
from stochthermo.numerics import TrainingKey, TrainingSettings, digest, process_fingerprint, train
from stochthermo.roles import ConditionalTarget, GaussianConditional, MinibatchCoupling

from .score_model import WEIGHTINGS, ScoreVelocity, score_coefficients, score_row

#: intervals of the score-coefficient table
TABLE_INTERVALS = 4096
#: intervals of the score-matching check at construction (the full table is built when training starts)
CHECK_INTERVALS = 64
OBJECTIVES = ("flow_matching", "score_matching")
#: the Fokker-Planck penalty's collocation times start here (a fraction of τ): v_t > 0 there
FP_TIME_FLOOR = 1e-3


class VelocityMLP(nn.Module):
    """ν̂(t, x) = c · MLP([x/σ_q, sin 2πf_j t/τ, cos 2πf_j t/τ]), c = ``output_scale`` (σ_q/τ for a velocity,
    1 for a noise prediction)."""

    def __init__(self, dim: int, width: int, depth: int, frequencies: int, tau: float, scale: float,
                 output_scale: float):
        super().__init__()
        self.tau, self.scale, self.output_scale = tau, scale, output_scale
        self.register_buffer("frequencies", 2.0 ** torch.arange(frequencies, dtype=torch.float64) / 2)
        layers: list[nn.Module] = []
        size = dim + 2 * frequencies
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.SiLU()]
            size = width
        layers.append(nn.Linear(size, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        phase = 2 * math.pi * (t / self.tau)[:, None] * self.frequencies.to(x.dtype)
        features = torch.cat([x / self.scale, torch.sin(phase), torch.cos(phase)], dim=1)
        return self.net(features) * self.output_scale

    velocity = forward


class Neural(Estimator):
    """An MLP velocity trained by conditional flow matching (linear-force processes) or on minibatch-OT
    couplings (``optimal_transport``); AdamW with warm-up and cosine decay, optional EMA weights."""

    name = "neural"

    def __init__(self, *, process, objective: str = "flow_matching", weighting: str = "noise", width: int = 128,
                 depth: int = 3, frequencies: int = 6, steps: int = 12000,
                 batch: int = 512, learning_rate: float = 2e-3, weight_decay: float = 0.0, warmup: int = 100,
                 ema: float | None = 0.999, seed: int = 0, record_every: int = 25, checkpoint_every: int = 500,
                 precision: str = "float32", coupling_batch: int | None = None, cache: Path = Path("checkpoints"),
                 checkpoint: Path | None = None, fp_residual_weight: float = 0.0, fp_collocation: int = 64):
        super().__init__(process=process)
        if min(width, depth, frequencies) < 1:
            raise ScenarioError(f"width, depth and frequencies must be >= 1, got {width}, {depth}, {frequencies}",
                                key="width")
        self.settings = TrainingSettings(steps, batch, learning_rate, weight_decay, warmup, ema, seed, record_every,
                                         checkpoint_every, precision)
        self.settings.check()
        coupling_batch = batch if coupling_batch is None else coupling_batch
        if coupling_batch < batch:
            raise ScenarioError(f"must be >= batch = {batch}, got {coupling_batch}", key="coupling_batch")
        if coupling_batch != batch and not isinstance(process, MinibatchCoupling):
            raise ScenarioError(f"process '{process.name}' does not couple minibatches (only minibatch-OT training, "
                                "e.g. process optimal_transport, does)", key="coupling_batch")
        if objective not in OBJECTIVES:
            raise ScenarioError(f"must be one of {', '.join(OBJECTIVES)}, got '{objective}'", key="objective")
        if weighting not in WEIGHTINGS:
            raise ScenarioError(f"must be one of {', '.join(WEIGHTINGS)}, got '{weighting}'", key="weighting")
        if objective == "score_matching":
            if not isinstance(process, GaussianConditional):
                raise ScenarioError(f"score matching needs Gaussian conditional laws N(M_t y, v_t I) (linear-force "
                                    f"processes such as scheduled, rotational), not '{process.name}'", key="objective")
            problem = process.score_matching_problem()
        elif not isinstance(process, ConditionalTarget):
            raise ScenarioError(f"process '{process.name}' gives no conditional training target (neural training "
                                "needs one: scheduled, rotational and optimal_transport give it)", key="name")
        else:
            problem = process.conditional_target_problem()
        if problem:
            raise ScenarioError(problem, key="objective")
        if fp_residual_weight < 0:
            raise ScenarioError(f"must be >= 0, got {fp_residual_weight}", key="fp_residual_weight")
        if fp_residual_weight > 0 and objective != "score_matching":
            raise ScenarioError(f"a Fokker-Planck residual weight needs a score: objective '{objective}' has none "
                                "(use objective: score_matching)", key="fp_residual_weight")
        if fp_residual_weight > 0 and process.data.dim > 3:
            raise ScenarioError(f"the residual's exact divergence is taken for d <= 3; the data are "
                                f"{process.data.dim}-D", key="fp_residual_weight")
        if fp_collocation < 1:
            raise ScenarioError(f"must be >= 1, got {fp_collocation}", key="fp_collocation")
        self.architecture = {"width": width, "depth": depth, "frequencies": frequencies}
        if objective == "score_matching":
            score_coefficients(process, CHECK_INTERVALS)  # refuse a divergent force now, not after loading
        #: what the network is and how it is trained (part of the checkpoint key)
        self.objective = {"objective": objective} | ({"weighting": weighting} if objective == "score_matching"
                                                      else {})
        if isinstance(process, MinibatchCoupling):
            self.objective["coupling_batch"] = coupling_batch
        if fp_residual_weight > 0:
            self.objective |= {"fp_residual_weight": fp_residual_weight, "fp_collocation": fp_collocation}
        self.cache, self.checkpoint = cache, checkpoint
        self.result = None  # the TrainingResult, once trained

    # ---- training --------------------------------------------------------------------------------------
    def _key(self) -> TrainingKey:
        data, process = process_fingerprint(self.process)
        return TrainingKey(data, process, digest(sorted((self.architecture | self.objective).items())),
                           digest(sorted(vars(self.settings).items())))

    def trained(self, device: torch.device, dtype: torch.dtype):
        """The trained model (trained, resumed or loaded on first call)."""
        if self.result is None:
            key = self._key()
            path = self.checkpoint or self.cache / f"{key.name}.pt"
            process = self.process
            scale = math.sqrt(float(torch.diagonal(process.data.covariance()).mean()))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.settings.seed)
                weighting = self.objective.get("weighting")
                score = weighting is not None
                model = VelocityMLP(process.data.dim, **self.architecture, tau=process.tau, scale=scale,
                                    output_scale=1.0 if score else scale / process.tau)
            if score:
                model = ScoreVelocity(model, score_coefficients(process, TABLE_INTERVALS), tau=process.tau,
                                      weighting=weighting)
            precision = self.settings.dtype
            model = model.to(device, precision)
            sampler = (model.sampler(process.data.to(device, precision), self.settings.batch) if score
                       else self._target_sampler(device, precision))
            self.result = train(model, sampler, self.settings, key=key, path=path, device=device,
                                description=f"{self.name} estimator for {process.name}", penalty=self._penalty())
        return self.result.model.to(device, dtype)

    def _penalty(self):
        """w_R · mean |v^{3/2} R|² over the first ``fp_collocation`` points of each batch (x ~ P_t, so the mean
        weights the residual by P_t as the observer does), t floored at FP_TIME_FLOOR · τ where v > 0 is tiny;
        ``None`` without a residual weight."""
        weight = self.objective.get("fp_residual_weight")
        if weight is None:
            return None
        count, floor = self.objective["fp_collocation"], FP_TIME_FLOOR * self.process.tau

        def penalty(model, t, x):
            residual = model.fokker_planck_residual(t[:count].clamp(min=floor), x[:count])
            return weight * (residual**2).sum(1).mean()

        return penalty

    def _target_sampler(self, device, dtype):
        process, batch = self.process, self.settings.batch
        if isinstance(process, MinibatchCoupling):
            return process.coupled_target_sampler(batch, self.objective["coupling_batch"], device=device, dtype=dtype)
        return process.conditional_target_sampler(batch, device=device, dtype=dtype)

    # ---- the training record (capability Trained) ---------------------------------------------------------
    @property
    def record_every(self) -> int:
        return self.settings.record_every

    @property
    def training_steps(self) -> int:
        return self.settings.steps

    def training_losses(self):
        return None if self.result is None else self.result.losses

    # ---- the estimated velocity --------------------------------------------------------------------------
    def velocity(self, t, x):
        model = self.trained(x.device, x.dtype)
        times = torch.full((len(x),), float(t), dtype=x.dtype, device=x.device)
        with torch.set_grad_enabled(x.requires_grad):
            if isinstance(model, ScoreVelocity):
                row = score_row(self.process, float(t), first=self.process.tau / TABLE_INTERVALS)
                return model.velocity(times, x, row.to(x.device, x.dtype).expand(len(x), -1))
            return model.velocity(times, x)


@hookimpl
def stochthermo_register_estimators():
    return [Neural]
