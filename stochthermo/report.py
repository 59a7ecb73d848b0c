"""A self-contained HTML report of a run: scenario, provenance, the results table with each relation's
status, published values beside, and the figures embedded as PNG data (no external scripts or fonts)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import xarray as xr

from .plotting import FIGURES, available_figures, plt
from .summary import reference_lines, relation_counts, summary_table

STYLE = """body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:90%}
td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}.FAIL{background:#f99}
.ok{background:#dfd}pre{background:#f6f6f6;padding:1em;overflow:auto}img{max-width:100%}"""


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def render_report(ds: xr.Dataset) -> str:
    """The report as one HTML string."""
    header, rows = summary_table(ds)
    table = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
    for row in rows:
        table += "<tr>" + "".join(f'<td class="{html.escape(c)}">{html.escape(c)}</td>' for c in row) + "</tr>"
    counts = relation_counts(ds)
    provenance = {key: ds.attrs[key] for key in ("scenario_sha256", "stochthermo_version", "device", "dtype",
                                                  "tau", "time_steps", "particles") if key in ds.attrs}
    provenance["seeds"] = json.loads(ds.attrs.get("seeds", "[]"))
    provenance.update(json.loads(ds.attrs.get("dependency_versions", "{}")))
    figures = "".join(f'<h3>{kind}</h3><img alt="{kind}" src="data:image/png;base64,{_png(FIGURES[kind](ds))}">'
                      for kind in available_figures(ds))
    name = html.escape(ds.attrs.get("scenario_name", "run"))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>stochthermo: {name}</title><style>{STYLE}</style></head>
<body><h1>stochthermo run: {name}</h1>
<p>{html.escape(ds.attrs.get("paper", ""))}</p>
<h2>Results</h2><table>{table}</table>
<p>relations: {", ".join(f"{n} {html.escape(text)}" for text, n in counts.items())}.
Columns: (80) v_loss² ≤ TṠ at every t; (82) v_loss² ≤ v_2²; (81) η ≤ c_1 ≤ w_D; (83) c_1 ≤ c_2;
(92) W_2²/τ ≤ L²/τ ≤ c_2.</p>
<pre>{html.escape(chr(10).join(reference_lines(ds)).strip())}</pre>
<h2>Figures</h2>{figures}
<h2>Scenario</h2><pre>{html.escape(ds.attrs.get("scenario_text", ""))}</pre>
<h2>Provenance</h2><pre>{html.escape(json.dumps(provenance, indent=2, default=str))}</pre>
</body></html>
"""


def write_report(ds: xr.Dataset, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(ds))
    return path
