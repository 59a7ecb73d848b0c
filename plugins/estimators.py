"""Built-in estimators."""

from __future__ import annotations

from stochthermo import Estimator, hookimpl


class Exact(Estimator):
    """The process's own exact velocity ν_t (and its exact flow where the process has one)."""

    name = "exact"
    exact = True

    def velocity(self, t, x):
        return self.process.velocity(t, x)

    def velocity_and_divergence(self, t, x, *, probes=16, generator=None):
        return self.process.velocity_and_divergence(t, x, probes=probes, generator=generator)

    def flow_map(self):
        return self.process.flow_map()

    def singular_endpoint(self):
        return self.process.singular_endpoint()


@hookimpl
def stochthermo_register_estimators():
    return [Exact]
