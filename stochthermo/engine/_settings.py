"""A scenario's top-level settings and the defaults of its sections, declared in one place.

:class:`Settings` declares the top-level keys (``tau``, ``particles``, ``seeds``...) as the typed keyword
arguments of its ``__init__``, exactly as a plugin declares its parameters, and is built by the same
machinery (:func:`~stochthermo.engine._parameters.construct`): unknown keys get a "did you mean", values are
coerced to their annotation, and the ranges are checked in ``__init__`` with errors naming the key.
:data:`SECTION_DEFAULTS` holds what a scenario that leaves out ``estimator``, ``solver`` or ``observers`` gets.
"""

from __future__ import annotations

from typing import Any

from stochthermo.engine._parameters import construct, parameters_of
from stochthermo.errors import ScenarioError, did_you_mean

#: what the true reverse process starts from: the actual P_τ, or the prior the generator is given
REVERSE_STARTS = ("end_distribution", "prior")
#: the plugins a scenario gets where it names none
SECTION_DEFAULTS = {"estimator": "exact", "solver": "auto",
                    "observers": ("thermodynamics", "response", "bounds", "snapshots")}
#: the largest seed: seeds seed torch and numpy generators, which take 64-bit integers
MAX_SEED = 2**63 - 1
#: the longest horizon: rates up to the divergence threshold 1e8 / τ integrated over [0, τ], and τ² in the costs,
#: stay far inside float64's range
MAX_TAU = 1e6


class Settings:
    """The top-level settings of a scenario (docs/scenarios.md lists each with its meaning)."""

    def __init__(self, *, name: str | None = None, description: str = "", output: str | None = None,
                 device: str = "auto", dtype: str = "float64", seeds: list[int] | int = 0, tau: float = 1.0,
                 time_steps: int = 256, particles: int = 2048, particle_sampling: str = "random",
                 reverse_start: str = "end_distribution"):
        if tau <= 0:
            raise ScenarioError(f"must be > 0, got {tau}", key="tau")
        if tau > MAX_TAU:
            raise ScenarioError(f"must be <= {MAX_TAU:g} (float64 range of the costs), got {tau:g}", key="tau")
        if time_steps < 2 or time_steps % 2:
            raise ScenarioError(f"must be an even number >= 2 (Simpson's rule), got {time_steps}", key="time_steps")
        if particles < 16:
            raise ScenarioError(f"must be >= 16, got {particles}", key="particles")
        seeds = seeds if isinstance(seeds, list) else [seeds]
        from stochthermo.measures._ensemble import SAMPLINGS  # torch: imported when a scenario is built
        from stochthermo.numerics._device import check_device_name, resolve_dtype

        if len(set(seeds)) != len(seeds) or any(s < 0 or s > MAX_SEED for s in seeds):
            raise ScenarioError(f"seeds must be distinct integers in 0 ... 2^63 - 1, got {seeds}", key="seeds")
        for key, value, choices in (("particle_sampling", particle_sampling, SAMPLINGS),
                                    ("reverse_start", reverse_start, REVERSE_STARTS)):
            if value not in choices:
                raise ScenarioError(f"must be one of {', '.join(choices)}, got '{value}'"
                                    f"{did_you_mean(value, choices)}", key=key)
        resolve_dtype(dtype)
        check_device_name(device)
        self.name, self.description, self.output = name, description, output
        self.device, self.dtype = device, dtype
        self.seeds: tuple[int, ...] = tuple(seeds)
        self.tau, self.time_steps, self.particles = tau, time_steps, particles
        self.particle_sampling, self.reverse_start = particle_sampling, reverse_start


#: the top-level setting keys, in declaration order
SETTING_NAMES = tuple(p.name for p in parameters_of(Settings))


def read_settings(raw: dict[str, Any]) -> Settings:
    """The :class:`Settings` of a scenario's raw mapping (its sections ignored), built like a plugin."""
    return construct(Settings, {key: value for key, value in raw.items() if key in SETTING_NAMES})
