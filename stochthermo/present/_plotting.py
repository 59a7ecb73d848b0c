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


def save_figures(ds: xr.Dataset, directory: str | Path, formats: tuple[str, ...] = ("png", "pdf"),
                 stem: str | None = None, registry: Registry | None = None) -> list[Path]:
    """Write every available figure as ``<stem>_<kind>.<format>`` into ``directory`` (``stem`` defaults to
    the scenario's name)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = stem or re.sub(r"[^A-Za-z0-9_.-]+", "_", ds.attrs.get("scenario_name", "run")).strip("_") or "run"
    written = []
    for kind, draw, data in figure_plan(ds, registry or default_registry()):
        fig = draw(data)
        for fmt in formats:
            path = directory / f"{stem}_{kind}.{fmt}"
            with atomic_path(path) as tmp:
                fig.savefig(tmp, dpi=120, format=fmt)
            written.append(path)
        pyplot().close(fig)
    return written
