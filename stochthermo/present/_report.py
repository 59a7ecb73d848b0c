"""A self-contained HTML report of a run: the results table (headers with symbols and units, each relation's
status), published values beside as a table, the figures embedded as PNG data with captions, the scenario, and
the provenance (run date, host, wall time, versions) — valid HTML5, no external scripts or fonts."""

from __future__ import annotations

import base64
import html
import inspect
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

from stochthermo.engine._registry import Registry, default_registry
from stochthermo.output._files import atomic_path
from stochthermo.present._columns import figure_plan, relation_columns, summary_columns
from stochthermo.present._pyplot import pyplot
from stochthermo.present._summary import (
    STATUS_TEXT,
    independent_relations,
    reference_comparisons,
    relation_counts,
    summary_table,
)
from stochthermo.roles._relations import HOLDS, NOT_APPLICABLE, UNRESOLVED, VIOLATED

if TYPE_CHECKING:
    import xarray as xr

STYLE = """body{font-family:sans-serif;margin:2em auto;max-width:1400px;padding:0 1em;line-height:1.4}
table{border-collapse:collapse;font-size:90%;margin:0.5em 0 1em}caption{text-align:left;font-weight:bold;padding:4px 0}
td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}th.label,td.label{text-align:left}
th .unit{font-weight:normal;color:#555}.status-violated{background:#f99}.status-holds{background:#dfd}
.status-unresolved{background:#ffd}pre{background:#f6f6f6;padding:1em;overflow:auto}
figure{margin:1em 0}figcaption{font-size:90%;color:#333;max-width:60em}img{max-width:100%}
.wide{overflow-x:auto;max-width:100%}"""

#: the CSS class of each relation status shown in the summary table
STATUS_CLASSES = {STATUS_TEXT[HOLDS]: "status-holds", STATUS_TEXT[VIOLATED]: "status-violated",
                  STATUS_TEXT[UNRESOLVED]: "status-unresolved", STATUS_TEXT[NOT_APPLICABLE]: "status-not-applicable"}
#: the run record and the settings the provenance table shows first, in this order
PROVENANCE = (("date_created", "finished (UTC)"), ("run_host", "host"), ("run_wall_time_s", "wall time (s)"),
              ("stochthermo_version", "stochthermo"), ("device", "device"), ("dtype", "dtype"), ("seeds", "seeds"),
              ("tau", "tau"), ("time_steps", "time steps"), ("particles", "particles"),
              ("particle_sampling", "particle sampling"), ("scenario_path", "scenario file"),
              ("scenario_sha256", "scenario SHA-256"))


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    pyplot().close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _escape(value) -> str:
    return html.escape(str(value))


def _results_table(ds: xr.Dataset, registry: Registry) -> str:
    """The summary table, each numeric column headed by its header, symbol and units (from the variable's
    attributes), each relation cell classed by its status."""
    header, rows = summary_table(ds, registry)
    columns = summary_columns(ds, registry)
    labels = len(header) - len(columns) - len(relation_columns(ds, registry))
    heads = [f'<th class="label" scope="col">{_escape(h)}</th>' for h in header[:labels]]
    for column in columns:
        attrs = ds[column.variable].attrs
        units = attrs.get("units", "")
        unit = f'<br><span class="unit">{_escape(attrs.get("symbol", ""))}'
        unit += f" [{_escape(units)}]</span>" if units and units != "1" else "</span>"
        heads.append(f'<th scope="col" title="{_escape(attrs.get("long_name", ""))}">{_escape(column.header)}{unit}'
                     "</th>")
    heads += [f'<th scope="col">{_escape(h)}</th>' for h in header[labels + len(columns):]]
    body = []
    for row in rows:
        cells = [f'<td class="label">{_escape(c)}</td>' for c in row[:labels]]
        cells += [f"<td>{_escape(c)}</td>" for c in row[labels:labels + len(columns)]]
        cells += [f'<td class="{STATUS_CLASSES.get(c, "status")}">{_escape(c)}</td>'
                  for c in row[labels + len(columns):]]
        body.append("<tr>" + "".join(cells) + "</tr>")
    counts = relation_counts(ds, registry)
    caption = "Results (seed means). Relations: " + ", ".join(f"{n} {text}" for text, n in counts.items())
    # a wide table scrolls inside its own box instead of widening the page
    return (f"<div class=\"wide\"><table><caption>{_escape(caption)}</caption><thead><tr>{''.join(heads)}</tr>"
            f"</thead><tbody>{''.join(body)}</tbody></table></div>")


def _published_table(ds: xr.Dataset) -> str:
    source, comparisons, spreads = reference_comparisons(ds)
    if not comparisons:
        return ""
    rows = "".join(f'<tr><td class="label">{_escape(c.symbol)}</td><td class="label">{_escape(", ".join(c.labels))}'
                   f"</td><td>{c.ours:.5g}</td><td>{c.published:.5g}</td><td>{c.percent:+.2f} %</td></tr>"
                   for c in comparisons)
    table = (f"<table><caption>Beside published values ({_escape(source)})</caption><thead><tr>"
             '<th class="label" scope="col">quantity</th><th class="label" scope="col">protocol, perturbation</th>'
             '<th scope="col">engine</th><th scope="col">published</th><th scope="col">difference</th></tr>'
             f"</thead><tbody>{rows}</tbody></table>")
    if spreads:
        items = "".join(f"<li>{_escape(s.perturbation)}: engine {s.low:.5g} … {s.high:.5g}, published spread over "
                        f"protocols [{s.published_low:.5g}, {s.published_high:.5g}]: "
                        f"<strong>{'inside' if s.inside else 'outside'}</strong></li>" for s in spreads)
        table += f"<ul>{items}</ul>"
    return table


def _provenance_table(ds: xr.Dataset) -> str:
    rows = [(label, ds.attrs[key]) for key, label in PROVENANCE if key in ds.attrs]
    rows += sorted(json.loads(ds.attrs.get("dependency_versions", "{}")).items())
    body = "".join(f'<tr><th class="label" scope="row">{_escape(k)}</th><td class="label">{_escape(v)}</td></tr>'
                   for k, v in rows)
    return f"<table><caption>Provenance</caption><tbody>{body}</tbody></table>"


def _figures(ds: xr.Dataset, registry: Registry) -> str:
    """Each figure in a ``<figure>`` with its caption: the figure function's docstring (its first paragraph)."""
    out = []
    for kind, draw, data in figure_plan(ds, registry):
        doc = inspect.getdoc(draw) or ""
        caption = " ".join(doc.split("\n\n")[0].split()) or kind
        out.append(f'<figure><img alt="{_escape(kind)}" src="data:image/png;base64,{_png(draw(data))}">'
                   f"<figcaption><strong>{_escape(kind)}.</strong> {_escape(caption)}</figcaption></figure>")
    return "".join(out)


def render_report(ds: xr.Dataset, registry: Registry | None = None) -> str:
    """The report as one HTML string, with the tables and figures the observers of ``registry`` contribute."""
    registry = registry or default_registry()
    name = _escape(ds.attrs.get("scenario_name", "run"))
    description = ds.attrs.get("scenario_description", "")
    independent, applicable, reasons = independent_relations(ds, registry)
    independence = (f"<p>Independent checks: {independent} of the {applicable} relation cells that apply ("
                    f"{_escape('; '.join(reasons))}).</p>" if applicable > independent else "")
    figures = _figures(ds, registry)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>stochthermo: {name}</title><style>{STYLE}</style></head>
<body><main><h1>stochthermo run: {name}</h1>
{f"<p>{_escape(description)}</p>" if description else ""}
<p>{_escape(ds.attrs.get("paper", ""))}</p>
<h2>Results</h2>{_results_table(ds, registry)}
<p>Relation columns: (80) v_loss² ≤ TṠ at every t; (82) v_loss² ≤ v_2²; (81) η ≤ c_1 ≤ w_D; (83) c_1 ≤ c_2;
(92) W_2²/τ ≤ L²/τ ≤ c_2; (100) the bound of imperfect estimation. ok: holds for every seed; unres: the
seed-to-seed error bar straddles the bound; n/a: does not apply.</p>
{independence}{_published_table(ds)}
{f"<h2>Figures</h2>{figures}" if figures else ""}
<h2>Scenario</h2><pre>{_escape(ds.attrs.get("scenario_text", ""))}</pre>
<h2>Provenance</h2>{_provenance_table(ds)}
</main></body></html>
"""


def write_report(ds: xr.Dataset, path: str | Path, registry: Registry | None = None) -> Path:
    """Render the report and write it atomically."""
    text = render_report(ds, registry)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
