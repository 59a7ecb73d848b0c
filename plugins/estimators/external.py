r"""A model trained elsewhere, read as the reverse process's velocity: the base of the ``torch_module`` and
``diffusers`` estimators (not a plugin itself: it registers nothing).

The model is called as ``network(t, x)`` in its own time convention (``time``) and dtype, and its ``output`` —
the velocity, the score, the noise prediction or the denoiser — is turned into the probability-flow velocity
:math:`\hat\nu_t = f_t - T_t\,\hat s_t` (Eq. (4)); ``docs`` of the ``torch_module`` estimator
(``stochthermo describe estimator torch_module``) explain each convention.

For a process with the Gaussian conditional law :math:`x_t = m_t y + \sqrt{v_t}\,\varepsilon`, the noise level of
EDM (Karras et al. 2022) is :math:`\sigma = \sqrt{v_t}/m_t` (the noise of :math:`x_t/m_t = y + \sigma\varepsilon`;
:math:`\sigma_t` itself for a ``ve`` schedule, :math:`m = 1`). ``time: sigma`` hands the model σ, ``time: c_noise``
EDM's conditioning :math:`\tfrac14\ln\sigma`. ``output: denoiser`` reads the model as EDM's
:math:`D(x_t/m_t;\sigma) \approx E[y \mid x_t]` (it is handed :math:`x_t/m_t`), whose score is
:math:`\hat s = -(x - m_t D)/v_t`.
"""

from __future__ import annotations

import inspect
import math

import torch

from stochthermo import Estimator, ScenarioError
from stochthermo.errors import first_line
from stochthermo.numerics import DIVERGENCE, digest, resolve_dtype
from stochthermo.roles import ForceField, GaussianConditional

OUTPUTS = ("velocity", "score", "epsilon", "denoiser")
#: batch sizes the model is tried on when the scenario is built
CHECK_BATCHES = (4, 5)
#: the earliest time (a fraction of τ) at which a noise prediction is read (module docstring)
EPSILON_TIME_FLOOR = 1e-6
TIMES = ("forward", "unit", "steps", "sigma", "c_noise")
#: what needs the process's Gaussian conditional law N(m_t y, v_t I): the outputs and times below
NEEDS_MOMENTS = {"epsilon", "denoiser", "sigma", "c_noise"}


class ExternalModel(Estimator):
    """Base of the estimators that wrap a model trained elsewhere: ``network(t, x)`` in the model's time
    convention and dtype, read as ``output`` (module docstring)."""

    #: the earliest time, as a fraction of τ, at which a noise prediction is read
    epsilon_time_floor: float = EPSILON_TIME_FLOOR

    def _configure(self, network, *, output: str, time: str, num_train_timesteps: int, dtype: str,
                   source: str = "model") -> None:
        """Check and keep the settings; ``source`` is the scenario key that named the model, which its errors
        name."""
        for value, choices, key in ((output, OUTPUTS, "output"), (time, TIMES, "time")):
            if value not in choices:
                raise ScenarioError(f"must be one of {', '.join(choices)}, got '{value}'", key=key)
        self.output, self.time, self.steps = output, time, num_train_timesteps
        #: particles per model call: ``None`` (all at once) until a call runs out of memory (:meth:`_batched`)
        self.batch_size: int | None = None
        self.model_dtype = resolve_dtype(dtype)
        self.source = source
        #: the loaded callable or module; a module is put in evaluation mode (dropout off, batch norm on its
        #: running statistics): the velocity field must not depend on the batch or on a random draw
        self.network = network
        module = self._module()
        if module is not None:
            try:
                module.eval()
            except NotImplementedError:  # a torch.export program keeps the mode it was exported in
                pass
        if time in NEEDS_MOMENTS and not isinstance(self.process, GaussianConditional):
            raise ScenarioError(f"time '{time}' (the noise level sqrt(v_t)/m_t) needs a Gaussian conditional law; "
                                f"process '{self.process.name}' declares none", key="time")
        if output != "velocity":
            self._check_score_process(self.process)
        self._check_model()

    def _module(self) -> torch.nn.Module | None:
        """The ``nn.Module`` that holds the weights, if the network is one (a subclass wrapping it says which)."""
        return self.network if isinstance(self.network, torch.nn.Module) else None

    def inputs(self) -> dict[str, str]:
        """The digest of the model: its weights (an ``nn.Module``: every parameter and buffer, by name), or the
        source of a plain function; so a retrained model under the same name is never mistaken for the old."""
        module = self._module()
        if module is not None:
            state = module.state_dict()
            return {"model": type(module).__qualname__,
                    "parameters": str(sum(p.numel() for p in module.parameters())),
                    "weights_sha256": digest(*(part for name in sorted(state) for part in (name, state[name])))}
        try:
            return {"model": self.network.__qualname__, "source_sha256": digest(inspect.getsource(self.network))}
        except (AttributeError, OSError, TypeError):  # no source to read (a builtin, a callable object)
            return {"model": repr(self.network)}

    def _check_score_process(self, process) -> None:
        moments = self.output in NEEDS_MOMENTS
        if not isinstance(process, ForceField) or (moments and not isinstance(process, GaussianConditional)):
            need = "a force (f_t) and a Gaussian conditional law" if moments else "a force (f_t)"
            raise ScenarioError(f"output '{self.output}' needs {need}; process '{process.name}' declares none",
                                key="output")
        temperature = process.temperature(torch.linspace(0, process.tau, 257, dtype=torch.float64))
        if not float(temperature.abs().max()) * process.tau < DIVERGENCE:
            raise ScenarioError(f"output '{self.output}' needs a finite force and temperature on [0, tau]; "
                                f"'{process.name}' has none at some t (m_t -> 0): give the velocity instead",
                                key="output")

    def _check_model(self) -> None:
        for n in CHECK_BATCHES:
            x = self.process.end_distribution().sample(n, torch.Generator().manual_seed(0))
            try:
                value = self.velocity(0.5 * self.process.tau, x)
            except ScenarioError:
                raise
            except Exception as exc:  # any failure of the user's model is reported as bad input
                raise ScenarioError(f"calling the model at (t, x) of shapes ({n},), {tuple(x.shape)} failed: "
                                    f"{type(exc).__name__}: {first_line(exc)}", key=self.source) from None
            if not bool(torch.isfinite(value).all()):
                raise ScenarioError("the model returned non-finite values at t = tau/2", key=self.source)

    def _model_time(self, t: float) -> float:
        s = t / self.process.tau
        if self.time in ("sigma", "c_noise"):
            moments = self.process.moments(t)
            sigma = math.sqrt(float(moments.variance)) / float(moments.scale)  # EDM's noise level
            return sigma if self.time == "sigma" else 0.25 * math.log(sigma)
        return {"forward": t, "unit": s, "steps": s * self.steps - 1}[self.time]

    def _call(self, t: float, x: torch.Tensor) -> torch.Tensor:
        times = torch.full((len(x),), self._model_time(t), dtype=self.model_dtype, device=x.device)
        if self.output == "denoiser":  # EDM's D is handed x_t / m_t = y + σε
            x = x / float(self.process.moments(t).scale)
        differentiated = torch.is_grad_enabled() and x.requires_grad  # a divergence by autograd needs the graph
        # otherwise inference mode: no graph over the weights, no version counters
        with torch.enable_grad() if differentiated else torch.inference_mode():
            out = self._batched(times, x.to(self.model_dtype))
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ScenarioError(f"the model must return a tensor of the shape of x, {tuple(x.shape)}; got {got}",
                                key=self.source)
        if out.device != x.device:
            raise ScenarioError(f"the model returned a tensor on {out.device}, the particles are on {x.device}: "
                                "it must compute where its input is (move the model, not its output)",
                                key=self.source)
        return out.to(x.dtype)

    def _batched(self, times: torch.Tensor, x: torch.Tensor):
        """The model on all particles at once — or, once a call ran out of memory, on batches of ``batch_size``:
        halved at every out-of-memory error until a batch fits, and kept for the later calls (batches sized to
        the memory the device has; each particle's value does not depend on its batch: the module is in
        evaluation mode)."""
        size = min(self.batch_size or len(x), len(x))
        while True:
            try:
                if size >= len(x):
                    return self.network(times, x)
                return torch.cat([self.network(times[i:i + size], x[i:i + size]) for i in range(0, len(x), size)])
            except torch.cuda.OutOfMemoryError:  # torch's out-of-memory error, on any device
                if size <= 1:
                    raise
                self.batch_size = size = max(1, size // 2)
                if x.is_cuda:
                    torch.cuda.empty_cache()

    def velocity(self, t, x):
        if self.output in NEEDS_MOMENTS or self.time in NEEDS_MOMENTS:
            # v_0 = 0: ε̂/√v, (x − mD)/v and ln σ are undefined at t = 0, so the model is read just after
            t = max(t, self.epsilon_time_floor * self.process.tau)
        out = self._call(t, x)
        if self.output == "velocity":
            return out
        temperature = self.process.temperature(torch.tensor(t, dtype=torch.float64))
        if self.output == "epsilon":
            out = -out / math.sqrt(float(self.process.moments(t).variance))  # the score, −ε/√v
        elif self.output == "denoiser":
            moments = self.process.moments(t)
            out = -(x - float(moments.scale) * out) / float(moments.variance)  # the score, −(x − m D)/v
        return self.process.force_field(t, x) - temperature.to(x) * out

    def to(self, device, dtype=torch.float64):
        clone = super().to(device, dtype)
        if isinstance(self.network, torch.nn.Module):
            clone.network = self.network.to(device)
        return clone
