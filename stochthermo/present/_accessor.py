"""``ds.stochthermo``: a run's Dataset analysed in a notebook, as the command line shows it.

Registered on import of :mod:`stochthermo.present` (which every run and :func:`stochthermo.open_run` import)::

    ds = stochthermo.open_run("results/gmm.nc")
    ds.stochthermo.summary()      # the table `stochthermo run` prints, as a pandas DataFrame
    ds.stochthermo.relations()    # the relation statuses alone
    figures = ds.stochthermo.figures()   # {name: matplotlib Figure}, no files written
    print(ds.stochthermo.scenario())     # the scenario text the run was made from
    again = ds.stochthermo.rerun(particles=8192)   # the same scenario, with overrides
"""

from __future__ import annotations

import json
from typing import Any

import xarray as xr


@xr.register_dataset_accessor("stochthermo")
class RunAccessor:
    """The analysis methods of a run's Dataset (module docstring)."""

    def __init__(self, dataset: xr.Dataset):
        self._dataset = dataset

    def summary(self, registry=None):
        """The summary table of ``stochthermo run`` as a DataFrame indexed by (sweep labels,) protocol and
        perturbation: the numbers as floats, the relations as ``ok``/``FAIL``/``unres``/``n/a``."""
        import pandas as pd

        from stochthermo.present._summary import summary_table

        header, rows = summary_table(self._dataset, registry, formatted=False)
        labels = header[:header.index("perturbation") + 1]
        return pd.DataFrame(rows, columns=header).set_index(labels)

    def relations(self, registry=None):
        """The relation statuses of :meth:`summary` alone."""
        from stochthermo.engine._registry import default_registry
        from stochthermo.present._columns import relation_columns

        headers = [column.header for column in relation_columns(self._dataset, registry or default_registry())]
        return self.summary(registry)[headers]

    def figures(self, registry=None) -> dict[str, Any]:
        """Every figure the registered observers draw from the run, ``{name: matplotlib Figure}`` (nothing is
        written; a notebook shows them inline)."""
        from stochthermo.engine._registry import default_registry
        from stochthermo.present._columns import figure_plan

        return {name: draw(data) for name, draw, data in figure_plan(self._dataset, registry or default_registry())}

    def scenario(self) -> str:
        """The scenario text the run was made from (its overrides in :meth:`overrides`)."""
        return self._dataset.attrs["scenario_text"]

    def overrides(self) -> list[str]:
        """The ``dotted.key=value`` overrides the run applied to :meth:`scenario`."""
        return json.loads(self._dataset.attrs.get("scenario_overrides", "[]"))

    def rerun(self, *overrides: str, **settings: Any) -> xr.Dataset:
        """:func:`stochthermo.rerun` of this run."""
        from stochthermo.engine._run import rerun

        return rerun(self._dataset, *overrides, **settings)
