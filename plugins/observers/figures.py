"""Figures of the built-in observers, in the paper's layouts (Fig. 6 / Fig. 7), made from any run's Dataset.

* ``densities`` (``snapshots``): forward and perturbed-reverse densities at the snapshot times (1-D curves;
  2-D heat maps);
* ``costs`` (``response``): bars of η, c_1 and c_2 (or w_D for non-conservative runs) per protocol and
  perturbation, on a log scale when the values spread over more than a decade;
* ``speeds`` (``response``): v_loss(t)² against v_2(t)² and T_tṠ_t over t/τ, one panel per protocol;
* ``images`` (``image_snapshots``): image grids of the true and perturbed reverse processes at the snapshot
  times;
* ``cost_ratio`` (``monte_carlo_cost``): the Monte Carlo c_2 over its schedule bound against N_D/sqrt(n_d),
  one line per n_d and protocol, with the Monte Carlo error bars (docs/theory.md §2, (93)-(95); a sweep over
  data sizes).

Labels and units come from the variables' attributes. matplotlib is imported on first use (Agg backend),
so loading the plugins stays cheap.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from stochthermo.present import label as _label
from stochthermo.present import pyplot as plt

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.figure import Figure



def densities_figure(ds: xr.Dataset) -> Figure:
    """The forward marginals P_t (black: in closed form where the process has it, else from the particles) and
    the densities P̃_t of the reverse processes started from each perturbation, at the same forward times t
    (columns; the reverse processes reach them at reverse time τ − t), one row per protocol; seed means."""
    forward, reverse = ds.forward_density.mean("seed"), ds.reverse_density.mean("seed")
    exact = ds.forward_density_exact.mean("seed") if "forward_density_exact" in ds else None
    if exact is not None and not np.isfinite(exact.values).any():
        exact = None
    tau = float(ds.time[-1] - ds.time[0])
    times = ds.snapshot_time.values
    columns = [f"t/τ = {t / tau:.2f}" + (" (data)" if t == times.min() else " (start)" if t == times.max() else "")
               for t in times]
    if "x" in forward.dims:
        return _densities_1d(ds, forward, reverse, exact, columns)
    return _densities_2d(ds, forward, reverse, exact, columns)


def _densities_1d(ds, forward, reverse, exact, columns) -> Figure:
    protocols, times = ds.protocol.values, ds.snapshot_time.values
    fig, axes = plt().subplots(len(protocols), len(times), figsize=(2.6 * len(times), 2.1 * len(protocols) + 0.6),
                               squeeze=False)
    x = ds.x.values
    for col, t in enumerate(times):
        curves = [forward.sel(snapshot_time=t).values, reverse.sel(snapshot_time=t).values]
        if exact is not None:
            curves.append(exact.sel(snapshot_time=t).values)
        # the x-range where some density of the column exceeds 0.1 % of its peak: no empty half-panels
        stacked = np.nan_to_num(np.concatenate([np.reshape(c, (-1, len(x))) for c in curves]))
        visible = np.flatnonzero((stacked > 1e-3 * stacked.max()).any(axis=0))
        low, high = x[visible[0]], x[visible[-1]]
        for row, protocol in enumerate(protocols):
            ax = axes[row, col]
            reference = None if exact is None else exact.sel(protocol=protocol, snapshot_time=t)
            if reference is not None and np.isfinite(reference.values).all():
                ax.plot(x, reference, color="black", lw=2.2, label="$P_t$ (closed form)")
            else:
                ax.plot(x, forward.sel(protocol=protocol, snapshot_time=t), color="black", lw=2.2,
                        label="$P_t$ (particles)")
            for perturbation in ds.perturbation.values:
                ax.plot(x, reverse.sel(protocol=protocol, perturbation=perturbation, snapshot_time=t), lw=1.2,
                        label=rf"$\tilde P_t$ from {perturbation}")
            ax.set_xlim(low, high)
            ax.set_ylim(bottom=0)
            if row == 0:
                ax.set_title(columns[col])
            if row == len(protocols) - 1:
                ax.set_xlabel("$x$")
            if col == 0:
                ax.set_ylabel(f"{protocol}\ndensity")
    _legend_below(fig, axes)
    return fig


def _densities_2d(ds, forward, reverse, exact, columns) -> Figure:
    panels = []
    for protocol in ds.protocol.values:
        reference = None if exact is None else exact.sel(protocol=protocol)
        if reference is not None and np.isfinite(reference.values).all():
            panels.append(("$P_t$ (closed form)", reference, protocol))
        else:
            panels.append(("$P_t$ (particles)", forward.sel(protocol=protocol), protocol))
        panels += [(rf"$\tilde P_t$ from {q}", reverse.sel(protocol=protocol, perturbation=q), protocol)
                   for q in ds.perturbation.values]
    times = ds.snapshot_time.values
    fig, axes = plt().subplots(len(panels), len(times), figsize=(2.4 * len(times) + 0.8, 2.2 * len(panels) + 0.6),
                               squeeze=False, sharex=True, sharey=True, layout="constrained")
    extent = [float(ds.x1[0]), float(ds.x1[-1]), float(ds.x2[0]), float(ds.x2[-1])]
    # the window where some panel's density exceeds 0.1 % of its peak: the grid covers every law to 4.5
    # standard deviations, most of it empty
    stacked = np.nan_to_num(np.stack([density.values for _, density, _ in panels]))
    stacked = stacked.reshape(-1, ds.sizes["x1"], ds.sizes["x2"])
    seen = (stacked > 1e-3 * stacked.max(axis=(1, 2), keepdims=True)).any(axis=0)
    rows, cols = np.flatnonzero(seen.any(axis=1)), np.flatnonzero(seen.any(axis=0))
    window = (ds.x1.values[rows[[0, -1]]], ds.x2.values[cols[[0, -1]]])
    for col, t in enumerate(times):
        # one colour scale per column (a time): the forward and reverse densities compare by eye
        top = max(float(np.nanmax(density.sel(snapshot_time=t).values)) for _, density, _ in panels)
        for row, (name, density, protocol) in enumerate(panels):
            ax = axes[row, col]
            image = ax.imshow(density.sel(snapshot_time=t).values.T, origin="lower", extent=extent, cmap="magma",
                              vmin=0, vmax=top, aspect="auto")
            ax.set_xlim(*window[0])
            ax.set_ylim(*window[1])
            if row == 0:
                ax.set_title(columns[col])
            if col == 0:
                ax.set_ylabel(f"{protocol}: {name}\n$x_2$")
            if row == len(panels) - 1:
                ax.set_xlabel("$x_1$")
        fig.colorbar(image, ax=axes[:, col], location="bottom", shrink=0.9, pad=0.01, aspect=12,
                     label="density")
    return fig


def _legend_entries(axes) -> tuple[list, list[str]]:
    """The legend handles and labels of all panels, each label once, from the first panel that draws it."""
    entries: dict[str, object] = {}
    for ax in np.ravel(axes):
        for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(text, handle)
    return list(entries.values()), list(entries)


def _legend_below(fig: Figure, axes) -> None:
    """One legend for all panels, below them (outside the data), and the panels laid out above it."""
    handles, labels = _legend_entries(axes)
    fig.tight_layout(rect=(0, 0.1 if len(labels) > 2 else 0.07, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), frameon=False)


def costs_figure(ds: xr.Dataset) -> Figure:
    """The response η against its bounds c_1 and w_D (or c_2 for conservative processes) per protocol and
    perturbation, Eq. (81): η ≤ c_1 ≤ w_D. Bars are seed means with ±1 standard error over seeds; black ticks
    mark the published values the scenario records; η's confidence interval, where it has one, is a whisker; a
    quantity of the forward process alone (c_2, w_D) has one bar per forward process where protocols share one."""
    conservative_only = "holds_kinetic_cost" in ds and (ds.holds_kinetic_cost.values != -1).all()
    names = ["response", "loss_cost", "kinetic_cost" if conservative_only else "dissipation"]
    reference = json.loads(ds.attrs.get("reference", "{}"))
    fig, axes = plt().subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    protocols, perturbations = [str(p) for p in ds.protocol.values], [str(p) for p in ds.perturbation.values]
    width = 0.8 / len(protocols)
    groups_of = [[p for p in group if p in protocols] for group in json.loads(ds.attrs.get("forward_processes", "[]"))]
    groups_of = [group for group in groups_of if group]  # the protocols of this Dataset (it may be a subset)
    shared = [group for group in groups_of if len(group) > 1]
    for ax, name in zip(axes[0], names, strict=True):
        mean = ds[name].mean("seed")
        error = ds[name].std("seed", ddof=1) / np.sqrt(ds.sizes["seed"]) if ds.sizes["seed"] > 1 else None
        if "measured_on" in ds[name].attrs and shared:
            _forward_bars(ax, mean, error, groups_of, reference.get(name, {}))
            ax.set_ylabel(_label(ds[name]))
            ax.set_title(ds[name].attrs.get("long_name", name), fontsize=9, wrap=True)
            continue
        groups = perturbations if "perturbation" in mean.dims else ["all starts"]
        for i, protocol in enumerate(protocols):
            where = np.arange(len(groups)) + (i - (len(protocols) - 1) / 2) * width
            values = np.atleast_1d(mean.sel(protocol=protocol).values)
            yerr = None if error is None else np.atleast_1d(error.sel(protocol=protocol).values)
            ax.bar(where, values, width, yerr=yerr, capsize=2, label=protocol)
            _interval(ax, ds, name, protocol, where, values, first=i == 0)
            published = reference.get(name, {}).get(protocol)
            if published is not None:
                marks = [published.get(g, np.nan) for g in groups] if isinstance(published, dict) else [published]
                ax.plot(where, marks, ls="none", marker="_", markersize=14, mew=2, color="black",
                        label="published" if i == 0 else None)
        finite = mean.values[np.isfinite(mean.values) & (mean.values > 0)]
        if finite.size and finite.max() / finite.min() > 20:
            ax.set_yscale("log")
        ax.set_xticks(range(len(groups)), groups, rotation=20)
        ax.set_ylabel(_label(ds[name]))
        ax.set_title(ds[name].attrs.get("long_name", name), fontsize=9, wrap=True)
    handles, labels = _legend_entries(axes)  # with the published marks of a later panel (c_2) if the first has none
    axes[0, -1].legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    fig.tight_layout()
    return fig


def _interval(ax, ds: xr.Dataset, name: str, protocol: str, where: np.ndarray, values: np.ndarray, *,
              first: bool) -> None:
    """The confidence interval of a quantity that has one (``<name>_lower``/``_upper``: η in d ≥ 2), seed means,
    as a black whisker over its bar, where both ends are finite."""
    if f"{name}_lower" not in ds or f"{name}_upper" not in ds:
        return
    low, high = (np.atleast_1d(ds[f"{name}_{end}"].sel(protocol=protocol).mean("seed").values)
                 for end in ("lower", "upper"))
    shown = np.isfinite(low) & np.isfinite(high) & (high > low)
    if shown.any():  # drawn from its own ends: the point value (a sliced or plug-in distance) may lie outside it
        confidence = ds[f"{name}_lower"].attrs.get("confidence", 0.95)
        middle, half = (low[shown] + high[shown]) / 2, (high[shown] - low[shown]) / 2
        ax.errorbar(where[shown], middle, yerr=half, fmt="none", ecolor="black", elinewidth=1.0, capsize=4,
                    label=f"{confidence:.0%} interval" if first else None)


def _forward_bars(ax, mean, error, groups: list[list[str]], published: dict) -> None:
    """One bar per forward process (the protocols that share it named under it) for a quantity of the forward
    process alone, which is the same for every protocol of one process."""
    for k, group in enumerate(groups):
        value = float(mean.sel(protocol=group[0]))
        yerr = None if error is None else float(error.sel(protocol=group[0]))
        ax.bar(k, value, 0.6, yerr=yerr, capsize=2, color="0.55")
        if isinstance(published.get(group[0]), int | float):
            ax.plot(k, published[group[0]], ls="none", marker="_", markersize=14, mew=2, color="black")
    ax.set_xticks(range(len(groups)), ["\n".join(group) for group in groups])
    ax.set_xlim(-1, len(groups))
    ax.set_xlabel("forward process of")


def speeds_figure(ds: xr.Dataset) -> Figure:
    """The speeds along the forward process per protocol: the loss speed v_loss², the Wasserstein speed v_2² and
    the dissipation rate T Ṡ, Eqs. (80) and (82): v_loss² ≤ v_2² ≤ T Ṡ."""
    tau = float(ds.time[-1] - ds.time[0])
    s = (ds.time - ds.time[0]).values / tau
    # one y-axis for all protocols, so that they compare by eye; a symmetric-log axis where a few values (a
    # spike at t = τ) stand more than 50 times above the typical one, which a linear axis would flatten to 0
    fig, axes = plt().subplots(1, len(ds.protocol), figsize=(4.2 * len(ds.protocol), 3.4), squeeze=False,
                               sharey=True)
    shown = np.concatenate([np.ravel(ds[name].mean("seed").values) for name in
                            ("wasserstein_speed_squared", "dissipation_rate", "loss_speed_squared")])
    shown = np.abs(shown[np.isfinite(shown) & (shown != 0)])
    if shown.size and shown.max() > 50 * np.median(shown):
        axes[0, 0].set_yscale("symlog", linthresh=float(np.median(shown)))
    axes[0, 0].set_ylabel(f"{_label(ds.loss_speed_squared)} ≤ {_label(ds.wasserstein_speed_squared)} ≤ "
                          f"{_label(ds.dissipation_rate)}")
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
    _legend_below(fig, axes)
    return fig


def _mosaic(images: np.ndarray, shape: tuple[int, ...], low: float, high: float) -> np.ndarray:
    """(rows, cols, n_d) flat images -> one (rows·(H+1), cols·(W+1), C) picture in [0, 1], 1-pixel gaps."""
    rows, cols = images.shape[:2]
    h, w, c = shape
    tiles = np.clip((images.reshape(rows, cols, h, w, c) - low) / (high - low), 0, 1)
    padded = np.ones((rows, cols, h + 1, w + 1, c))
    padded[:, :, :h, :w] = tiles
    return padded.transpose(0, 2, 1, 3, 4).reshape(rows * (h + 1), cols * (w + 1), c)


def images_figure(ds: xr.Dataset) -> Figure:
    """Per protocol: the true reverse process (left) and each perturbed one, rows = samples, columns = t/τ
    from data (t = 0) to noise, in pixel units (the data's normalisation undone); grey levels span the
    0.5-99.5 % range of the t = 0 images."""
    shape = tuple(int(v) for v in ds.forward_images.attrs["image_shape"])
    tau = float(ds.time[-1] - ds.time[0])
    seed = ds.seed.values[0]
    attrs = ds.forward_images.attrs
    offset, scale = np.asarray(attrs.get("pixel_offset", 0.0)), float(attrs.get("pixel_scale", 1.0))
    low, high = np.percentile(offset + scale * ds.forward_images.isel(image_time=0).values, [0.5, 99.5])
    columns = [("true", None)] + [(f"from {q}", q) for q in ds.perturbation.values]
    fig, axes = plt().subplots(len(ds.protocol), len(columns),
                             figsize=(3.0 * len(columns), 0.45 * len(ds.image) * len(ds.protocol) + 0.8), squeeze=False)
    for row, protocol in enumerate(ds.protocol.values):
        for col, (title, perturbation) in enumerate(columns):
            var = ds.forward_images if perturbation is None else ds.reverse_images.sel(perturbation=perturbation)
            images = var.sel(protocol=protocol, seed=seed).transpose("image", "image_time", "pixel").values
            picture = _mosaic(offset + scale * images, shape, low, high)
            ax = axes[row, col]
            ax.imshow(picture[..., 0] if shape[2] == 1 else picture, cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_title(f"{protocol}, {title}", fontsize=9)
            ax.set_xticks([(j + 0.5) * (shape[1] + 1) for j in range(len(ds.image_time))],
                          [f"{t / tau:.2g}" for t in ds.image_time.values], fontsize=7)
            ax.set_yticks([])
            ax.set_xlabel("t/τ", fontsize=8)
    fig.suptitle("Reverse processes as images (each row one particle, noise at t/τ = 1, data at 0)", fontsize=10)
    fig.tight_layout()
    return fig


def cost_ratio_figure(ds: xr.Dataset) -> Figure:
    """c_2^MC / B against N_D / sqrt(n_d) (log x), one line per protocol and n_d; error bars: ±2 se / B."""
    ratio = ds.kinetic_cost_ratio.mean("seed")
    error = (ds.kinetic_cost_standard_error / ds.schedule_cost_bound).mean("seed")
    abscissa = (ds.data_points / np.sqrt(ds.data_dimension)).mean("seed")
    dimension = ds.data_dimension.mean("seed")
    fig, axes = plt().subplots(1, len(ds.protocol), figsize=(5.0 * len(ds.protocol), 3.8), squeeze=False, sharey=True)
    sweep = [d for d in ratio.dims if d != "protocol"]
    for ax, protocol in zip(axes[0], ds.protocol.values, strict=True):
        r, e, x, n = (v.sel(protocol=protocol) for v in (ratio, error, abscissa, dimension))
        if not np.isfinite(r.values).any():
            ax.set_title(f"{protocol}: no schedule bound")
            continue
        for value in np.unique(n.values):
            mask = (n == value).values
            order = np.argsort(x.values[mask])
            ax.errorbar(x.values[mask][order], r.values[mask][order], yerr=2 * e.values[mask][order], marker="o",
                        ms=3, capsize=2, label=f"n_d = {int(value)}")
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("N_D / sqrt(n_d)")
        ax.set_title(str(protocol))
    axes[0, 0].set_ylabel("c_2 / ∫(ṁ² E|y|² + σ̇² n_d) dt")
    axes[0, -1].legend(fontsize=7)
    fig.suptitle(f"Approach of c_2 to the high-dimensional limit (93)-(95); swept: {', '.join(sweep) or '-'}",
                 fontsize=10)
    fig.tight_layout()
    return fig


def entropy_production_figure(ds: xr.Dataset) -> Figure:
    """The distribution of the stochastic entropy production Δs_tot along forward paths (log scale: the left
    tail Δs_tot < 0 is what the integral fluctuation theorem E[e^{−Δs_tot}] = 1 weighs), one panel per forward
    process (protocols that share one share their paths); the path mean ± 1 standard error (band) against the
    Fokker–Planck ∫Ṡ dt (dashed), pooled over seeds."""
    edges = ds.entropy_production_bin_bounds.values if "entropy_production_bin_bounds" in ds else None
    centres = ds.entropy_production_bin.values
    if edges is None:  # a file written before the bins had bounds
        step = centres[1] - centres[0] if len(centres) > 1 else 1.0
        edges = np.stack([centres - step / 2, centres + step / 2], axis=1)
    groups = json.loads(ds.attrs.get("forward_processes", "[]")) or [[str(p)] for p in ds.protocol.values]
    groups = [[p for p in group if p in ds.protocol.values] for group in groups]
    groups = [group for group in groups if group]
    fig, axes = plt().subplots(1, len(groups), figsize=(4.6 * len(groups), 3.6), squeeze=False, sharey=True)
    seeds = ds.sizes["seed"]
    for ax, group in zip(axes[0], groups, strict=True):
        sel = ds.sel(protocol=group[0])
        density = sel.trajectory_entropy_production_histogram.mean("seed").values
        ax.stairs(np.where(density > 0, density, np.nan), np.append(edges[:, 0], edges[-1, 1]), color="0.35",
                  fill=True, alpha=0.5, label="paths")
        mean = float(sel.trajectory_entropy_production_mean.mean("seed"))
        error = float(np.sqrt((sel.trajectory_entropy_production_mean_stderr ** 2).sum("seed"))) / seeds
        fokker_planck = float(sel.entropy_production_fokker_planck.mean("seed"))
        ift = float(sel.fluctuation_theorem_average.mean("seed"))
        ift_error = float(np.sqrt((sel.fluctuation_theorem_average_stderr ** 2).sum("seed"))) / seeds
        ax.axvspan(mean - error, mean + error, color="black", alpha=0.25, lw=0)
        ax.axvline(mean, color="black", lw=1.2, label=f"path mean {mean:.4f} ± {error:.4f}")
        ax.axvline(fokker_planck, color="tab:red", ls="--", lw=1.2, label=f"Fokker–Planck {fokker_planck:.4f}")
        ax.axvline(0, color="0.6", lw=0.6)
        ax.set_yscale("log")
        ax.set_xlabel(r"$\Delta s_\mathrm{tot}$ [$k_\mathrm{B}$]")
        ax.set_title(f"forward process of {', '.join(group)}\n"
                     rf"$\langle e^{{-\Delta s}}\rangle$ = {ift:.3f} ± {ift_error:.3f} (theorem: 1)")
        ax.legend(loc="upper left", bbox_to_anchor=(0, -0.2), frameon=False)
    axes[0, 0].set_ylabel(_label(ds.trajectory_entropy_production_histogram))
    fig.tight_layout()
    return fig


def basins_figure(ds: xr.Dataset) -> Figure:
    """The Laguerre cells of the semi-discrete Brenier map beside the basins of Φ_T (the data point each prior
    location z flows to) for up to four horizons including T = ∞, coloured by the data point's index (the key
    below); the data points themselves are marked in their colour at the grid cell they lie in. First protocol
    and seed (the flow in the signal level is the same for every VP protocol)."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    first = {"protocol": ds.protocol.values[0], "seed": ds.seed.values[0]}
    basins, cells = ds.flow_basins.sel(first), ds.brenier_cells.sel(first)
    horizons = ds.horizon.values
    picks = np.unique(np.linspace(0, len(horizons) - 1, min(4, len(horizons))).round().astype(int))
    shown = [horizons[i] for i in picks]
    extent = [float(ds.basin_x[0]), float(ds.basin_x[-1]), float(ds.basin_y[0]), float(ds.basin_y[-1])]
    marks = ds.basin_data_points.sel(first).values if "basin_data_points" in ds else np.zeros(1)
    count = int(max(np.nanmax(basins.values), np.nanmax(cells.values), np.nanmax(marks))) + 1
    palette = plt().get_cmap("tab20").colors
    colours = ListedColormap([palette[j % len(palette)] for j in range(count)])
    norm = BoundaryNorm(np.arange(count + 1) - 0.5, count)
    fig, axes = plt().subplots(1, len(shown) + 1, figsize=(2.9 * (len(shown) + 1), 3.9), squeeze=False,
                               sharex=True, sharey=True, layout="constrained")
    panels = [("Brenier map (Laguerre cells)", cells.values)]
    panels += [(f"flow basins, T = {h:g}" if np.isfinite(h) else "flow basins, T = ∞",
                basins.sel(horizon=h).values) for h in shown]
    points = None
    if "basin_data_points" in ds:
        marks = ds.basin_data_points.sel(first).values
        rows, cols = np.nonzero(marks >= 0)
        points = (ds.basin_x.values[cols], ds.basin_y.values[rows], marks[rows, cols])
    for ax, (title, image) in zip(axes[0], panels, strict=True):
        drawn = ax.imshow(image, origin="lower", extent=extent, cmap=colours, norm=norm, interpolation="nearest")
        if points is not None:
            x, y, index = points
            ax.scatter(x, y, s=28, c=index, cmap=colours, norm=norm, edgecolors="black", linewidths=0.8)
        ax.set_title(title)
        ax.set_xlabel("$z_1$")
    axes[0, 0].set_ylabel("$z_2$ (prior point)")
    key = fig.colorbar(drawn, ax=axes[0, :], location="bottom", shrink=0.6, aspect=40,
                       label="index j of the data point the prior point is sent to")
    key.set_ticks(np.arange(count) if count <= 12 else np.linspace(0, count - 1, 7).round())
    mismatch = ds.basin_mismatch_brenier.sel(first).sel(horizon=horizons[-1])
    error = ds.basin_mismatch_brenier_error.sel(first).sel(horizon=horizons[-1])
    fig.suptitle(f"Prior mass where Φ_∞ and the Brenier map differ: {float(mismatch):.4f} ± {float(error):.4f}")
    return fig
