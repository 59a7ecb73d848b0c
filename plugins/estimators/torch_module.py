r"""The ``torch_module`` estimator: any torch callable as the reverse process's velocity field.

A model trained elsewhere is named in the scenario as ``model: package.module:name`` (importable; a
function or an ``nn.Module`` instance) or ``file: model.pt2`` (a program saved by ``torch.export.save``, exported
with a dynamic batch dimension) or ``file: model.pt`` (TorchScript, which torch deprecates), and is called as
``model(t, x)`` with ``t`` a tensor (n,) of times and ``x`` (n, d), in the model's ``dtype`` on the run's device
(the engine's physics stays float64: x is cast down for the call, the output back up). ``output`` says
what it returns, and the estimator turns it into the probability-flow velocity
:math:`\hat\nu_t = f_t - T_t\,\hat s_t` (Eq. (4)):

* ``velocity``: :math:`\hat\nu_t(x)` itself (flow matching);
* ``score``: :math:`\hat s_t(x) \approx \nabla\ln P_t(x)`;
* ``epsilon``: the noise prediction :math:`\hat\varepsilon \approx E[\varepsilon \mid x_t = x]`, so that
  :math:`\hat s = -\hat\varepsilon/\sqrt{v_t}` (the conditional law is :math:`\mathcal N(M_t y, v_t I)`);
* ``denoiser``: EDM's :math:`D(x_t/m_t; \sigma) \approx E[y \mid x_t]`, handed :math:`x_t/m_t`, so that
  :math:`\hat s = -(x - m_t D)/v_t`.

``score``, ``epsilon`` and ``denoiser`` need a process with a force (capability ``ForceField``) whose force and
temperature stay finite on [0, τ] (variance-preserving or Ornstein–Uhlenbeck schedules; not cosine or
cond-OT, whose force diverges where m_t = 0; ``ve``, EDM's process, is fine), and ``epsilon`` and ``denoiser``
the conditional law (capability ``GaussianConditional``); as ε̂/√v is 0/0 at t = 0, where v_0 = 0, a noise
prediction or denoiser is read at t ≥ ``EPSILON_TIME_FLOOR``·τ (1e-6 τ; the error it makes in ν̂ is of that
order). ``time`` is the convention of the model's t: ``forward`` (t ∈ [0, τ], the engine's), ``unit``
(t/τ ∈ [0, 1]), ``steps`` ((t/τ)·``num_train_timesteps`` − 1, the diffusers timestep k of s_k = (k + 1)/N,
fractional), ``sigma`` (EDM's noise level σ = √v_t/m_t, σ_t for ``ve``) or ``c_noise`` (EDM's ¼ ln σ; both
read just after t = 0 as well, where σ = 0). The model
is checked when the scenario is built: importable, and returning a finite (n, d) tensor on batches of two sizes
(a program exported with a fixed batch size fails there, not in the middle of a run).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from stochthermo import ScenarioError, hookimpl
from stochthermo.errors import first_line

from .external import ExternalModel
from .model_files import check_exported_program


class TorchModule(ExternalModel):
    """A torch callable (``model`` or ``file``) returning the velocity, the score or the noise prediction at
    (t, x) (module docstring)."""

    name = "torch_module"

    def __init__(self, *, process, model: Callable | None = None, file: Path | None = None, output: str = "velocity",
                 time: str = "forward", num_train_timesteps: int = 1000, dtype: str = "float32"):
        super().__init__(process=process)
        if (model is None) == (file is None):
            raise ScenarioError("give either 'model' (package.module:name) or 'file' (a torch.export .pt2 "
                                "program or a TorchScript file)", key="model")
        network = model if model is not None else _load_file(file)
        self._configure(network, output=output, time=time, num_train_timesteps=num_train_timesteps, dtype=dtype,
                        source="model" if model is not None else "file")


def _load_file(path: Path):
    """The module saved in ``path``: a ``.pt2`` program of ``torch.export.save`` (its ``.module()``), any other
    file as TorchScript."""
    if not Path(path).is_file():
        raise ScenarioError(f"{path}: no such file", key="file")
    if Path(path).suffix == ".pt2":
        check_exported_program(Path(path))  # never unpickle: refused before torch reads a pickled member
        # torch logs the reader's traceback as a warning before it raises: the error below says it in one line
        export_log = logging.getLogger("torch.export")
        level = export_log.level
        export_log.setLevel(logging.ERROR)
        try:
            return torch.export.load(str(path)).module()
        except Exception as exc:  # whatever the reader raises, the file is not a program it can load
            raise ScenarioError(f"{path}: not a torch.export program ({type(exc).__name__}: "
                                f"{first_line(exc)})", key="file") from None
        finally:
            export_log.setLevel(level)
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as exc:
        raise ScenarioError(f"{path}: not a TorchScript file ({first_line(exc)})", key="file") from None


@hookimpl
def stochthermo_register_estimators():
    return [TorchModule]
