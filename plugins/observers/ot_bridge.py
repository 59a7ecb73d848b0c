r"""OT-bridge sampling against the plain reverse process at equal cost (arXiv:2410.13431; docs/theory.md §9).

The bridge starts generation at an intermediate forward time T′ = ``bridge_time``: ``particles`` prior
samples z are mapped by the semi-discrete Brenier map T onto the data points and diffused to T′,
:math:`x_{T'} = a_{T'}\,T(z) + \sqrt{v_{T'}}\,\varepsilon` (fresh ε: exactly the law P_{T′}, since T pushes
the prior onto the data), then carried to t = 0 along the protocol's estimated velocity. The plain sampler
carries the prior samples themselves from τ. Both use the solver ``sampler`` (default ``auto``: RK4, 4
velocity evaluations a step; a reverse SDE such as ``{name: stochastic_heun, gamma: 1}`` is seeded from
the run's seed, the same noise for both samplers) with the same number of steps for each entry of
``steps``, and the estimator's endpoint step into t = 0 for empirical data. Recorded per step count:

* ``bridge_w2_data`` / ``plain_w2_data`` (and W_1): the generated particles against the data (weighted atoms
  by an exact plan, or a fresh data sample), beside ``bridge_w2_sampling``, the same for a fresh data sample
  of the particle count;
* ``bridge_memorisation`` / ``plain_memorisation``: the fraction of generated particles within
  ``memorisation_radius`` × (the median nearest-neighbour distance of the data points) of a data point,
  the radius itself in ``memorisation_distance``. A map onto training points can copy them: with the exact
  empirical velocity every sampler ends on the points, so this fraction speaks about a learned estimator.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from stochthermo import Coordinate, Observer, ScenarioError, Solver, Variable, hookimpl
from stochthermo.measures import law_reference, solve_semidiscrete, variance_preserving, w2_and_w1
from stochthermo.roles import Column, estimator_equation, recorded


class OtBridge(Observer):
    """The semi-discrete OT bridge from T′ against the plain reverse process from τ, at equal step counts."""

    name = "ot_bridge"

    def __init__(self, bridge_time: float, steps: list[int] | None = None, particles: int = 1024,
                 memorisation_radius: float = 0.1, solver: str = "auto", sampler: Solver | None = None):
        self.bridge_time = bridge_time
        self.steps = sorted(set(steps or [2, 4, 8, 16]))
        if self.steps[0] < 1:
            raise ScenarioError(f"every step count must be >= 1, got {self.steps[0]}", key="steps")
        if particles < 2:
            raise ScenarioError(f"must be >= 2, got {particles}", key="particles")
        if memorisation_radius <= 0:
            raise ScenarioError(f"must be > 0, got {memorisation_radius}", key="memorisation_radius")
        self.particles, self.memorisation_radius, self.solver = particles, memorisation_radius, solver
        self.prior = None
        #: the solver given in the scenario; the default ``auto`` is built in :meth:`prepare` by the engine
        self.sampler = sampler

    def prepare(self, setup):
        self.prior = setup.prior
        self.sampler = self.sampler or setup.solver("auto", key="sampler")
        if not 0 < self.bridge_time <= setup.tau:
            raise ScenarioError(f"must lie in (0, tau] = (0, {setup.tau:g}], got {self.bridge_time:g}",
                                key="bridge_time")
        cloud = setup.data.point_cloud()
        if cloud is None or cloud.std != 0 or cloud.kernel is not None:
            raise ScenarioError(f"needs data given as points without smoothing, got '{setup.data.name}'", key="data")
        for name, protocol in setup.protocols.items():
            if variance_preserving(protocol.process) is None:
                raise ScenarioError(f"protocol '{name}' is not variance preserving (v_t = c(1 - a_t^2), no rotation)",
                                    key="protocols")
            problem = self.sampler.check(estimator_equation(protocol.estimator))
            if problem:
                raise ScenarioError(f"protocol '{name}': {problem}", key="sampler")

    def coordinates(self):
        return {"bridge_steps": Coordinate(np.array(self.steps), "sampler steps")}

    @classmethod
    def summary_columns(cls, ds):
        return recorded(ds, [Column("W2 bridge", "bridge_w2_data", 160, position={"bridge_steps": 0}),
                             Column("W2 plain", "plain_w2_data", 161, position={"bridge_steps": 0}),
                             Column("memo bridge", "bridge_memorisation", 162, position={"bridge_steps": 0}),
                             Column("memo plain", "plain_memorisation", 163, position={"bridge_steps": 0})])

    def variables(self):
        def per_steps(long_name, symbol, description=""):
            return Variable(("bridge_steps",), long_name, "1", symbol, "arXiv:2410.13431", description=description)

        return {
            "bridge_w2_data": per_steps("W_2 of the OT-bridge sampler to the data", "W_2(q, bridge)",
                                        description="W_2 to the data of the OT-bridge sampler"),
            "plain_w2_data": per_steps("W_2 of the plain sampler to the data", "W_2(q, plain)",
                                       description="W_2 to the data of the plain sampler from the prior"),
            "bridge_w1_data": per_steps("W_1 of the OT-bridge sampler to the data", "W_1(q, bridge)",
                                        description="W_1 to the data of the OT-bridge sampler"),
            "plain_w1_data": per_steps("W_1 of the plain sampler to the data", "W_1(q, plain)",
                                       description="W_1 to the data of the plain sampler from the prior"),
            "bridge_memorisation": per_steps("memorised fraction of bridge samples", "memorised (bridge)",
                                             description="fraction of bridge samples within the memorisation distance "
                                                         "of a data point"),
            "plain_memorisation": per_steps("memorised fraction of plain samples", "memorised (plain)",
                                            description="fraction of plain samples within the memorisation distance "
                                                        "of a data point"),
            "bridge_w2_sampling": Variable((), "W_2 of a fresh data sample to the data", "1",
                                           "W_2(q, q_n)", "arXiv:2410.13431",
                                           description="W_2 to the data of a fresh data sample of the particle count"),
            "memorisation_distance": Variable((), "radius of the memorisation test", "1", "r", "arXiv:2410.13431"),
        }

    def observe(self, run, measured):
        dtype, device = run.times.dtype, run.times.device
        process, n = run.process, self.particles
        cloud = process.data.point_cloud()
        points, weights = cloud.points.to(device, dtype), cloud.probabilities().to(device, dtype)
        prior = self.prior.to(device, dtype)  # the generator's prior, whatever the true reverse start
        z = prior.sample(n, run.streams.generator(f"{self.name}.prior", device=device)).to(dtype)
        brenier = solve_semidiscrete(prior, points, weights, method=self.solver,
                                     seed=run.streams.seed_of(f"{self.name}.semidiscrete"))
        if not brenier.converged:
            raise ValueError(f"the semi-discrete map did not converge (largest |cell mass - weight| "
                             f"{brenier.mass_error:.2e}): raise its iterations or use the exact solver in 2-D")
        moments = process.moments(self.bridge_time)
        noise = torch.randn(z.shape, generator=run.streams.generator(f"{self.name}.bridge_noise",
                                                                     device=device),
                            dtype=dtype, device=device)
        bridge_start = float(moments.scale) * brenier.map(z.cpu()).to(z) + math.sqrt(float(moments.variance)) * noise
        equation = estimator_equation(run.estimator)
        uniform = torch.full((n,), 1.0 / n, dtype=dtype, device=device)
        data_stream = run.streams.generator(f"{self.name}.data", device=device)
        reference, reference_weights = law_reference(process.data, n, data_stream, dtype)
        radius = self.memorisation_radius * _median_neighbour_distance(points)
        out = {key: [] for key in self.variables() if key not in ("bridge_w2_sampling", "memorisation_distance")}
        for steps in self.steps:
            for label, start, begin in (("bridge", bridge_start, self.bridge_time), ("plain", z, process.tau)):
                times = torch.linspace(begin, 0.0, steps + 1, dtype=dtype, device=device)
                # the same noise for both samplers
                sampler_noise = run.streams.generator(f"{self.name}.sampler", steps, device=device)
                generated = self._generate(equation, start, times, sampler_noise)
                w2, w1 = w2_and_w1(generated, uniform, reference, reference_weights)
                out[f"{label}_w2_data"].append(w2)
                out[f"{label}_w1_data"].append(w1)
                nearest = torch.cdist(generated, points).min(1).values
                out[f"{label}_memorisation"].append(float((nearest <= radius).double().mean()))
        fresh = process.data.sample(n, data_stream).to(dtype)
        result = {key: np.array(values) for key, values in out.items()}
        result["bridge_w2_sampling"] = np.array(w2_and_w1(fresh, uniform, reference, reference_weights)[0])
        result["memorisation_distance"] = np.array(radius)
        return result


    def _generate(self, equation, start, times, generator):
        if not self.sampler.stochastic:
            return self.sampler.solve(equation, start, times)[0][-1]
        return self.sampler.solve(equation, start, times, generator=generator)[0][-1]


def _median_neighbour_distance(points: torch.Tensor) -> float:
    distances = torch.cdist(points, points)
    distances.fill_diagonal_(math.inf)
    return float(distances.min(1).values.median())


@hookimpl
def stochthermo_register_observers():
    return [OtBridge]
