"""Presentation helpers for an observer's summary columns and figures: the column declarations (also in
:mod:`stochthermo.roles`), matplotlib's pyplot on the Agg backend, and a variable's axis label. The engine's
own summary table, figure writer and HTML report live in this package's private modules; importing it
registers the ``ds.stochthermo`` accessor of a run's Dataset (``summary()``, ``relations()``, ``figures()``,
``scenario()``, ``rerun()``).
"""

from stochthermo.present import _accessor  # noqa: F401  (registers ds.stochthermo)
from stochthermo.present._pyplot import label, latex_symbol, pyplot
from stochthermo.roles._declarations import Column, FigureFunction, RelationColumn, recorded

__all__ = [
    "Column",
    "FigureFunction",
    "RelationColumn",
    "label",
    "latex_symbol",
    "pyplot",
    "recorded",
]
