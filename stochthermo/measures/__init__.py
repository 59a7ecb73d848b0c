"""Measurements of probability laws a plugin may call: particle ensembles, Wasserstein distances and the
rate of W_1 along two flows, a confidence bracket on W_1 in any dimension, Pearson χ², semi-discrete optimal
transport and Laguerre cells, the prior error, the long-time probability-flow map and the ODE–SDE bound for
affine dynamics.
"""

from stochthermo.measures._bracket import (
    CRITICS,
    Bracket,
    OneSided,
    change_bracket,
    coupled_ensemble,
    gaussian_transport_map,
    one_sided_z,
    w1_bracket,
)
from stochthermo.measures._divergence import KL_PROXY, ChiSquare, chi_square, isotropic_kl
from stochthermo.measures._ensemble import (
    SAMPLINGS,
    Ensemble,
    make_ensemble,
    normal_score_grid,
    quantile_density,
    unit_cube_points,
)
from stochthermo.measures._laguerre import LaguerreCells, NewtonResult, cell_masses, laguerre_cells, newton_dual_weights
from stochthermo.measures._laws import (
    GaussianMixture,
    PointCloud,
    as_points,
    as_vector,
    check_covariances,
    gaussian_parameters,
)
from stochthermo.measures._long_time import (
    FLOW_STEPS,
    jacobian_asymmetry,
    point_basins,
    point_posterior_mean,
    probability_flow,
    signal_level,
)
from stochthermo.measures._ode_sde_bound import GaussianGeneration, affine_generation
from stochthermo.measures._prior_error import prior_error_bounds, variance_preserving
from stochthermo.measures._semidiscrete import (
    METHODS,
    InvalidWeightedPoints,
    SemiDiscreteMap,
    SemiDiscreteSolution,
    check_weighted_points,
    resolve_method,
    solve_semidiscrete,
)
from stochthermo.measures._wasserstein import (
    Coupling,
    common_support_coupling,
    law_reference,
    optimal_coupling,
    sample_w2_squared,
    sampling_bias,
    sliced_w1_and_rate,
    w1_and_rate,
    w2_and_w1,
    w2_squared,
)

__all__ = [
    "Bracket",
    "CRITICS",
    "OneSided",
    "change_bracket",
    "coupled_ensemble",
    "gaussian_parameters",
    "gaussian_transport_map",
    "one_sided_z",
    "w1_bracket",
    "GaussianMixture",
    "PointCloud",
    "as_points",
    "as_vector",
    "check_covariances",
    "ChiSquare",
    "KL_PROXY",
    "Coupling",
    "Ensemble",
    "FLOW_STEPS",
    "GaussianGeneration",
    "InvalidWeightedPoints",
    "LaguerreCells",
    "NewtonResult",
    "METHODS",
    "SAMPLINGS",
    "SemiDiscreteMap",
    "SemiDiscreteSolution",
    "affine_generation",
    "cell_masses",
    "check_weighted_points",
    "chi_square",
    "isotropic_kl",
    "jacobian_asymmetry",
    "laguerre_cells",
    "law_reference",
    "make_ensemble",
    "newton_dual_weights",
    "normal_score_grid",
    "optimal_coupling",
    "common_support_coupling",
    "point_basins",
    "point_posterior_mean",
    "prior_error_bounds",
    "probability_flow",
    "quantile_density",
    "resolve_method",
    "sample_w2_squared",
    "sampling_bias",
    "signal_level",
    "sliced_w1_and_rate",
    "solve_semidiscrete",
    "unit_cube_points",
    "variance_preserving",
    "w1_and_rate",
    "w2_and_w1",
    "w2_squared",
]
