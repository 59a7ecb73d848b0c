"""Helpers for an observer's figure functions: matplotlib's pyplot (imported on first use, on whatever backend
the session has: inline in Jupyter; the command line sets Agg) and a variable's axis label."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import xarray as xr


def pyplot():
    """matplotlib.pyplot (imported on first use). The backend is the session's: a notebook keeps its inline
    figures; the command line, which never opens a window, selects Agg (``MPLBACKEND``) before anything draws."""
    import matplotlib.pyplot

    return matplotlib.pyplot


#: Greek letters written out in the plain-text symbols
GREEK = ("alpha", "beta", "gamma", "delta", "epsilon", "eta", "theta", "lambda", "mu", "nu", "pi", "rho", "sigma",
         "tau", "phi", "chi", "psi", "omega", "Delta", "Gamma", "Lambda", "Phi", "Sigma", "Omega")


def latex_symbol(symbol: str) -> str:
    """A plain-text symbol (``eta``, ``v_loss(t)^2``, ``W_2(P_0,P_tau)^2/tau``) in mathtext: Greek names as
    letters, ``int`` as ∫, multi-letter sub- and superscripts braced (``v_{loss}(t)^{2}``)."""
    text = re.sub(r"(?<![A-Za-z])(" + "|".join(GREEK) + r")(?![A-Za-z])", r"\\\1", symbol)
    text = re.sub(r"\bint\b", r"\\int", text)
    text = re.sub(r"([_^])([A-Za-z0-9]+)", r"\1{\2}", text)
    return text.replace("<=", r"\leq ").replace(">=", r"\geq ")


def label(var: xr.DataArray) -> str:
    """``$symbol$ [units]`` of a variable from its attributes (its ``symbol_latex`` as mathtext where it has one;
    the ``display_units`` a reader is shown where the CF ``units`` are 1, e.g. entropy in ``k_B``)."""
    latex = var.attrs.get("symbol_latex")
    symbol = f"${latex}$" if latex else var.attrs.get("symbol", var.name)
    units = var.attrs.get("display_units") or var.attrs.get("units", "1")
    return f"{symbol}" + ("" if units == "1" else f" [{_mathtext_units(units)}]")


def _mathtext_units(units: str) -> str:
    """``k_B`` as :math:`k_B` (mathtext), other units as written."""
    return re.sub(r"\bk_B\b", lambda _: r"$k_\mathrm{B}$", units)
