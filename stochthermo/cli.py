"""Command line: ``stochthermo run | plot | report | validate | plugins | describe``.

Errors in the user's input print one line naming the file, the key and the problem, and exit with status
2; a run that produces a non-finite number exits with status 1. Neither writes any output file. Heavy
modules (torch, xarray, matplotlib) are imported inside the commands, so ``--help`` stays fast.

The process entry point (:func:`entry_point`: the ``stochthermo`` console script and ``python -m
stochthermo.cli``) also keeps Python's cyclic garbage collector off the modules a command imports: see
:func:`entry_point`. :func:`main`, called in-process (tests, notebooks), leaves the caller's collector alone.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import logging
import os
import sys
import traceback
from pathlib import Path

from stochthermo import __version__
from stochthermo.errors import ScenarioError, SimulationError, StochthermoError, first_line

#: plugin roles (``stochthermo describe KIND NAME``); the registry's KINDS are checked against it in the tests
KIND_NAMES = ("distribution", "estimator", "observer", "process", "schedule", "solver")


def entry_point() -> None:
    """Run :func:`main` as the whole process, with the cyclic garbage collector kept off the imported modules.

    A command imports torch, xarray, scipy and the plugins: some 230 000 container objects that live as long
    as the process. With the collector on, Python traverses them in full collections during the imports (four
    on ``run``, about 0.35 s on 2 cores, finding no garbage) and once more at exit (0.3-0.6 s). So the collector is
    paused here; a command that computes switches it back on once its modules are imported
    (:func:`_collect_from_here`), after freezing every object alive then (:func:`gc.freeze`: moved to a
    permanent generation that collections skip); and what is left at the end is frozen before the
    interpreter's teardown. Reference counting frees everything as usual; only the search for reference
    cycles skips the frozen objects.
    """
    global _WHOLE_PROCESS
    _WHOLE_PROCESS = True
    gc.disable()
    status = main()
    gc.freeze()
    sys.exit(status)


#: set by :func:`entry_point`: the command is the whole process (not :func:`main` called from Python), so it may
#: set the process's thread counts once
_WHOLE_PROCESS = False


def _share_the_machine() -> None:
    """Where the command is the whole process and ``--threads`` is not given, lower torch's and the BLAS
    libraries' threads once, before anything computes, to the CPUs this process may use that are idle now
    (:func:`stochthermo.numerics.default_threads`): beside other work, threads that outnumber the free CPUs spin
    instead of computing (stochastic.yaml: 4.2× slower beside a 2-process load, 1.5× with this)."""
    import torch
    from threadpoolctl import threadpool_limits

    from stochthermo.numerics import default_threads

    threads = default_threads()
    if threads < torch.get_num_threads():
        torch.set_num_threads(threads)
        threadpool_limits(threads)  # applied for the rest of the process


def _collect_from_here() -> None:
    """Freeze the objects alive now and switch the collector on, where :func:`entry_point` paused it."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")  # figures are written, never shown (a user's choice is kept)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except BrokenPipeError:  # the reader closed the pipe (`stochthermo plugins | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SimulationError as exc:
        return _fail(args, f"run failed: {_one_line(exc)}", 1)
    except ScenarioError as exc:
        flag = f" ({FLAGS[exc.option]})" if exc.option in FLAGS else ""
        return _fail(args, f"error: {_one_line(exc)}{flag}", 2)
    except StochthermoError as exc:
        return _fail(args, f"error: {_one_line(exc)}", 2)
    except OSError as exc:  # the disk is full, a directory is read-only, a file vanished
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(args, f"error: {where}{exc.strerror or first_line(exc)}", 2)
    except MemoryError:
        return _fail(args, "error: out of memory: lower particles or time_steps", 2)
    except Exception as exc:  # a bug: said so in one line, the traceback kept for --debug
        return _fail(args, f"internal error: {type(exc).__name__}: {first_line(exc)} (a bug in stochthermo or a "
                           "plugin: please report it with the scenario; --debug shows the traceback)", 2)


#: run options (:func:`stochthermo.run`) whose refusals the command line completes with the flag that allows them
FLAGS = {"force": "--force", "no-recompute": "--no-recompute"}


def _one_line(exc: Exception) -> str:
    """An error's message on one line (a plugin's multi-line message is joined)."""
    return " ".join(str(exc).split("\n"))


def _fail(args, message: str, status: int) -> int:
    """Print ``stochthermo: <message>`` (after the traceback with ``--debug``) and return ``status``."""
    if args.debug:
        traceback.print_exc()
    print(f"stochthermo: {message}", file=sys.stderr)
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stochthermo", description=(
        "Stochastic thermodynamics of diffusion and flow generative models (arXiv:2407.04495)."))
    parser.add_argument("--version", action="version", version=f"stochthermo {__version__}")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                        help="verbosity of log messages on standard error")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error before its line")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a scenario and write its Dataset (netCDF)")
    run.add_argument("scenario", help="scenario YAML file")
    run.add_argument("-o", "--output", help="netCDF file to write (default: the scenario's 'output')")
    run.add_argument("--format", choices=["netcdf", "zarr"], default="netcdf",
                     help="the output: one netCDF-4 file (default) or a Zarr store (needs stochthermo[zarr])")
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override the scenario's device")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                     help="override a scenario key (dotted path, YAML value), e.g. --set particles=8192")
    run.add_argument("--print-config", action="store_true",
                     help="print the resolved scenario (overrides applied) as YAML and stop: nothing is run")
    run.add_argument("--plot", nargs="?", const="", metavar="DIR",
                     help="also write the figures (PNG and PDF) to DIR (default: beside the output file)")
    run.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors; no progress bar")
    run.add_argument("--executor", choices=["in-process", "local"], default="in-process",
                     help="where tasks (variant x protocol x seed) compute: this process (default) or a Dask "
                          "LocalCluster of worker processes (needs stochthermo[distributed])")
    run.add_argument("--workers", type=int, metavar="N", help="worker processes of --executor local (default: cores)")
    run.add_argument("--scheduler", metavar="ADDRESS", help="run the tasks on the Dask cluster of this scheduler")
    run.add_argument("--threads", type=int, metavar="N", help="torch threads per task (default: the CPUs this "
                     "process may use that are idle at start, in-process; cores / workers on a LocalCluster; the "
                     "workers' own on --scheduler)")
    run.add_argument("--retries", type=int, default=0, metavar="N", help="reruns of a failing task before it is "
                     "reported (default 0)")
    run.add_argument("--keep-tasks", action="store_true", help="keep the run directory of task files after success")
    run.add_argument("--force", action="store_true", help="replace an existing output that is not a result of "
                     "stochthermo")
    run.add_argument("--no-recompute", action="store_true", help="refuse a damaged task file of an earlier run "
                     "instead of recomputing its task")
    run.set_defaults(handler=_run)

    plot = commands.add_parser("plot", help="figures of a run in the paper's layouts")
    plot.add_argument("run", help="netCDF file written by `stochthermo run`")
    plot.add_argument("-o", "--output", help="directory for the figures (default: beside the run file)")
    plot.add_argument("--format", nargs="+", default=["png", "pdf"], choices=["png", "pdf", "svg"],
                      help="file formats (PDF and SVG are vector graphics)")
    plot.add_argument("--dpi", type=int, default=300, help="resolution of raster formats (default 300)")
    plot.add_argument("--width", choices=["one-column", "two-column"],
                      help="scale each figure to a journal's column width (3.4 or 7.0 in) with 7-9 pt type")
    plot.add_argument("--style", metavar="STYLE", help="a matplotlib style name or .mplstyle file to draw with")
    plot.set_defaults(handler=_plot)

    summary = commands.add_parser("summary", help="print the summary table of a run file")
    summary.add_argument("run", help="netCDF file written by `stochthermo run`")
    summary.add_argument("--columns", type=lambda text: [c.strip() for c in text.split(",") if c.strip()],
                         metavar="A,B,...", help="only these columns (headers of the table) after the row labels")
    summary.set_defaults(handler=_summary)

    report = commands.add_parser("report", help="one self-contained HTML report of a run")
    report.add_argument("run", help="netCDF file written by `stochthermo run`")
    report.add_argument("-o", "--output", help="HTML file (default: the run file with .html)")
    report.set_defaults(handler=_report)

    validate = commands.add_parser("validate", help="check a scenario file without running it")
    validate.add_argument("scenario")
    validate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                          help="override a scenario key first, as `run --set` does")
    validate.add_argument("--print-config", action="store_true",
                          help="print the resolved scenario (overrides applied) as YAML")
    validate.set_defaults(handler=_validate)

    plugins = commands.add_parser("plugins", help="list the registered plugins")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.set_defaults(handler=_plugins)

    describe = commands.add_parser("describe", help="documentation and parameters of one plugin class")
    describe.add_argument("kind", help=f"plugin role: {', '.join(KIND_NAMES)}")
    describe.add_argument("name")
    describe.set_defaults(handler=_describe)
    return parser


#: the library's run options (:func:`stochthermo.run`) that name a command-line flag, for the flag in errors
RUN_FLAGS = {"format": "--format", "retries": "--retries", "workers": "--workers", "threads": "--threads",
             "executor": "--executor", "scheduler": "--scheduler", "overrides": "--set"}


def _run(args) -> int:
    if args.print_config:
        return _validate(args)
    from stochthermo.engine._run import execute
    from stochthermo.engine._tasks import run_directory
    from stochthermo.present._summary import format_summary

    if _WHOLE_PROCESS and args.threads is None and args.executor == "in-process" and not args.scheduler:
        _share_the_machine()

    try:
        result = execute(Path(args.scenario), overrides=args.overrides, output=args.output, format=args.format,
                         device=args.device, executor=args.executor, workers=args.workers, scheduler=args.scheduler,
                         threads=args.threads, retries=args.retries, keep_tasks=args.keep_tasks, force=args.force,
                         recompute=not args.no_recompute, progress=not args.quiet and sys.stderr.isatty(),
                         require_output=True,
                         before_compute=_collect_from_here)
    except ScenarioError as exc:
        if exc.key in RUN_FLAGS:
            raise ScenarioError(exc.problem, file=exc.file, key=RUN_FLAGS[exc.key], option=exc.option) from None
        raise
    except KeyboardInterrupt:
        where = run_directory(args.output) if args.output else "the run directory beside the output"
        print(f"stochthermo: interrupted; finished tasks are kept in {where}: run the same command to resume",
              file=sys.stderr)
        return 130
    dataset, path, scenario = result.dataset, result.path, result.scenario
    first = scenario.variants[0]
    figures = []
    if args.plot is not None:
        from stochthermo.present._plotting import save_figures

        figures = save_figures(dataset, args.plot or _beside(path), stem=path.stem, registry=scenario.registry)
    if not args.quiet:
        print(f"scenario {scenario.name} ({args.scenario}) on {dataset.attrs['device']}, "
              f"{first.particles} particles, {first.time_steps} time steps, seeds {first.seeds}")
        print(format_summary(dataset, scenario.registry))
        print(f"\nwrote {path}" + "".join(f"\nwrote {f}" for f in figures))
    return 0


def _beside(run_file: Path) -> Path:
    return run_file.parent / f"{run_file.stem}_figures"


def _plot(args) -> int:
    from stochthermo.output._files import open_run
    from stochthermo.present._plotting import save_figures

    run_file = Path(args.run)
    dataset = open_run(args.run)
    _collect_from_here()
    if args.dpi <= 0:
        raise ScenarioError(f"must be > 0, got {args.dpi}", key="--dpi")
    written = save_figures(dataset, args.output or _beside(run_file), tuple(args.format), stem=run_file.stem,
                           dpi=args.dpi, width=args.width, style=args.style)
    if not written:
        raise ScenarioError("no registered observer draws a figure from this run's variables", file=args.run)
    for path in written:
        print(f"wrote {path}")
    return 0


def _summary(args) -> int:
    from stochthermo.output._files import open_run
    from stochthermo.present._summary import format_summary

    try:
        table = format_summary(open_run(args.run), columns=args.columns)
    except ScenarioError as exc:
        raise ScenarioError(exc.problem, file=args.run, key="--columns") from None
    print(table)
    return 0


def _report(args) -> int:
    from stochthermo.output._files import open_run
    from stochthermo.present._report import write_report

    output = Path(args.output or Path(args.run).with_suffix(".html"))
    if output.exists() and Path(args.run).exists() and os.path.samefile(output, args.run):
        raise ScenarioError(f"the report's output {output} is the run file itself", file=args.run)
    dataset = open_run(args.run)
    _collect_from_here()
    path = write_report(dataset, output)
    print(f"wrote {path}")
    return 0


def _validate(args) -> int:
    from stochthermo.engine._build import load_scenario

    scenario = load_scenario(args.scenario, overrides=args.overrides)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(json.loads(scenario.spec.resolved), sort_keys=False), end="")
        return 0
    first = scenario.variants[0]
    variants = f", {len(scenario.variants)} sweep variants" if len(scenario.variants) > 1 else ""
    print(f"{args.scenario}: valid ({len(first.protocols)} protocols, {len(first.perturbations)} "
          f"perturbations{variants}, observers: {', '.join(o.name for o in first.observers)})")
    return 0


def _plugins(args) -> int:
    from stochthermo.engine._registry import default_registry

    registry = default_registry()
    records = [{"name": info.name, "version": info.version, "source": info.source, "provides": info.provides}
               for info in registry.plugins.values()]
    failures = [{"name": f.plugin, "error": f.reason} for f in registry.failures]
    if args.json:
        print(json.dumps({"plugins": records, "failed": failures}, indent=2))
        return 0
    by_role: dict[str, list[str]] = {}
    for record in records:
        for kind, names in record["provides"].items():
            by_role.setdefault(kind, []).extend(f"{name} ({record['name']} {record['version']})" for name in names)
    for kind in KIND_NAMES:
        print(f"{kind}{'es' if kind.endswith('s') else 's'}:")
        for entry in by_role.get(kind, []):
            print(f"  {entry}")
    print("plugins:")
    for record in records:
        print(f"  {record['name']} {record['version']} [{record['source']}]")
    for failure in failures:
        print(f"{failure['name']}: NOT LOADED: {failure['error']}")
    return 0


def _describe(args) -> int:
    from stochthermo.engine._parameters import parameters_of, type_name
    from stochthermo.engine._registry import default_registry
    from stochthermo.present._text import plain_text

    cls = default_registry().get(args.kind, args.name)
    print(f"{args.kind} '{args.name}' ({cls.__module__}.{cls.__qualname__})\n")
    print(plain_text(inspect.cleandoc(cls.__doc__ or "(no documentation)")))
    module_doc = sys.modules[cls.__module__].__doc__
    if module_doc:
        print("\n" + plain_text(inspect.cleandoc(module_doc)))
    params = parameters_of(cls)
    print("\nparameters:" if params else "\nparameters: none")
    for p in params:
        default = "required" if p.required else f"default {p.default!r}"
        print(f"  {p.name}: {type_name(p.annotation)} ({default})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    entry_point()
