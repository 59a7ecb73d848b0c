"""How observers contribute to what the user sees: summary columns, relation statuses and figures.

`stochthermo run` prints a table, `stochthermo plot` writes figures and `stochthermo report` embeds both.
None of them names an observer's variables: each registered observer class offers, for a given Dataset,
the :class:`~stochthermo.Column` s, :class:`~stochthermo.RelationColumn` s and figures that Dataset can show,
so a third-party observer's results appear without touching the core.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from typing import TYPE_CHECKING

from stochthermo.roles._declarations import Column, FigureFunction, RelationColumn

if TYPE_CHECKING:
    import xarray as xr


def observer_classes(registry) -> list[type]:
    """The registered observer classes, in registration order (built-ins first)."""
    return list(registry.classes["observer"].values())


def summary_columns(ds: xr.Dataset, registry) -> list[Column]:
    columns = [c for cls in observer_classes(registry) for c in cls.summary_columns(ds)]
    return sorted(columns, key=lambda c: c.order)


def relation_columns(ds: xr.Dataset, registry) -> list[RelationColumn]:
    columns = [c for cls in observer_classes(registry) for c in cls.relation_columns(ds)]
    return sorted(columns, key=lambda c: c.order)


def figures(ds: xr.Dataset, registry) -> dict[str, FigureFunction]:
    """Every figure the registered observers can draw from ``ds``, by kind."""
    out: dict[str, FigureFunction] = {}
    for cls in observer_classes(registry):
        out.update(cls.figures(ds))
    return out


def figure_plan(ds: xr.Dataset, registry) -> list[tuple[str, FigureFunction, xr.Dataset]]:
    """``(name, figure, data)`` for every figure of ``ds``. In a sweep, a figure an observer offers for one
    variant's slice is drawn once per sweep value on that slice (named ``<kind>_<dim>-<label>...``); one it
    offers only for the whole sweep (e.g. the cost ratio against the swept sizes) is drawn on the whole."""
    keys = list(json.loads(ds.attrs.get("sweep", "{}")))
    dims = [key.replace(".", "_") for key in keys]
    if not dims:
        return [(kind, draw, ds) for kind, draw in figures(ds, registry).items()]
    plan, per_value = [], set()
    for labels in itertools.product(*(ds[dim].values for dim in dims)):
        part = ds.sel(dict(zip(dims, labels, strict=True)))
        part.attrs = {key: value for key, value in ds.attrs.items() if key != "sweep"}
        suffix = "_".join(re.sub(r"[^A-Za-z0-9._-]+", "-", f"{dim}-{label}") for dim, label in zip(dims, labels,
                                                                                                   strict=True))
        caption = "swept: " + ", ".join(f"{key} = {label}" for key, label in zip(keys, labels, strict=True))
        for kind, draw in figures(part, registry).items():
            plan.append((f"{kind}_{suffix}", _captioned(draw, caption), part))
            per_value.add(kind)
    return plan + [(kind, draw, ds) for kind, draw in figures(ds, registry).items() if kind not in per_value]


def _captioned(draw: FigureFunction, caption: str) -> FigureFunction:
    """``draw`` with ``caption`` (the swept values) written in the figure's lower left corner."""

    @functools.wraps(draw)  # keeps the figure's docstring: the report's caption
    def captioned(ds):
        fig = draw(ds)
        fig.text(0.005, 0.005, caption, fontsize="small", va="bottom", ha="left")
        return fig

    return captioned
