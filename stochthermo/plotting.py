"""Figures in the paper's layouts (Fig. 6 / Fig. 7), made from any run's Dataset.

* ``densities``: forward and perturbed-reverse densities at the snapshot times (1-D curves; 2-D heat maps);
* ``costs``: bars of η, c_1 and c_2 (or w_D for non-conservative runs) per protocol and perturbation, on a log
  scale when the values spread over more than a decade;
* ``speeds``: v_loss(t)² against v_2(t)² and T_tṠ_t over t/τ, one panel per protocol.

Labels and units come from the variables' attributes. Uses the non-interactive Agg backend.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

FIGURE_KINDS = ("densities", "costs", "speeds")


def _label(var: xr.DataArray) -> str:
    symbol = var.attrs.get("symbol", var.name)
    units = var.attrs.get("units", "1")
    return f"{symbol}" + ("" if units == "1" else f" [{units}]")


def densities_figure(ds: xr.Dataset) -> plt.Figure:
    forward, reverse = ds.forward_density.mean("seed"), ds.reverse_density.mean("seed")
    tau = float(ds.time[-1] - ds.time[0])
    times = ds.snapshot_time.values
    if "x" in forward.dims:
        fig, axes = plt.subplots(len(ds.protocol), len(times), figsize=(3.2 * len(times), 2.6 * len(ds.protocol)),
                                 sharex=True, squeeze=False)
        for row, protocol in enumerate(ds.protocol.values):
            for col, t in enumerate(times):
                ax = axes[row, col]
                ax.plot(ds.x, forward.sel(protocol=protocol, snapshot_time=t), color="black", lw=2, label="forward")
                for perturbation in ds.perturbation.values:
                    ax.plot(ds.x, reverse.sel(protocol=protocol, perturbation=perturbation, snapshot_time=t),
                            lw=1.2, label=f"reverse from {perturbation}")
                ax.set_title(f"{protocol}: t/τ = {t / tau:.2f}", fontsize=9)
                if row == len(ds.protocol) - 1:
                    ax.set_xlabel("x")
        axes[0, 0].set_ylabel("density")
        axes[0, -1].legend(fontsize=7)
    else:
        panels = [("forward", forward.sel(protocol=p), p) for p in ds.protocol.values]
        panels += [(f"reverse from {q}", reverse.sel(protocol=p, perturbation=q), p)
                   for p in ds.protocol.values for q in ds.perturbation.values]
        fig, axes = plt.subplots(len(panels), len(times), figsize=(2.6 * len(times), 2.5 * len(panels)),
                                 squeeze=False)
        extent = [float(ds.x1[0]), float(ds.x1[-1]), float(ds.x2[0]), float(ds.x2[-1])]
        for row, (name, density, protocol) in enumerate(panels):
            for col, t in enumerate(times):
                ax = axes[row, col]
                ax.imshow(density.sel(snapshot_time=t).values.T, origin="lower", extent=extent, cmap="magma")
                ax.set_title(f"{protocol}, {name}\nt/τ = {t / tau:.2f}", fontsize=8)
                ax.set_xticks([])
                ax.set_yticks([])
    fig.suptitle("Forward process and perturbed reverse processes (reverse time τ − t)")
    fig.tight_layout()
    return fig


def costs_figure(ds: xr.Dataset) -> plt.Figure:
    conservative_only = "holds_kinetic_cost" in ds and (ds.holds_kinetic_cost.values != -1).all()
    names = ["response", "loss_cost", "kinetic_cost" if conservative_only else "dissipation"]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    protocols, perturbations = list(ds.protocol.values), list(ds.perturbation.values)
    width = 0.8 / len(protocols)
    for ax, name in zip(axes[0], names, strict=True):
        var = ds[name].mean("seed")
        if "perturbation" not in var.dims:
            var = var.expand_dims(perturbation=perturbations)
        for i, protocol in enumerate(protocols):
            values = var.sel(protocol=protocol).transpose("perturbation").values
            ax.bar(np.arange(len(perturbations)) + (i - (len(protocols) - 1) / 2) * width, values, width,
                   label=str(protocol))
        finite = var.values[np.isfinite(var.values) & (var.values > 0)]
        if finite.size and finite.max() / finite.min() > 20:
            ax.set_yscale("log")
        ax.set_xticks(range(len(perturbations)), perturbations, rotation=20, fontsize=8)
        ax.set_title(f"{var.attrs.get('long_name', name)}\n{_label(ds[name])}", fontsize=9)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def speeds_figure(ds: xr.Dataset) -> plt.Figure:
    tau = float(ds.time[-1] - ds.time[0])
    s = (ds.time - ds.time[0]).values / tau
    fig, axes = plt.subplots(1, len(ds.protocol), figsize=(4.2 * len(ds.protocol), 3.4), squeeze=False)
    for ax, protocol in zip(axes[0], ds.protocol.values, strict=True):
        sel = ds.sel(protocol=protocol).mean("seed")
        ax.plot(s, sel.wasserstein_speed_squared, color="black", lw=2, label=_label(ds.wasserstein_speed_squared))
        if not np.allclose(sel.dissipation_rate, sel.wasserstein_speed_squared):
            ax.plot(s, sel.dissipation_rate, color="black", ls="--", label=_label(ds.dissipation_rate))
        for perturbation in ds.perturbation.values:
            ax.plot(s, sel.loss_speed_squared.sel(perturbation=perturbation), lw=1.2,
                    label=f"{_label(ds.loss_speed_squared)}, {perturbation}")
        ax.set_title(str(protocol))
        ax.set_xlabel("t/τ")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


FIGURES = {"densities": densities_figure, "costs": costs_figure, "speeds": speeds_figure}
REQUIRES = {"densities": ("forward_density", "reverse_density"), "costs": ("response", "loss_cost"),
            "speeds": ("wasserstein_speed_squared", "loss_speed_squared")}


def available_figures(ds: xr.Dataset) -> list[str]:
    """The figure kinds whose variables the run recorded."""
    return [kind for kind in FIGURE_KINDS if all(v in ds for v in REQUIRES[kind])]


def save_figures(ds: xr.Dataset, directory: str | Path, formats: tuple[str, ...] = ("png", "pdf"),
                 stem: str | None = None) -> list[Path]:
    """Write every available figure as ``<stem>_<kind>.<format>`` into ``directory`` (``stem`` defaults to
    the scenario's name)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = stem or re.sub(r"[^A-Za-z0-9_.-]+", "_", ds.attrs.get("scenario_name", "run")).strip("_") or "run"
    written = []
    for kind in available_figures(ds):
        fig = FIGURES[kind](ds)
        for fmt in formats:
            path = directory / f"{stem}_{kind}.{fmt}"
            fig.savefig(path, dpi=120)
            written.append(path)
        plt.close(fig)
    return written
