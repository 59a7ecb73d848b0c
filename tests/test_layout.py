"""The tree is the contract (docs/architecture.md, "Public API"): which modules a plugin may import is visible in
the folder names and enforced here.

* ``stochthermo``'s subpackages keep their modules private (``_name.py``) behind an ``__all__``;
* a plugin (``plugins/``) or an example imports the public API only, and a built-in plugin module imports
  modules of its own role's package at most, never another role's;
* no import cycle among the modules of ``stochthermo`` and ``plugins``, type-only imports included (importing
  ``a.b._c`` runs ``a/__init__`` and ``a/b/__init__`` first, so those count as imported too);
* the engine loads, builds its registry and presents a run without the built-in plugins.
"""

import ast
import importlib
import json
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parents[1]
#: what a plugin may import from the engine
PUBLIC = {"stochthermo", "stochthermo.roles", "stochthermo.numerics", "stochthermo.measures", "stochthermo.present",
          "stochthermo.testing", "stochthermo.types", "stochthermo.errors", "stochthermo.hookspecs"}
SUBPACKAGES = ("roles", "numerics", "measures", "engine", "output", "present", "testing")


def _module_name(path: Path) -> str:
    """The import name of a file of the engine or of the built-in plugins."""
    if ROOT / "plugins" in path.parents or path.parent == ROOT / "plugins":
        parts = ["stochthermo_plugins", *path.relative_to(ROOT / "plugins").with_suffix("").parts]
    else:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts).removesuffix(".__init__")


def _imports(path: Path, *, module_level: bool) -> set[str]:
    """The modules ``path`` imports (absolute names; relative imports resolved). ``module_level``: only what is
    imported when the module itself is imported (its top level and ``if TYPE_CHECKING:`` blocks), not the
    imports deferred into functions."""
    tree = ast.parse(path.read_text())
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    nodes = []

    def collect(body):
        for node in body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                nodes.append(node)
            elif isinstance(node, ast.If | ast.Try):
                collect(node.body)
                collect(node.orelse)
                for handler in getattr(node, "handlers", []):
                    collect(handler.body)
            elif not module_level and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                collect(node.body)
            elif module_level and isinstance(node, ast.ClassDef):
                collect(node.body)

    collect(tree.body) if module_level else nodes.extend(n for n in ast.walk(tree)
                                                         if isinstance(n, ast.Import | ast.ImportFrom))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")
            anchor = anchor[:len(anchor) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        found.add(base)
        for alias in node.names:  # `from pkg import module` imports the module
            candidate = f"{base}.{alias.name}"
            if _path_of(candidate) is not None:
                found.add(candidate)
    return found


def _path_of(module: str) -> Path | None:
    parts = module.split(".")
    if parts[0] == "stochthermo_plugins":
        base = ROOT / "plugins" / Path(*parts[1:]) if len(parts) > 1 else ROOT / "plugins"
    elif parts[0] == "stochthermo":
        base = ROOT / Path(*parts)
    else:
        return None
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _with_parents(module: str) -> set[str]:
    """A module and the packages whose ``__init__`` importing it runs."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_no_import_cycle_type_only_imports_included():
    files = {_module_name(p): p for p in _sources("stochthermo", "plugins")}
    graph = {name: {m for imported in _imports(path, module_level=True) for m in _with_parents(imported)
                    if m in files and m != name}
             for name, path in files.items()}
    # a module's package __init__ runs before the module: that edge is not a cycle of the module's own making
    graph = {name: {m for m in edges if not name.startswith(m + ".")} for name, edges in graph.items()}
    state: dict[str, int] = {}

    def visit(name, trail):
        state[name] = 1
        for nxt in sorted(graph[name]):
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join([*trail, nxt])}"
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


@pytest.mark.parametrize("path", _sources("plugins", "examples"), ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_and_examples_import_only_the_public_api(path):
    own_role = None
    if ROOT / "plugins" in path.parents and path.parent != ROOT / "plugins":
        own_role = "stochthermo_plugins." + path.relative_to(ROOT / "plugins").parts[0]
    for module in _imports(path, module_level=False):
        if module.split(".")[0] == "stochthermo":
            assert module in PUBLIC, f"{path.relative_to(ROOT)} imports {module}, which is not public API"
        elif module.startswith("stochthermo_plugins") and path.parent != ROOT / "plugins":
            assert own_role and (module == own_role or module.startswith(own_role + ".")), (
                f"{path.relative_to(ROOT)} imports {module}: a plugin imports no other role's plugin module")


def test_no_plugin_module_imports_another():
    """A built-in module that implements hooks (a plugin: ``builtin.<role>.<module>``) is imported by no other
    plugin module; what modules of one role share (a base class, a figure, a file reader) lives in a module of
    that role that registers nothing."""
    sources = [p for p in _sources("plugins") if p.name != "__init__.py"]
    plugins = {_module_name(p) for p in sources if "@hookimpl" in p.read_text()}
    for path in sources:
        imported = _imports(path, module_level=False) & plugins
        assert not imported - {_module_name(path)}, f"{path.relative_to(ROOT)} imports the plugin(s) {imported}"


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_subpackages_keep_their_modules_private_behind_all(package):
    folder = ROOT / "stochthermo" / package
    modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
    assert modules and all(p.name.startswith("_") for p in modules), f"public module file in {package}/"
    public = importlib.import_module(f"stochthermo.{package}")
    for name in getattr(public, "__all__", []):
        assert hasattr(public, name), f"stochthermo.{package}.__all__ names missing {name}"


def test_top_level_names_resolve():
    import stochthermo

    for name in stochthermo.__all__:
        assert getattr(stochthermo, name) is not None, name


def test_the_engine_loads_without_the_built_in_plugins():
    probe = ("import sys\n"
             "from stochthermo.engine._registry import Registry\n"
             "from stochthermo.engine import _run, _simulate, _build\n"
             "from stochthermo.present import _summary, _report, _plotting\n"
             "import stochthermo.cli\n"
             "registry = Registry(builtins=False, entry_points=False)\n"
             "assert not any(registry.classes.values()), registry.classes\n"
             "assert 'stochthermo_plugins' not in sys.modules, 'the engine imported the built-ins'\n"
             "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_disabled_built_ins_are_a_clear_scenario_error():
    import yaml

    from conftest import scenario_dict
    from stochthermo import ScenarioError, parse_scenario
    from stochthermo.engine._registry import Registry

    with pytest.raises(ScenarioError, match="unknown distribution 'gaussian_mixture'"):
        parse_scenario(yaml.safe_dump(scenario_dict()), registry=Registry(builtins=False, entry_points=False))


def test_describe_renders_math_as_text(capsys):
    from stochthermo.cli import main
    from stochthermo.present._text import latex_text

    assert latex_text(r"\hat\nu_t = f_t - T_t\,\hat s_t") == unicodedata.normalize("NFC", "ν̂_t = f_t - T_t ŝ_t")
    assert latex_text(r"\frac{(\tilde P_0^\dagger - P_0^\dagger)^2}{P_0^\dagger}") == unicodedata.normalize(
        "NFC", "((P̃_0^† - P_0^†)^2)/(P_0^†)")
    assert latex_text(r"\sqrt{v_t}\,\mathcal N(0, 1)") == "√(v_t) N(0, 1)"
    for kind, name in (("process", "scheduled"), ("estimator", "torch_module"), ("observer", "response")):
        assert main(["describe", kind, name]) == 0
        out = capsys.readouterr().out
        assert ":math:" not in out and ":class:" not in out and "\\" not in out, out


def test_the_python_api_matches_the_command_line(write_scenario, tmp_path, capsys):
    """``stochthermo.run`` of a mapping gives the numbers of the command line's run of the same YAML;
    ``rerun`` of a result gives the result itself; ``ds.stochthermo.summary()`` is the printed table."""
    import math

    import yaml

    import stochthermo
    from conftest import assert_same_run, scenario_dict
    from stochthermo.cli import main

    spec = scenario_dict(time_steps=8, particles=64)
    path = write_scenario(spec)
    assert main(["run", str(path), "-o", str(tmp_path / "o.nc")]) == 0
    printed = capsys.readouterr().out
    from_cli = stochthermo.open_run(tmp_path / "o.nc")
    from_dict = stochthermo.run(yaml.safe_load(path.read_text()), write=False)
    for name in from_cli.data_vars:
        np.testing.assert_array_equal(from_dict[name].values, from_cli[name].values, err_msg=name)
    again = stochthermo.rerun(tmp_path / "o.nc")

    assert_same_run(again, from_cli)
    table = from_cli.stochthermo.summary()
    row = table.loc[("cosine", "shifted")]
    eta = float(from_cli.response.sel(protocol="cosine", perturbation="shifted").mean("seed"))
    assert math.isclose(row["eta"], eta, rel_tol=1e-15) and f"{eta:.5g}" in printed
    assert set(from_cli.stochthermo.relations().iloc[0]) <= {"ok", "FAIL", "unres", "n/a"}
    assert from_cli.stochthermo.scenario() == path.read_text()
    more = from_cli.stochthermo.rerun(particles=128)
    assert more.attrs["particles"] == 128 and json.loads(more.attrs["scenario_overrides"]) == ["particles=128"]
    figures = from_cli.stochthermo.figures()
    assert figures and all(hasattr(fig, "savefig") for fig in figures.values())
