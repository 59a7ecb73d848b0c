"""How observers contribute to what the user sees: summary columns, relation statuses and figures.

`stochthermo run` prints a table, `stochthermo plot` writes figures and `stochthermo report` embeds both.
None of them names an observer's variables: each registered observer class offers, for a given Dataset,
the :class:`Column` s, :class:`RelationColumn` s and figures that Dataset can show
(:meth:`stochthermo.Observer.summary_columns`, :meth:`~stochthermo.Observer.relation_columns`,
:meth:`~stochthermo.Observer.figures`), so a third-party observer's results appear without touching the
core. A Dataset read from disk is presented by the observer classes of the registry at hand.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import xarray as xr




@dataclass(frozen=True)
class Column:
    """A number in the summary table: the seed mean of ``variable`` at each row's protocol, perturbation and
    sweep labels, divided by the seed mean of ``per`` where given (e.g. η per data dimension). Columns of
    every observer are ordered by ``order`` (ties: registration order)."""

    header: str
    variable: str
    order: float
    per: str | None = None
    #: ``mean`` over seeds, or ``stderr``: the standard error of that mean (std over seeds / √seeds; NaN for
    #: one seed)
    statistic: str = "mean"
    #: positions along the variable's own dims to show, e.g. ``{"horizon": -1}`` (the last horizon)
    position: dict[str, int] | None = None


@dataclass(frozen=True)
class RelationColumn:
    """The status of a relation: ``variable`` holds 1 (holds), 0 (violated) or −1 (not applicable) per seed;
    ``slack`` (optional) names its slack, larger minus smaller side. A row shows ``ok`` when every seed
    holds; with several seeds and a slack, ``FAIL`` when the seed mean of the slack (its minimum over time,
    per seed) lies more than two standard errors below 0, ``ok`` when more than two above, and ``unres``
    (unresolved) when the error bar straddles 0; with one seed, or without a slack, ``FAIL`` if any seed
    violates it."""

    header: str
    variable: str
    order: float
    slack: str | None = None


#: a figure of a Dataset: ``figure(ds) -> matplotlib.figure.Figure``
FigureFunction = Callable[["xr.Dataset"], object]


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
    dims = [key.replace(".", "_") for key in json.loads(ds.attrs.get("sweep", "{}"))]
    if not dims:
        return [(kind, draw, ds) for kind, draw in figures(ds, registry).items()]
    plan, per_value = [], set()
    for labels in itertools.product(*(ds[dim].values for dim in dims)):
        part = ds.sel(dict(zip(dims, labels, strict=True)))
        part.attrs = {key: value for key, value in ds.attrs.items() if key != "sweep"}
        suffix = "_".join(re.sub(r"[^A-Za-z0-9._-]+", "-", f"{dim}-{label}") for dim, label in zip(dims, labels,
                                                                                                   strict=True))
        caption = ", ".join(f"{dim} = {label}" for dim, label in zip(dims, labels, strict=True))
        for kind, draw in figures(part, registry).items():
            plan.append((f"{kind}_{suffix}", _captioned(draw, caption), part))
            per_value.add(kind)
    return plan + [(kind, draw, ds) for kind, draw in figures(ds, registry).items() if kind not in per_value]


def _captioned(draw: FigureFunction, caption: str) -> FigureFunction:
    """``draw`` with ``caption`` (the swept values) written in the figure's lower left corner."""

    def captioned(ds):
        fig = draw(ds)
        fig.text(0.005, 0.005, caption, fontsize=7, va="bottom", ha="left")
        return fig

    return captioned


def recorded(ds: xr.Dataset, columns: list[Column] | list[RelationColumn]) -> list:
    """The columns whose variables ``ds`` holds (an observer's helper for :meth:`summary_columns`)."""
    return [c for c in columns if c.variable in ds and (getattr(c, "per", None) is None or c.per in ds)]
