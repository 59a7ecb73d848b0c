"""Sphinx configuration of the stochthermo documentation (MyST Markdown pages).

Build with ``sphinx-build -W --keep-going -n -b html docs docs/_build/html`` from the repository root.
"""

from importlib import metadata

project = "stochthermo"
author = "the stochthermo authors"
copyright = "the stochthermo authors"
try:
    release = metadata.version("stochthermo")
except metadata.PackageNotFoundError:  # building from a source tree without installation
    release = "0+unknown"
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# MyST: $...$ and $$...$$ math, amsmath environments, ::: fences; heading anchors down to ### so that
# [text](page.md#section-anchor) links resolve (and are checked by -n)
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# docstrings are reStructuredText with :math: roles
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"

html_theme = "furo"
html_title = "stochthermo"

# -n checks every cross-reference; the libraries the signatures name (torch, numpy, xarray, the standard
# library) are not linked (no intersphinx: the site builds offline), so their names are not checked
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|numpy|np|xr|xarray|pathlib|collections|typing|enum|abc|scipy|pandas|matplotlib|pluggy)(\..*)?"),
    (r"py:class", r"(Path|Callable|Iterable|Iterator|Any|Self)"),
    # type aliases are documented as data, while annotations refer to them as classes
    (r"py:class", r"(stochthermo\.(roles\.)?)?(FigureFunction|VelocityField|FlowMap|EndpointStep|OnTask)"),
]


def _public_target(app, env, node, contnode):
    """Resolve a reference by its public name (``stochthermo.Observer``, a bare ``Setup`` in a signature) to
    the object autodoc documented under the package that re-exports it."""
    import importlib

    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~")
    domain = env.get_domain("py")
    for candidate in (target, *(f"stochthermo.{p}{target}" for p in ("", "roles.", "numerics.", "measures."))):
        module_name, _, attribute = candidate.rpartition(".")
        obj = None
        while module_name:
            try:
                obj = importlib.import_module(module_name)
                break
            except ImportError:
                module_name, _, head = module_name.rpartition(".")
                attribute = f"{head}.{attribute}"
        if obj is None:
            continue
        try:
            for part in attribute.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        qualname = getattr(obj, "__qualname__", "")
        canonical = f"{getattr(obj, '__module__', '')}.{qualname}"
        public = (f"stochthermo.{p}{qualname}" for p in ("", "roles.", "numerics.", "measures.", "testing."))
        for name in (candidate, canonical, *public):
            resolved = domain.resolve_xref(env, node.get("refdoc"), app.builder, node["reftype"], name, node,
                                           contnode)
            if resolved is not None:
                return resolved
    return None


def setup(app):
    app.connect("missing-reference", _public_target)
