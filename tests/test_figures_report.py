"""Figures (Agg) and the HTML report from small runs, and the CLI's plot / report / --plot / --set."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import run_dict, scenario_dict
from stochthermo.cli import main
from stochthermo.output._files import write_dataset
from stochthermo.present._plotting import available_figures, save_figures
from stochthermo.present._report import render_report

ROOT = Path(__file__).parents[1]
RUN_1D = scenario_dict(protocols={"cosine": {"process": {"name": "scheduled", "schedule": "cosine"}},
                                  "ot": {"process": "optimal_transport"}},
                       perturbations={"a": {"name": "gaussian", "mean": 1.0, "std": 1.0}},
                       observers=["thermodynamics", "response", "bounds", "snapshots"], particles=512, time_steps=24)
RUN_2D = scenario_dict(data={"name": "gaussian_mixture", "weights": [0.5, 0.5], "means": [[-1.0, 0.0], [1.0, 0.5]],
                             "stds": [0.4, 0.4]}, prior={"name": "gaussian", "mean": [0.0, 0.0]},
                       perturbations={"a": {"name": "gaussian", "mean": [0.5, 0.0], "std": 0.9}},
                       observers=["thermodynamics", "response", "bounds", {"name": "snapshots", "points": 40}],
                       particles=200, time_steps=8)


@pytest.fixture(scope="module")
def run_1d():
    return run_dict(RUN_1D)


@pytest.mark.parametrize("spec", [RUN_1D, RUN_2D], ids=["1d", "2d"])
def test_every_figure_kind_is_written(spec, tmp_path):
    ds = run_dict(spec)
    assert set(available_figures(ds)) == {"densities", "costs", "speeds"}
    written = save_figures(ds, tmp_path, ("png", "pdf"))
    assert len(written) == 6 and all(p.stat().st_size > 5000 for p in written)


def test_report_is_self_contained(run_1d):
    page = render_report(run_1d)
    assert page.startswith("<!DOCTYPE html>") and page.count("data:image/png;base64,") == 3
    assert not re.search(r"https?://|<script|<link|url\(", page)
    assert '<td class="status-holds">ok</td>' in page and "scenario" in page.lower()


def test_report_is_valid_html_with_units_captions_and_provenance(tmp_path):
    """The report parses without a single error under the WHATWG parser (html5lib, strict); headers carry the
    variables' symbols and units, each figure a caption, published values a table, the provenance the run's
    date, host and wall time; no cell is classed by its value and no block is empty."""
    html5lib = pytest.importorskip("html5lib")
    import stochthermo

    ds = stochthermo.run(ROOT / "scenarios" / "gmm.yaml", write=False)
    page = render_report(ds)
    html5lib.HTMLParser(strict=True).parse(page)  # raises on any parse error
    assert page.count("<figcaption>") == page.count("<img ") == 3
    assert "<caption>Beside published values (arXiv:2407.04495 Table I" in page
    for text in ("finished (UTC)", ds.attrs["date_created"], "wall time (s)", ds.attrs["run_host"], "torch"):
        assert f">{text}<" in page, text
    assert '>eta<br><span class="unit">eta</span></th>' in page  # the column's header, then its symbol
    assert not re.search(r'class="[0-9.e+-]+"', page)  # statuses are classes, values are not
    assert "<pre></pre>" not in page and "<ul></ul>" not in page


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no headless browser here (Debian's chromium package)")
def test_the_gmm_report_renders_in_a_real_browser(tmp_path):
    """Headless Chromium renders the gmm report: the screenshot has the page's width, the heading, the
    results table and the figures draw ink at the expected places (not a blank or collapsed page)."""
    import stochthermo
    from stochthermo.present._report import write_report

    ds = stochthermo.run(ROOT / "scenarios" / "gmm.yaml", write=False)
    page = write_report(ds, tmp_path / "gmm.html")
    shot = tmp_path / "gmm.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1400,2400", f"--screenshot={shot}", page.as_uri()], check=True,
                   capture_output=True, timeout=120)
    from matplotlib.image import imread

    pixels = imread(shot)[..., :3].mean(-1)  # grey levels in [0, 1]
    assert pixels.shape == (2400, 1400)
    ink = pixels < 0.5
    bands = [ink[rows].mean() for rows in (slice(0, 80), slice(250, 750), slice(1550, 1850))]
    assert all(0.002 < band < 0.5 for band in bands), bands  # heading, results table, first figure
    assert 0.02 < ink.mean() < 0.4


def test_cli_plot_and_report(run_1d, tmp_path, capsys):
    run_file = write_dataset(run_1d, tmp_path / "run.nc")
    assert main(["plot", str(run_file), "--format", "png"]) == 0
    assert sorted(p.name for p in (tmp_path / "run_figures").iterdir()) == [
        "run_costs.png", "run_densities.png", "run_speeds.png"]
    assert main(["report", str(run_file)]) == 0
    assert (tmp_path / "run.html").stat().st_size > 10000
    assert main(["plot", str(tmp_path / "missing.nc")]) == 2
    assert "missing.nc: no such file" in capsys.readouterr().err


def test_run_with_plot_and_overrides(write_scenario, tmp_path, capsys):
    path = write_scenario(RUN_1D)
    out = tmp_path / "o" / "r.nc"
    assert main(["run", str(path), "-o", str(out), "--plot", "--set", "particles=256",
                 "--set", "perturbations.a.mean=0.5"]) == 0
    assert (tmp_path / "o" / "r_figures" / "r_costs.pdf").exists()
    from stochthermo.output._files import read_dataset

    ds = read_dataset(out)
    assert ds.attrs["particles"] == 256 and '"perturbations.a.mean=0.5"' in ds.attrs["scenario_overrides"]
    assert main(["run", str(path), "-o", str(out), "--set", "particle=3"]) == 2
    assert "particle: unknown key (did you mean 'particles'?)" in capsys.readouterr().err


def test_a_sweep_gets_each_figure_per_swept_value_and_a_report(tmp_path):
    """The built-in figures are per variant: a sweep draws each once per swept value, on that value's slice
    (they used to fail on the extra dimensions); the report embeds them all."""
    ds = run_dict({**RUN_1D, "sweep": {"data.stds": [[0.3, 0.3], [0.2, 0.4]]}})
    written = save_figures(ds, tmp_path, ("png",))
    names = sorted(p.name for p in written)
    assert len(names) == 6 and all(p.stat().st_size > 5000 for p in written)
    assert "test_costs_data_stds-0.2x0.4.png" in names and "test_densities_data_stds-0.3x0.3.png" in names, names
    assert render_report(ds).count("data:image/png;base64,") == 6


def test_figures_keep_the_sessions_backend(monkeypatch):
    """A notebook's backend (inline) is kept: drawing a figure does not switch it to Agg (the command line sets
    Agg itself, through MPLBACKEND, and keeps a user's own MPLBACKEND)."""
    import matplotlib

    from stochthermo.cli import main
    from stochthermo.present import pyplot

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        pyplot().figure()
        assert matplotlib.get_backend() == "svg"
    finally:
        pyplot().close("all")
        matplotlib.use(before)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    main(["plugins", "--json"])
    assert os.environ["MPLBACKEND"] == "Agg"
    monkeypatch.setenv("MPLBACKEND", "pdf")
    main(["plugins", "--json"])
    assert os.environ["MPLBACKEND"] == "pdf"


def _panel_data(ax) -> np.ndarray:
    """What a panel draws: its lines' y data, its bars' heights and its images' pixels, concatenated."""
    parts = [np.asarray(line.get_ydata(), dtype=float).ravel() for line in ax.get_lines()]
    parts += [np.array([patch.get_height() for patch in ax.patches], dtype=float)]
    parts += [np.asarray(image.get_array(), dtype=float).ravel() for image in ax.get_images()]
    return np.concatenate(parts) if parts else np.zeros(0)


@pytest.mark.parametrize("spec", [RUN_1D, RUN_2D], ids=["1d", "2d"])
def test_every_panel_is_labelled_and_no_two_panels_are_the_same(spec):
    """Every panel of every figure says what it shows (a title, or axis labels), the cost and speed panels carry
    the variables' symbols as mathtext with their units, and no two panels of a figure draw the same data."""
    from stochthermo.engine._registry import default_registry
    from stochthermo.present import pyplot
    from stochthermo.present._columns import figure_plan

    ds = run_dict({**spec, "seeds": [0, 1]})
    for kind, draw, data in figure_plan(ds, default_registry()):
        fig = draw(data)
        # the data panels (a colour key is an axes of its own, labelled '<colorbar>' by matplotlib)
        panels = [ax for ax in fig.axes if ax.get_visible() and ax.has_data() and ax.get_label() != "<colorbar>"]
        for ax in panels:
            assert ax.get_title() or ax.get_xlabel() or ax.get_ylabel(), kind
        if kind in ("costs", "speeds"):
            assert all("$" in ax.get_ylabel() for ax in panels[:1]), (kind, [ax.get_ylabel() for ax in panels])
        drawn = [_panel_data(ax) for ax in panels]
        for i in range(len(drawn)):
            for j in range(i + 1, len(drawn)):
                same = drawn[i].shape == drawn[j].shape and np.array_equal(drawn[i], drawn[j], equal_nan=True)
                assert not same, (kind, i, j)
        pyplot().close(fig)


def test_journal_presets_vector_output_and_a_style(run_1d, tmp_path, capsys):
    """--width scales every figure to a journal column (3.4 in), PNGs at --dpi, SVG as vector output, a
    matplotlib style applied; an unknown style is refused in one line with a suggestion."""
    from PIL import Image

    run_file = write_dataset(run_1d, tmp_path / "run.nc")
    assert main(["plot", str(run_file), "-o", str(tmp_path / "figs"), "--format", "png", "svg", "--dpi", "300",
                 "--width", "one-column", "--style", "ggplot"]) == 0
    pngs = sorted((tmp_path / "figs").glob("*.png"))
    assert pngs and all(Image.open(p).size[0] == round(3.4 * 300) for p in pngs)
    assert all(p.with_suffix(".svg").read_text().lstrip().startswith("<?xml") for p in pngs)
    assert main(["plot", str(run_file), "--style", "ggplott"]) == 2
    assert "style: 'ggplott' is neither a matplotlib style nor a style file (did you mean 'ggplot'?)" in \
        capsys.readouterr().err


def test_summary_of_a_run_file_with_chosen_columns(run_1d, tmp_path, capsys):
    """`stochthermo summary RUN --columns` prints the row labels and the chosen columns only; an unknown column
    is refused in one line naming the file and the option, with a suggestion."""
    run_file = write_dataset(run_1d, tmp_path / "run.nc")
    assert main(["summary", str(run_file), "--columns", "eta,c_1,(81)eta<=c1"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split()
    assert header == ["protocol", "perturbation", "eta", "c_1", "(81)eta<=c1"]
    assert main(["summary", str(run_file), "--columns", "etta"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("--columns: no column 'etta' in this run's table (did you mean 'eta'?)")
    assert str(run_file) in err
    assert len(err.splitlines()) == 1


def test_snapshots_of_data_given_as_atoms():
    """Data given as points without smoothing has no density at t = 0: the closed-form reference is NaN there
    (not an error), and finite at the later snapshot times, where P_t is a Gaussian mixture."""
    atoms = scenario_dict(data={"name": "weighted_points", "points": [[-1.0, 0.0], [0.5, 1.0]],
                                "weights": [0.4, 0.6]}, prior={"name": "gaussian", "mean": [0.0, 0.0]},
                          perturbations={"a": {"name": "gaussian", "mean": [0.5, 0.0], "std": 0.9}},
                          observers=["thermodynamics", {"name": "snapshots", "points": 20}], particles=64,
                          time_steps=8)
    exact = run_dict(atoms).isel(seed=0, protocol=0).forward_density_exact.values
    assert np.isnan(exact[0]).all() and np.isfinite(exact[1:]).all()


def test_the_interval_is_drawn_from_its_own_ends_even_where_the_point_value_lies_outside(run_1d):
    """η from a sliced or plug-in distance may fall outside the bracket of the true W_1: the whisker spans
    exactly [lower, upper] and drawing does not fail."""
    from stochthermo.present import pyplot

    ds = run_1d.copy()
    ds["response_lower"] = ds.response + 0.5  # the bracket above the point value
    ds["response_upper"] = ds.response + 0.7
    from plugins.observers.figures import costs_figure

    fig = costs_figure(ds)
    segments = [np.asarray(seg) for c in fig.axes[0].collections for seg in c.get_segments()]
    spans = sorted((float(s[:, 1].min()), float(s[:, 1].max())) for s in segments if len(s) == 2)
    expected = sorted(zip((ds.response + 0.5).mean("seed").values.ravel(),
                          (ds.response + 0.7).mean("seed").values.ravel(), strict=True))
    np.testing.assert_allclose(spans, expected, rtol=1e-12)
    pyplot().close(fig)
