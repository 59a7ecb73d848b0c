# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Measuring a model you trained yourself
#
# This notebook (a [jupytext](https://jupytext.readthedocs.io) percent script: open it in Jupyter with jupytext
# installed, or run it as `python examples/notebooks/bring_your_model.py`) hands stochthermo a network defined
# right here, in EDM's conventions (a denoiser D(x; σ) on a variance-exploding process), and measures it like
# any estimator: the speed-accuracy relations, and the estimation error of Eq. (100).
#
# The "network" is the exact denoiser of Gaussian data with two trainable parameters, so that the numbers
# can be checked: the residual L of Eq. (100) must vanish. Replace it by your own `nn.Module`.

# %%
import torch

import stochthermo

MEAN, STD = 0.4, 0.7  # the data N(MEAN, STD²)


class Denoiser(torch.nn.Module):
    """EDM's D(x; σ) ≈ E[y | y + σε = x], called with the noise level σ of shape (n,) and x of shape (n, 1)."""

    def __init__(self):
        super().__init__()
        self.mean = torch.nn.Parameter(torch.tensor(MEAN, dtype=torch.float64))
        self.std = torch.nn.Parameter(torch.tensor(STD, dtype=torch.float64))

    def forward(self, sigma, x):
        sigma = sigma[:, None]
        return self.mean + self.std**2 / (self.std**2 + sigma**2) * (x - self.mean)


net = Denoiser()

# %% [markdown]
# A scenario as a Python dict. `model: __main__:net` names the object above (in a notebook, `__main__` is the
# notebook's namespace); `output: denoiser` and `time: sigma` are EDM's conventions; the `ve` schedule is
# EDM's σ(t) = t ramp with σ_max = 10. The prior N(0, 10²) is what a VE sampler starts from.

# %%
scenario = {
    "name": "my_edm_model", "seeds": [0], "time_steps": 32, "particles": 1024,
    "data": {"name": "gaussian", "mean": MEAN, "std": STD},
    "prior": {"name": "gaussian", "mean": 0.0, "std": 10.0},
    "protocols": {"ve": {"process": {"name": "scheduled", "schedule": "ve"}}},
    "perturbations": {"narrow": {"name": "gaussian", "mean": 0.0, "std": 9.0}},
    "estimator": {"name": "torch_module", "model": "__main__:net", "output": "denoiser", "time": "sigma",
                  "dtype": "float64"},
    "observers": ["thermodynamics", "response", "bounds", "estimation"],
}
ds = stochthermo.run(scenario, write=False)

# %%
ds.stochthermo.summary().T  # noqa: B018  (a notebook cell shows its last value)

# %% [markdown]
# The model's weights are digested into the Dataset (and into every task key of a resumable run, so a retrained
# network is never mistaken for this one):

# %%
print(ds.attrs["inputs"])
residual = float(ds.estimation_residual.max())
print(f"estimation residual L = {residual:.2e} (the exact denoiser: rounding only)")
assert residual < 1e-8
