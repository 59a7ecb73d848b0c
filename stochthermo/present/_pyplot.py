"""Helpers for an observer's figure functions: matplotlib's pyplot (imported on first use, on whatever backend
the session has: inline in Jupyter; the command line sets Agg) and a variable's axis label."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import xarray as xr


def pyplot():
    """matplotlib.pyplot (imported on first use). The backend is the session's: a notebook keeps its inline
    figures; the command line, which never opens a window, selects Agg (``MPLBACKEND``) before anything draws."""
    import matplotlib.pyplot

    return matplotlib.pyplot


def label(var: xr.DataArray) -> str:
    """``symbol [units]`` of a variable from its attributes."""
    symbol = var.attrs.get("symbol", var.name)
    units = var.attrs.get("units", "1")
    return f"{symbol}" + ("" if units == "1" else f" [{units}]")
