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
import importlib.util
import inspect
import json
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .errors import ScenarioError, SimulationError, StochthermoError

#: plugin roles (``stochthermo describe KIND NAME``); stochthermo.registry.KINDS is checked against it in the tests
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
    gc.disable()
    status = main()
    gc.freeze()
    sys.exit(status)


def _collect_from_here() -> None:
    """Freeze the objects alive now and switch the collector on, where :func:`entry_point` paused it."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except BrokenPipeError:  # the reader closed the pipe (`stochthermo plugins | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SimulationError as exc:
        print(f"stochthermo: run failed: {exc}", file=sys.stderr)
        return 1
    except StochthermoError as exc:
        print(f"stochthermo: error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stochthermo", description=(
        "Stochastic thermodynamics of diffusion and flow generative models (arXiv:2407.04495)."))
    parser.add_argument("--version", action="version", version=f"stochthermo {__version__}")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                        help="verbosity of log messages on standard error")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a scenario and write its Dataset (netCDF)")
    run.add_argument("scenario", help="scenario YAML file")
    run.add_argument("-o", "--output", help="netCDF file to write (default: the scenario's 'output')")
    run.add_argument("--format", choices=["netcdf", "zarr"], default="netcdf",
                     help="the output: one netCDF-4 file (default) or a Zarr store (needs stochthermo[zarr])")
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override the scenario's device")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                     help="override a scenario key (dotted path, YAML value), e.g. --set particles=8192")
    run.add_argument("--plot", nargs="?", const="", metavar="DIR",
                     help="also write the figures (PNG and PDF) to DIR (default: beside the output file)")
    run.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors; no progress bar")
    run.add_argument("--executor", choices=["in-process", "local"], default="in-process",
                     help="where tasks (variant x protocol x seed) compute: this process (default) or a Dask "
                          "LocalCluster of worker processes (needs stochthermo[distributed])")
    run.add_argument("--workers", type=int, metavar="N", help="worker processes of --executor local (default: cores)")
    run.add_argument("--scheduler", metavar="ADDRESS", help="run the tasks on the Dask cluster of this scheduler")
    run.add_argument("--threads", type=int, metavar="N", help="torch threads per task (default: all cores "
                     "in-process, cores / workers on a LocalCluster, the workers' own on --scheduler)")
    run.add_argument("--retries", type=int, default=0, metavar="N", help="reruns of a failing task before it is "
                     "reported (default 0)")
    run.add_argument("--keep-tasks", action="store_true", help="keep the run directory of task files after success")
    run.set_defaults(handler=_run)

    plot = commands.add_parser("plot", help="figures of a run in the paper's layouts")
    plot.add_argument("run", help="netCDF file written by `stochthermo run`")
    plot.add_argument("-o", "--output", help="directory for the figures (default: beside the run file)")
    plot.add_argument("--format", nargs="+", default=["png", "pdf"], choices=["png", "pdf", "svg"])
    plot.set_defaults(handler=_plot)

    report = commands.add_parser("report", help="one self-contained HTML report of a run")
    report.add_argument("run", help="netCDF file written by `stochthermo run`")
    report.add_argument("-o", "--output", help="HTML file (default: the run file with .html)")
    report.set_defaults(handler=_report)

    validate = commands.add_parser("validate", help="check a scenario file without running it")
    validate.add_argument("scenario")
    validate.set_defaults(handler=_validate)

    plugins = commands.add_parser("plugins", help="list the registered plugins")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.set_defaults(handler=_plugins)

    describe = commands.add_parser("describe", help="documentation and parameters of one plugin class")
    describe.add_argument("kind", help=f"plugin role: {', '.join(KIND_NAMES)}")
    describe.add_argument("name")
    describe.set_defaults(handler=_describe)
    return parser


def _run(args) -> int:
    import scipy.integrate  # noqa: F401  (every run integrates over time: imported before the collector is back)

    from .engine import simulate
    from .io import write_dataset
    from .scenario import load_scenario
    from .summary import format_summary
    from .tasks import TaskStore, run_directory, run_identity

    if args.retries < 0:
        raise ScenarioError(f"must be >= 0, got {args.retries}", key="--retries")
    for option, value in (("--workers", args.workers), ("--threads", args.threads)):
        if value is not None and value < 1:
            raise ScenarioError(f"must be >= 1, got {value}", key=option)
    if args.format == "zarr" and not all(importlib.util.find_spec(name) for name in ("zarr", "dask")):
        raise ScenarioError("a Zarr store needs zarr and dask: pip install 'stochthermo[zarr]'", key="--format")
    scenario = load_scenario(args.scenario, overrides=args.overrides)
    _collect_from_here()
    first = scenario.variants[0]
    output = args.output or first.output
    if not output:
        raise ScenarioError("no output file: give -o/--output or an 'output' key", file=args.scenario, key="output")
    try:
        store = TaskStore(run_directory(output), run_identity(scenario), scenario.name).open()
    except ScenarioError as exc:
        raise exc.located(file=args.scenario) from None
    executor = _executor(args)
    regions = None
    if args.format == "zarr":
        from .zarr_regions import RegionWriter

        regions = RegionWriter(scenario, store.directory)
    try:
        dataset = simulate(scenario, device=args.device, progress=not args.quiet and sys.stderr.isatty(),
                           executor=executor, store=store, retries=args.retries, on_task=regions)
    except ScenarioError as exc:
        raise exc.located(file=args.scenario) from None
    except KeyboardInterrupt:
        print(f"stochthermo: interrupted; finished tasks are kept in {store.directory}: run the same command to "
              "resume", file=sys.stderr)
        return 130
    finally:
        executor.close()
    path = regions.finish(dataset, output) if regions else write_dataset(dataset, output)
    if not args.keep_tasks:
        store.remove()
    figures = []
    if args.plot is not None:
        from .plotting import save_figures

        figures = save_figures(dataset, args.plot or _beside(path), stem=path.stem, registry=scenario.registry)
    if not args.quiet:
        print(f"scenario {scenario.name} ({args.scenario}) on {dataset.attrs['device']}, "
              f"{first.particles} particles, {first.time_steps} time steps, seeds {first.seeds}")
        print(format_summary(dataset, scenario.registry))
        print(f"\nwrote {path}" + "".join(f"\nwrote {f}" for f in figures))
    return 0


def _executor(args):
    """The executor the options ask for."""
    if args.scheduler and args.executor == "local":
        raise ScenarioError("give --scheduler (an existing cluster) or --executor local, not both", key="--scheduler")
    if args.workers is not None and args.executor != "local":
        raise ScenarioError("--workers sizes a LocalCluster: add --executor local", key="--workers")
    from .executors import DaskExecutor, InProcess

    if not args.scheduler and args.executor == "in-process":
        return InProcess(args.threads)
    executor = (DaskExecutor.connect(args.scheduler, args.threads) if args.scheduler
                else DaskExecutor.local(args.workers, args.threads))
    if not args.quiet and executor.dashboard:
        print(f"Dask dashboard: {executor.dashboard}", file=sys.stderr)
    return executor


def _beside(run_file: Path) -> Path:
    return run_file.parent / f"{run_file.stem}_figures"


def _plot(args) -> int:
    from .io import read_run
    from .plotting import save_figures

    run_file = Path(args.run)
    dataset = read_run(args.run)
    _collect_from_here()
    written = save_figures(dataset, args.output or _beside(run_file), tuple(args.format), stem=run_file.stem)
    if not written:
        raise ScenarioError("no registered observer draws a figure from this run's variables", file=args.run)
    for path in written:
        print(f"wrote {path}")
    return 0


def _report(args) -> int:
    from .io import read_run
    from .report import write_report

    dataset = read_run(args.run)
    _collect_from_here()
    path = write_report(dataset, args.output or Path(args.run).with_suffix(".html"))
    print(f"wrote {path}")
    return 0


def _validate(args) -> int:
    from .scenario import load_scenario

    scenario = load_scenario(args.scenario)
    first = scenario.variants[0]
    variants = f", {len(scenario.variants)} sweep variants" if len(scenario.variants) > 1 else ""
    print(f"{args.scenario}: valid ({len(first.protocols)} protocols, {len(first.perturbations)} "
          f"perturbations{variants}, observers: {', '.join(o.name for o in first.observers)})")
    return 0


def _plugins(args) -> int:
    from .registry import default_registry

    registry = default_registry()
    records = [{"name": info.name, "version": info.version, "source": info.source, "provides": info.provides}
               for info in registry.plugins.values()]
    failures = [{"name": f.plugin, "error": f.reason} for f in registry.failures]
    if args.json:
        print(json.dumps({"plugins": records, "failed": failures}, indent=2))
        return 0
    for record in records:
        provides = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in record["provides"].items())
        print(f"{record['name']} {record['version']} [{record['source']}]\n    {provides or '(nothing)'}")
    for failure in failures:
        print(f"{failure['name']}: NOT LOADED: {failure['error']}")
    return 0


def _describe(args) -> int:
    from .parameters import parameters_of, type_name
    from .registry import default_registry

    cls = default_registry().get(args.kind, args.name)
    print(f"{args.kind} '{args.name}' ({cls.__module__}.{cls.__qualname__})\n")
    print(inspect.cleandoc(cls.__doc__ or "(no documentation)"))
    module_doc = sys.modules[cls.__module__].__doc__
    if module_doc:
        print("\n" + inspect.cleandoc(module_doc))
    params = parameters_of(cls)
    print("\nparameters:" if params else "\nparameters: none")
    for p in params:
        default = "required" if p.required else f"default {p.default!r}"
        print(f"  {p.name}: {type_name(p.annotation)} ({default})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    entry_point()
