"""What an observer declares for presentation: the numbers of the summary table (:class:`Column`), the
relation statuses (:class:`RelationColumn`) and the figure functions it offers
(:meth:`stochthermo.Observer.summary_columns`, :meth:`~stochthermo.Observer.relation_columns`,
:meth:`~stochthermo.Observer.figures`). How the engine lays them out is :mod:`stochthermo.present`'s
business; a Dataset read from disk is presented by the observer classes of the registry at hand.
"""

from __future__ import annotations

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
    #: why the relation holds by construction of the numerics, where it does (it then adds no independent
    #: check: the summary counts it apart)
    by_construction: str | None = None


#: a figure of a Dataset: ``figure(ds) -> matplotlib.figure.Figure``
FigureFunction = Callable[["xr.Dataset"], object]


def recorded(ds: xr.Dataset, columns: list[Column] | list[RelationColumn]) -> list:
    """The columns whose variables ``ds`` holds (an observer's helper for
    :meth:`~stochthermo.Observer.summary_columns`)."""
    return [c for c in columns if c.variable in ds and (getattr(c, "per", None) is None or c.per in ds)]
