r"""Training a velocity model that a researcher can trust: seeded, resumable, cached by what it was trained on.

:func:`train` minimises a regression loss :math:`E|\hat\nu_\theta(t, x) - u|^2` over batches that a
``sample_batch(generator)`` callable draws (conditional flow matching, minibatch-OT couplings: the estimator
decides), with AdamW, a linear warm-up then cosine decay of the learning rate, optional EMA weights
(``torch.optim.swa_utils``), a progress bar, and the loss curve kept every ``record_every`` steps.

Checkpoints are keyed by a :class:`TrainingKey`: SHA-256 digests of the data and the process (a
fingerprint of their behaviour: seeded data samples and the velocity on fixed probes, so any plugin is
covered), of the model's architecture and of the training settings. A finished checkpoint with the same
key is reused; an unfinished one is resumed from its last save (optimizer, scheduler, EMA and random
state included, so a resumed run equals an uninterrupted one); a checkpoint with another key is refused,
naming the parts that differ.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from stochthermo.errors import ScenarioError
from stochthermo.numerics._progress import steps

log = logging.getLogger("stochthermo")

PRECISIONS = {"float32": torch.float32, "float64": torch.float64}
#: probes of the process fingerprint: points per time, times, data samples
FINGERPRINT_POINTS, FINGERPRINT_TIMES, FINGERPRINT_SAMPLES = 64, 5, 256


@dataclass(frozen=True)
class TrainingSettings:
    steps: int
    batch: int
    learning_rate: float
    weight_decay: float
    warmup: int
    ema: float | None
    seed: int
    record_every: int
    checkpoint_every: int
    #: the network's floating-point type in training (the trained model is evaluated in the scenario's dtype)
    precision: str = "float32"

    def check(self) -> None:
        for key in ("steps", "batch", "record_every", "checkpoint_every"):
            if getattr(self, key) < 1:
                raise ScenarioError(f"must be >= 1, got {getattr(self, key)}", key=key)
        if self.learning_rate <= 0:
            raise ScenarioError(f"must be > 0, got {self.learning_rate}", key="learning_rate")
        if self.weight_decay < 0:
            raise ScenarioError(f"must be >= 0, got {self.weight_decay}", key="weight_decay")
        if not 0 <= self.warmup < self.steps:
            raise ScenarioError(f"must be in [0, steps), got {self.warmup}", key="warmup")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ScenarioError(f"must be in (0, 1), got {self.ema}", key="ema")
        if self.precision not in PRECISIONS:
            raise ScenarioError(f"must be one of {', '.join(PRECISIONS)}, got '{self.precision}'", key="precision")

    @property
    def dtype(self) -> torch.dtype:
        return PRECISIONS[self.precision]

    def learning_rate_factor(self, step: int) -> float:
        """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``steps``."""
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.steps - self.warmup)
        return 0.5 * (1 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class TrainingKey:
    """What a model was trained on, as digests; ``name`` is the checkpoint's file stem."""

    data: str
    process: str
    model: str
    training: str

    @property
    def name(self) -> str:
        return hashlib.sha256("".join(asdict(self).values()).encode()).hexdigest()[:24]

    def differences(self, other: TrainingKey) -> list[str]:
        return [field for field, value in asdict(self).items() if asdict(other)[field] != value]


def digest(*parts) -> str:
    """SHA-256 of tensors (their float64 bytes), arrays and text."""
    sha = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            part = part.detach().cpu().to(torch.float64).numpy()
        if isinstance(part, np.ndarray):
            sha.update(np.ascontiguousarray(part).tobytes())
        else:
            sha.update(repr(part).encode())
    return sha.hexdigest()


def process_fingerprint(process) -> tuple[str, str]:
    """Digests of the data law (seeded samples) and of the process (its class, τ and its velocity on
    fixed probe points around the data at several times), on the CPU in float64."""
    process = process.to(torch.device("cpu"), torch.float64)
    process.realise(FINGERPRINT_SAMPLES, 0, device=torch.device("cpu"), dtype=torch.float64)  # sample-based ones
    generator = torch.Generator().manual_seed(12345)
    data = process.data.sample(FINGERPRINT_SAMPLES, generator)
    probes = process.prior.sample(FINGERPRINT_POINTS, generator)
    times = [process.tau * (k + 0.5) / FINGERPRINT_TIMES for k in range(FINGERPRINT_TIMES)]
    velocities = [process.velocity(t, probes) for t in times]
    return digest(data), digest(type(process).__qualname__, process.tau, *velocities)


@dataclass
class TrainingResult:
    model: torch.nn.Module
    losses: np.ndarray
    steps: np.ndarray
    reused: bool


def train(model: torch.nn.Module, sample_batch: Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor,
                                                                                    torch.Tensor]],
          settings: TrainingSettings, *, key: TrainingKey, path: Path, device: torch.device,
          progress: bool | None = None, description: str = "training",
          penalty: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
          ) -> TrainingResult:
    """Train ``model(t, x)`` on batches ``(t, x, target)`` from ``sample_batch`` and return the model to use
    (the EMA weights when ``settings.ema``), saving to and resuming from ``path``; ``penalty(model, t, x)``, where
    given, is added to each batch's loss (and to the recorded losses). The progress bar shows on a terminal
    (``progress=None``), always (True) or never (False)."""
    progress = sys.stderr.isatty() if progress is None else progress
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, settings.learning_rate_factor)
    ema = (torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(
        settings.ema)) if settings.ema is not None else None)
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    losses: list[float] = []
    start = 0
    if path.exists():
        state = _load(path, key)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        generator.set_state(state["generator"].to(generator.get_state().device))
        losses, start = list(state["losses"]), state["step"]
        log.info("%s: %s checkpoint %s at step %d of %d", description,
                 "reusing" if start == settings.steps else "resuming", path, start, settings.steps)
    bar = tqdm(total=settings.steps, initial=start, desc=description, unit="step", file=sys.stderr,
               disable=not progress or start == settings.steps)
    running, count = 0.0, 0
    reporter = steps(description, settings.steps - start)
    for step in range(start, settings.steps):
        t, x, target = sample_batch(generator)
        loss = ((model(t, x) - target) ** 2).sum(-1).mean()
        if penalty is not None:
            loss = loss + penalty(model, t, x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        running, count = running + float(loss.detach()), count + 1
        if (step + 1) % settings.record_every == 0:
            losses.append(running / count)
            bar.set_postfix_str(f"loss {losses[-1]:.4g}")
            running, count = 0.0, 0
        bar.update()
        reporter.advance()
        if (step + 1) % settings.checkpoint_every == 0 or step + 1 == settings.steps:
            _save(path, {"key": asdict(key), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "ema": ema.state_dict() if ema is not None else None,
                         "generator": generator.get_state(), "losses": losses, "step": step + 1})
    bar.close()
    trained = ema.module if ema is not None else model
    recorded = settings.record_every * np.arange(1, len(losses) + 1)
    return TrainingResult(trained.eval(), np.array(losses), recorded, reused=start == settings.steps)


def _load(path: Path, key: TrainingKey) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- a corrupt or foreign file: the same user error
        raise ScenarioError(f"checkpoint {path} cannot be read: {exc}", key="checkpoint") from None
    stored = TrainingKey(**state.get("key", {})) if isinstance(state.get("key"), dict) else None
    if stored != key:
        differing = key.differences(stored) if stored else ["everything (no key stored)"]
        raise ScenarioError(f"checkpoint {path} was trained on a different {', '.join(differing)} than this scenario "
                            "asks for: remove it, or point 'checkpoint' elsewhere", key="checkpoint")
    return state


def _save(path: Path, state: dict) -> None:
    """Atomic: a temporary file beside the target, then a rename (an interrupted save leaves the old one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
