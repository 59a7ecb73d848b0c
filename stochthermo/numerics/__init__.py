"""Numerical methods a plugin may call: integrators, root finders, the chunked Gaussian-mixture posterior,
the exact 1-D quantile flow, the log-density ODE, Gaussian closed forms, the 2-D Helmholtz split, seeded and
cached training, and device/dtype resolution. No physics role is imported here: these are the bottom layer.
"""

from stochthermo.numerics._device import (
    available_cpus,
    cgroup_quota,
    default_threads,
    idle_cpus,
    resolve_device,
    resolve_dtype,
)
from stochthermo.numerics._gaussian import (
    bures_map,
    chi_square_gaussians,
    cholesky_factor,
    component_log_densities,
    gaussian_wasserstein_2,
    sqrtm_psd,
)
from stochthermo.numerics._helmholtz import Grid2D, HelmholtzSplit, covering_grid, helmholtz_split
from stochthermo.numerics._integrate import cumulative_integral, rk4, time_integral
from stochthermo.numerics._log_density import autograd_velocity_and_divergence, log_density_flow
from stochthermo.numerics._posterior import PosteriorAverage, posterior_average, shared_kernel_average
from stochthermo.numerics._progress import Steps, listening, steps
from stochthermo.numerics._quantile_flow import (
    MAX_NORMAL_SCORE,
    MovingMixture,
    mixture_quantile,
    mixture_velocity,
    quantile_flow,
)
from stochthermo.numerics._roots import bisect, safeguarded_newton
from stochthermo.numerics._streams import RandomStreams
from stochthermo.numerics._thresholds import DIVERGENCE
from stochthermo.numerics._training import (
    TrainingKey,
    TrainingResult,
    TrainingSettings,
    digest,
    process_fingerprint,
    train,
)

__all__ = [
    "available_cpus",
    "cgroup_quota",
    "default_threads",
    "idle_cpus",
    "DIVERGENCE",
    "Grid2D",
    "HelmholtzSplit",
    "MAX_NORMAL_SCORE",
    "MovingMixture",
    "PosteriorAverage",
    "RandomStreams",
    "TrainingKey",
    "TrainingResult",
    "TrainingSettings",
    "autograd_velocity_and_divergence",
    "bisect",
    "bures_map",
    "chi_square_gaussians",
    "cholesky_factor",
    "component_log_densities",
    "covering_grid",
    "cumulative_integral",
    "digest",
    "gaussian_wasserstein_2",
    "helmholtz_split",
    "log_density_flow",
    "mixture_quantile",
    "mixture_velocity",
    "posterior_average",
    "process_fingerprint",
    "quantile_flow",
    "resolve_device",
    "resolve_dtype",
    "rk4",
    "steps",
    "Steps",
    "listening",
    "safeguarded_newton",
    "shared_kernel_average",
    "sqrtm_psd",
    "time_integral",
    "train",
]
