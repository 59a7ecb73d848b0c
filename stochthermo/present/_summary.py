"""The table `stochthermo run` prints: the numbers and relation statuses the observers contribute
(:meth:`stochthermo.Observer.summary_columns`, :meth:`~stochthermo.Observer.relation_columns`), beside
published values."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

import numpy as np
import xarray as xr

from stochthermo.engine._registry import Registry, default_registry
from stochthermo.errors import ScenarioError, did_you_mean
from stochthermo.present._columns import relation_columns, summary_columns
from stochthermo.roles._declarations import Column, RelationColumn
from stochthermo.roles._relations import HOLDS, NOT_APPLICABLE, UNRESOLVED, VIOLATED

STATUS_TEXT = {HOLDS: "ok", VIOLATED: "FAIL", NOT_APPLICABLE: "n/a", UNRESOLVED: "unres"}
#: how many standard errors of the seed mean separate a resolved relation from 0
RESOLUTION_STANDARD_ERRORS = 2.0


def _selected(ds: xr.Dataset, name: str, where: dict) -> xr.DataArray:
    var = ds[name]
    return var.sel(**{k: v for k, v in where.items() if k in var.dims})


def _status(ds: xr.Dataset, column: RelationColumn, where: dict) -> str:
    """The row's status of a relation (:class:`~stochthermo.RelationColumn`)."""
    values = np.atleast_1d(_selected(ds, column.variable, where).values)
    if not (values == VIOLATED).any():
        if (values == UNRESOLVED).any():
            return STATUS_TEXT[UNRESOLVED]
        return STATUS_TEXT[HOLDS] if (values == HOLDS).any() else STATUS_TEXT[NOT_APPLICABLE]
    if column.slack is None or column.slack not in ds or ds.sizes.get("seed", 1) < 2:
        return STATUS_TEXT[VIOLATED]
    slack = _selected(ds, column.slack, where)
    if "time" in slack.dims:
        slack = slack.min("time")
    per_seed = slack.values.reshape(-1)
    mean, error = per_seed.mean(), per_seed.std(ddof=1) / np.sqrt(len(per_seed))
    if mean + RESOLUTION_STANDARD_ERRORS * error < 0:
        return STATUS_TEXT[VIOLATED]
    return STATUS_TEXT[HOLDS] if mean - RESOLUTION_STANDARD_ERRORS * error > 0 else STATUS_TEXT[UNRESOLVED]


def _value(ds: xr.Dataset, name: str, **where) -> float:
    return float(_selected(ds, name, where).mean("seed"))


def _column_value(ds: xr.Dataset, column: Column, where: dict) -> float:
    if column.position:
        ds = ds.isel(column.position)
    if column.statistic == "stderr":
        values = _selected(ds, column.variable, where).values
        return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
    value = _value(ds, column.variable, **where)
    return value / _value(ds, column.per, **where) if column.per else value


def _sweep_dims(ds: xr.Dataset) -> list[str]:
    return [key.replace(".", "_") for key in json.loads(ds.attrs.get("sweep", "{}"))]


def summary_table(ds: xr.Dataset, registry: Registry | None = None, *,
                  formatted: bool = True) -> tuple[list[str], list[list]]:
    """Header and rows: per sweep value, protocol and perturbation, the seed means of the numbers the
    registered observers show for ``ds`` (D_0, η, c_1, c_2, w_D, ... for the built-ins) and the status of each
    relation (FAIL if it fails for any seed). The numbers as text of 5 significant digits, or as floats where
    not ``formatted``."""
    registry = registry or default_registry()
    columns, relations = summary_columns(ds, registry), relation_columns(ds, registry)
    sweep = _sweep_dims(ds)
    header = [*sweep, "protocol", "perturbation", *(c.header for c in columns), *(r.header for r in relations)]
    rows = []
    for labels in itertools.product(*(ds[d].values for d in sweep)):
        for protocol in ds.protocol.values:
            for perturbation in ds.perturbation.values:
                where = {**dict(zip(sweep, labels, strict=True)), "protocol": protocol, "perturbation": perturbation}
                rows.append([*(str(v) for v in labels), str(protocol), str(perturbation),
                             *(_cell(ds, c, where, formatted) for c in columns),
                             *(_status(ds, r, where) for r in relations)])
    return header, rows


def _cell(ds: xr.Dataset, column: Column, where: dict, formatted: bool) -> str | float:
    """A column's entry; a standard error over seeds that all gave the same number (a deterministic protocol)
    reads ``exact`` in the formatted table, not 0."""
    value = _column_value(ds, column, where)
    if formatted and column.statistic == "stderr" and value == 0:
        values = _selected(ds.isel(column.position) if column.position else ds, column.variable, where).values
        if np.all(values == np.ravel(values)[0]):
            return "exact"
    return _shown(value, formatted)


def _shown(value: float, formatted: bool) -> str | float:
    return f"{value:.5g}" if formatted else value


def relation_counts(ds: xr.Dataset, registry: Registry | None = None) -> dict[str, int]:
    """How many relation rows of the summary table hold, are violated, are unresolved (their seed-to-seed
    error bar straddles the bound) or do not apply."""
    _, rows = summary_table(ds, registry)
    count = len(relation_columns(ds, registry or default_registry()))
    statuses = [status for row in rows for status in row[len(row) - count:]] if count else []
    named = ((STATUS_TEXT[HOLDS], "hold"), (STATUS_TEXT[VIOLATED], "violated"),
             (STATUS_TEXT[UNRESOLVED], "unresolved"), (STATUS_TEXT[NOT_APPLICABLE], "not applicable"))
    return {text: statuses.count(code) for code, text in named}


def independent_relations(ds: xr.Dataset, registry: Registry | None = None) -> tuple[int, int, list[str]]:
    """(independent, applicable, reasons): of the relation cells that apply, how many are independent checks. A
    cell is not when its relation holds by construction of the numerics (``RelationColumn.by_construction``), or
    when its slack equals, bit for bit in that row, the slack of a column before it (the same two arrays compared:
    (82) repeats (80) and (83) repeats c_1 ≤ w_D wherever the velocity is a gradient field), or when its relation
    does not depend on the perturbation and an earlier row of the same protocol showed it ((92))."""
    columns = relation_columns(ds, registry or default_registry())
    sweep = _sweep_dims(ds)
    independent = applicable = 0
    reasons: dict[str, None] = {}
    shown: set[tuple] = set()  # (sweep labels, protocol, header) of relations without a perturbation dim
    for labels in itertools.product(*(ds[d].values for d in sweep)):
        for protocol in ds.protocol.values:
            for perturbation in ds.perturbation.values:
                where = {**dict(zip(sweep, labels, strict=True)), "protocol": protocol, "perturbation": perturbation}
                seen = []
                for column in columns:
                    if _status(ds, column, where) == STATUS_TEXT[NOT_APPLICABLE]:
                        continue
                    applicable += 1
                    slack = (_selected(ds, column.slack, where).values if column.slack and column.slack in ds
                             else None)
                    # the same comparison: slacks over the same dims, equal bit for bit (two slacks that are both
                    # exactly 0, e.g. equalities of OT, are a coincidence of values, not one comparison)
                    repeats = next((c for c, s in seen if slack is not None and np.any(slack != 0)
                                    and ds[c.slack].dims == ds[column.slack].dims
                                    and np.array_equal(s, slack, equal_nan=True)), None)
                    per_protocol = (slack is None or "perturbation" not in ds[column.slack].dims) and (
                        "perturbation" not in ds[column.variable].dims)
                    cell = (tuple(labels), protocol, column.header)
                    if column.by_construction:
                        reasons[f"{column.header} {column.by_construction}"] = None
                    elif per_protocol and cell in shown:
                        reasons[f"{column.header} is one per protocol, shown in each perturbation's row"] = None
                    elif repeats is not None:
                        reasons[f"{column.header} repeats {repeats.header}"] = None
                    else:
                        independent += 1
                    if slack is not None:
                        seen.append((column, slack))
                    if per_protocol:
                        shown.add(cell)
    return independent, applicable, list(reasons)


def format_summary(ds: xr.Dataset, registry: Registry | None = None, columns: list[str] | None = None) -> str:
    """The table of :func:`summary_table`, the relation counts and the published values beside; with
    ``columns`` (headers of the table, e.g. ``["eta", "c_1", "(81)eta<=c1"]``) only those after the row labels,
    an unknown header refused with a suggestion."""
    header, rows = summary_table(ds, registry)
    if columns:
        labels = len(_sweep_dims(ds)) + 2  # sweep values, protocol, perturbation
        for name in columns:
            if name not in header[labels:]:
                raise ScenarioError(f"no column '{name}' in this run's table{did_you_mean(name, header[labels:])}",
                                    key="columns")
        keep = [*range(labels), *(header.index(name) for name in columns)]
        header, rows = [header[i] for i in keep], [[row[i] for i in keep] for row in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    counts = relation_counts(ds, registry)
    lines.append("")
    lines.append("relations: " + ", ".join(f"{n} {text}" for text, n in counts.items())
                 + (" -- SEE FAIL ABOVE" if counts["violated"] else ""))
    independent, applicable, reasons = independent_relations(ds, registry)
    if applicable > independent:
        lines.append(f"independent checks: {independent} of the {applicable} cells that apply ("
                     + "; ".join(reasons) + ")")
    lines.extend(reference_lines(ds))
    return "\n".join(lines)


@dataclass(frozen=True)
class Comparison:
    """One engine value beside a published one: ``symbol`` at ``labels`` (protocol, perturbation)."""

    symbol: str
    labels: tuple[str, ...]
    ours: float
    published: float

    @property
    def percent(self) -> float:
        return 100 * (self.ours / self.published - 1)


@dataclass(frozen=True)
class Spread:
    """Whether every protocol's engine value for ``perturbation`` lies within the published values' spread."""

    perturbation: str
    low: float
    high: float
    published_low: float
    published_high: float

    @property
    def inside(self) -> bool:
        return self.published_low <= self.low and self.high <= self.published_high


def reference_comparisons(ds: xr.Dataset) -> tuple[str, list[Comparison], list[Spread]]:
    """The source of the scenario's ``reference``, each engine value beside its published one, and per
    perturbation the engine's range over protocols against the published spread."""
    reference = json.loads(ds.attrs.get("reference", "{}"))
    comparisons, spreads = [], []
    for name, values in reference.items():
        if name == "source":
            continue
        symbol = ds[name].attrs.get("symbol", name)
        for labels, published in _flatten(values):
            where = dict(zip([d for d in ds[name].dims if d in ("protocol", "perturbation")], labels, strict=True))
            comparisons.append(Comparison(symbol, labels, _value(ds, name, **where), published))
        if "perturbation" in ds[name].dims and "protocol" in ds[name].dims:
            spreads.extend(_spreads(ds, name, values))
    return reference.get("source", "reference"), comparisons, spreads


def reference_lines(ds: xr.Dataset) -> list[str]:
    """Engine values beside the published ones recorded in the scenario's ``reference``, as text."""
    source, comparisons, spreads = reference_comparisons(ds)
    if not comparisons:
        return []
    lines = ["", f"beside published values ({source}):"]
    lines += [f"  {c.symbol} [{', '.join(c.labels)}]: {c.ours:.5g} vs {c.published:.5g} ({c.percent:+.2f}%)"
              for c in comparisons]
    lines += [f"  {s.perturbation}: engine {s.low:.5g}..{s.high:.5g}, published spread over protocols "
              f"[{s.published_low:.5g}, {s.published_high:.5g}]: {'inside' if s.inside else 'OUTSIDE'}"
              for s in spreads]
    return lines


def _spreads(ds: xr.Dataset, name: str, values: dict) -> list[Spread]:
    spreads = []
    for perturbation in ds.perturbation.values:
        published = [v[str(perturbation)] for v in values.values() if str(perturbation) in v]
        if len(published) < 2:
            continue
        ours = [_value(ds, name, protocol=p, perturbation=perturbation) for p in ds.protocol.values]
        spreads.append(Spread(str(perturbation), min(ours), max(ours), min(published), max(published)))
    return spreads


def _flatten(values, labels=()):
    if isinstance(values, dict):
        for key, inner in values.items():
            yield from _flatten(inner, (*labels, str(key)))
    else:
        yield labels, float(values)
