"""Figures of a run: the machinery. Which figures exist is up to the observers
(:meth:`stochthermo.Observer.figures`); this module writes them.

Uses matplotlib's non-interactive Agg backend, imported on first use.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from stochthermo.engine._registry import Registry, default_registry
from stochthermo.output._files import atomic_path
from stochthermo.present._columns import figure_plan, figures
from stochthermo.present._pyplot import pyplot

if TYPE_CHECKING:
    import xarray as xr


def available_figures(ds: xr.Dataset, registry: Registry | None = None) -> list[str]:
    """The figure kinds the registered observers can draw from ``ds``."""
    return list(figures(ds, registry or default_registry()))


#: figure widths of journal layouts, in inches (one and two columns of a two-column journal page)
JOURNAL_WIDTHS = {"one-column": 3.4, "two-column": 7.0}
#: type sizes for a figure printed at a journal's width (rcParams, applied under a ``width`` preset)
JOURNAL_RC = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
              "xtick.labelsize": 7, "ytick.labelsize": 7, "figure.titlesize": 9, "lines.linewidth": 1.0}


def check_style(style: str | None) -> None:
    """A matplotlib style name or a ``.mplstyle`` file, or a one-line :class:`ScenarioError` naming it."""
    if style is None or Path(style).is_file() or style in pyplot().style.available:
        return
    from stochthermo.errors import ScenarioError, did_you_mean

    raise ScenarioError(f"'{style}' is neither a matplotlib style nor a style file"
                        f"{did_you_mean(style, pyplot().style.available)}", key="style")


def save_figures(ds: xr.Dataset, directory: str | Path, formats: tuple[str, ...] = ("png", "pdf"),
                 stem: str | None = None, registry: Registry | None = None, *, dpi: int = 300,
                 width: str | None = None, style: str | None = None) -> list[Path]:
    """Write every available figure as ``<stem>_<kind>.<format>`` into ``directory`` (``stem`` defaults to
    the scenario's name): raster formats at ``dpi``; with ``width`` (``one-column`` or ``two-column``) each
    figure is scaled to that journal width (aspect kept) with :data:`JOURNAL_RC`'s type sizes; ``style`` is a
    matplotlib style name or ``.mplstyle`` file applied around the drawing (the style hook)."""
    if width is not None and width not in JOURNAL_WIDTHS:
        from stochthermo.errors import ScenarioError

        raise ScenarioError(f"must be one of {', '.join(JOURNAL_WIDTHS)}, got '{width}'", key="width")
    check_style(style)
    plt = pyplot()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = stem or re.sub(r"[^A-Za-z0-9_.-]+", "_", ds.attrs.get("scenario_name", "run")).strip("_") or "run"
    written = []
    with plt.style.context([style] if style else []), plt.rc_context(JOURNAL_RC if width else {}):
        for kind, draw, data in figure_plan(ds, registry or default_registry()):
            fig = draw(data)
            if width is not None:
                old_width, old_height = fig.get_size_inches()
                fig.set_size_inches(JOURNAL_WIDTHS[width], old_height * JOURNAL_WIDTHS[width] / old_width)
            for fmt in formats:
                path = directory / f"{stem}_{kind}.{fmt}"
                with atomic_path(path) as tmp:
                    fig.savefig(tmp, dpi=dpi, format=fmt)
                written.append(path)
            plt.close(fig)
    return written
