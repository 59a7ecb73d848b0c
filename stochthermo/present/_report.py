"""A self-contained HTML report of a run: scenario, provenance, the results table with each relation's
status, published values beside, and the figures embedded as PNG data (no external scripts or fonts)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

from stochthermo.engine._registry import Registry, default_registry
from stochthermo.output._files import atomic_path
from stochthermo.present._columns import figure_plan
from stochthermo.present._pyplot import pyplot
from stochthermo.present._summary import reference_lines, relation_counts, summary_table

if TYPE_CHECKING:
    import xarray as xr

STYLE = """body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:90%}
td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}.FAIL{background:#f99}
.ok{background:#dfd}pre{background:#f6f6f6;padding:1em;overflow:auto}img{max-width:100%}"""


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    pyplot().close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def render_report(ds: xr.Dataset, registry: Registry | None = None) -> str:
    """The report as one HTML string, with the tables and figures the observers of ``registry`` contribute."""
    registry = registry or default_registry()
    header, rows = summary_table(ds, registry)
    table = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
    for row in rows:
        table += "<tr>" + "".join(f'<td class="{html.escape(c)}">{html.escape(c)}</td>' for c in row) + "</tr>"
    counts = relation_counts(ds, registry)
    provenance = {key: ds.attrs[key] for key in ("scenario_sha256", "stochthermo_version", "device", "dtype",
                                                  "tau", "time_steps", "particles") if key in ds.attrs}
    provenance["seeds"] = json.loads(ds.attrs.get("seeds", "[]"))
    provenance.update(json.loads(ds.attrs.get("dependency_versions", "{}")))
    drawn = "".join(f'<h3>{kind}</h3><img alt="{kind}" src="data:image/png;base64,{_png(draw(data))}">'
                    for kind, draw, data in figure_plan(ds, registry))
    name = html.escape(ds.attrs.get("scenario_name", "run"))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>stochthermo: {name}</title><style>{STYLE}</style></head>
<body><h1>stochthermo run: {name}</h1>
<p>{html.escape(ds.attrs.get("paper", ""))}</p>
<h2>Results</h2><table>{table}</table>
<p>relations: {", ".join(f"{n} {html.escape(text)}" for text, n in counts.items())}.
Relation columns: (80) v_loss² ≤ TṠ at every t; (82) v_loss² ≤ v_2²; (81) η ≤ c_1 ≤ w_D; (83) c_1 ≤ c_2;
(92) W_2²/τ ≤ L²/τ ≤ c_2; (100) the bound of imperfect estimation.</p>
<pre>{html.escape(chr(10).join(reference_lines(ds)).strip())}</pre>
<h2>Figures</h2>{drawn}
<h2>Scenario</h2><pre>{html.escape(ds.attrs.get("scenario_text", ""))}</pre>
<h2>Provenance</h2><pre>{html.escape(json.dumps(provenance, indent=2, default=str))}</pre>
</body></html>
"""


def write_report(ds: xr.Dataset, path: str | Path, registry: Registry | None = None) -> Path:
    """Render the report and write it atomically."""
    text = render_report(ds, registry)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
