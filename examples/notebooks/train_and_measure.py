# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Train a small network in plain torch, then measure it
#
# Two models of the same 2-D data — the two moons — trained in a few seconds on a CPU with nothing but torch:
# a flow-matching velocity on the conditional-OT path, and an EDM denoiser with Karras et al.'s
# preconditioning. Each is then handed to stochthermo *as an object* and measured against the exact velocity
# of the same data law: the speed-accuracy relations, and the estimation residual L of Eq. (100) — how far
# the trained velocity is from the true one, in the units of the kinetic cost.
# (A jupytext percent script: open it in Jupyter, or run `python examples/notebooks/train_and_measure.py`.)

# %%
import math

import torch
from sklearn.datasets import make_moons

import stochthermo

torch.manual_seed(0)
points = torch.tensor(make_moons(512, noise=0.0, random_state=0)[0], dtype=torch.float32)
points = (points - points.mean(0)) / points.std(0).mean()  # centred, of unit spread
SMOOTHING = 0.1  # the data law: each point smoothed by N(0, 0.1² I)


def sample_data(n: int) -> torch.Tensor:
    return points[torch.randint(len(points), (n,))] + SMOOTHING * torch.randn(n, 2)


def mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(3, 128), torch.nn.SiLU(), torch.nn.Linear(128, 128), torch.nn.SiLU(),
                               torch.nn.Linear(128, 2))


# %% [markdown]
# ## A flow-matching velocity
# The conditional-OT path x_s = (1 − s) y + s z, z ~ N(0, I), s = t/τ ∈ [0, 1], regressed on z − y.

# %%
class Velocity(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = mlp()

    def forward(self, s, x):  # s: (n,), x: (n, 2)
        return self.net(torch.cat([s[:, None], x], 1))


velocity = Velocity()
optimizer = torch.optim.Adam(velocity.parameters(), lr=2e-3)
for _ in range(1500):
    y, z, s = sample_data(256), torch.randn(256, 2), torch.rand(256)
    x = (1 - s[:, None]) * y + s[:, None] * z
    loss = ((velocity(s, x) - (z - y)) ** 2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"flow matching: final loss {loss.item():.3f}")

# %% [markdown]
# Measured in three lines: the data law, the protocol, and the network as the estimator (its time convention
# `unit` is s = t/τ). The `estimation` observer integrates |ν − ν̂|² over the true reverse particles.

# %%
common = {"name": "moons", "seeds": [0], "time_steps": 16, "particles": 256,
          "data": {"name": "weighted_points", "points": points, "smoothing": SMOOTHING},
          "perturbations": {"narrow": {"name": "gaussian", "mean": [0.0, 0.0], "std": 0.9}},
          "observers": ["thermodynamics", "response", "bounds", "estimation"]}
ds = stochthermo.run({**common, "prior": {"name": "gaussian", "mean": [0.0, 0.0], "std": 1.0},
                      "protocols": {"cond_ot": {"process": {"name": "scheduled", "schedule": "cond_ot"}}},
                      "estimator": {"name": "torch_module", "model": velocity, "output": "velocity", "time": "unit"}},
                     write=False)
table = ds.stochthermo.summary()
print(table.T)
flow_residual, flow_cost = float(ds.estimation_residual.max()), float(ds.kinetic_cost.max())
print(f"estimation residual L = {flow_residual:.4f} against the kinetic cost c_2 = {flow_cost:.3f}")

# %% [markdown]
# ## An EDM denoiser
# D(x; σ) = c_skip x + c_out F(c_in x, c_noise) with σ ~ exp(N(−1.2, 1.2²)) and EDM's loss weight; measured on
# the `edm` process (σ = σ_max (t/τ)^ρ, on which EDM's sampler grid lies) as `output: denoiser`, `time: sigma`.

# %%
SIGMA_DATA = float(points.std()) + SMOOTHING


class Denoiser(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = mlp()

    def forward(self, sigma, x):
        sigma = sigma[:, None]
        scale = sigma**2 + SIGMA_DATA**2
        c_skip, c_out, c_in = SIGMA_DATA**2 / scale, sigma * SIGMA_DATA / scale.sqrt(), 1 / scale.sqrt()
        return c_skip * x + c_out * self.net(torch.cat([0.25 * torch.log(sigma), c_in * x], 1))


denoiser = Denoiser()
optimizer = torch.optim.Adam(denoiser.parameters(), lr=2e-3)
for _ in range(1500):
    y = sample_data(256)
    sigma = torch.exp(-1.2 + 1.2 * torch.randn(256))
    x = y + sigma[:, None] * torch.randn(256, 2)
    weight = (sigma**2 + SIGMA_DATA**2) / (sigma * SIGMA_DATA) ** 2
    loss = (weight[:, None] * (denoiser(sigma, x) - y) ** 2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"EDM: final loss {loss.item():.3f}")

# %%
edm = stochthermo.run({**common, "prior": {"name": "gaussian", "mean": [0.0, 0.0], "std": 10.0},
                       "protocols": {"edm": {"process": {"name": "scheduled",
                                                         "schedule": {"name": "edm", "sigma_max": 10.0}}}},
                       "perturbations": {"narrow": {"name": "gaussian", "mean": [0.0, 0.0], "std": 9.0}},
                       "estimator": {"name": "torch_module", "model": denoiser, "output": "denoiser",
                                     "time": "sigma"}},
                      write=False)
print(edm.stochthermo.summary().T)
edm_residual, edm_cost = float(edm.estimation_residual.max()), float(edm.kinetic_cost.max())
print(f"estimation residual L = {edm_residual:.4f} against the kinetic cost c_2 = {edm_cost:.1f}")

# %% [markdown]
# The figures, as matplotlib Figures (inline in Jupyter):

# %%
figures = ds.stochthermo.figures()
print(sorted(figures))
print(ds.attrs["scenario_objects"])  # the keys that held Python objects: not re-creatable from the text alone

# %% [markdown]
# Both networks learned their field: the residual L is a small fraction of the kinetic cost, and the relations
# that hold for any estimator (η ≤ c_1, Cauchy–Schwarz) hold.

# %%
assert flow_residual < 0.2 * flow_cost and edm_residual < 0.2 * edm_cost
assert math.isfinite(flow_residual) and math.isfinite(edm_residual)
