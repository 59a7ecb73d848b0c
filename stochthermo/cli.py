"""Command line: ``stochthermo run | validate | plugins | describe``.

Errors in the user's input print one line naming the file, the key and the problem, and exit with status
2; a run that produces a non-finite number exits with status 1. Neither writes any output file.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys

from . import __version__
from .errors import ScenarioError, SimulationError, StochthermoError
from .parameters import parameters_of, type_name
from .registry import KINDS, default_registry


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
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
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a scenario and write its Dataset (netCDF)")
    run.add_argument("scenario", help="scenario YAML file")
    run.add_argument("-o", "--output", help="netCDF file to write (default: the scenario's 'output')")
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override the scenario's device")
    run.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    run.set_defaults(handler=_run)

    validate = commands.add_parser("validate", help="check a scenario file without running it")
    validate.add_argument("scenario")
    validate.set_defaults(handler=_validate)

    plugins = commands.add_parser("plugins", help="list the registered plugins")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.set_defaults(handler=_plugins)

    describe = commands.add_parser("describe", help="documentation and parameters of one plugin class")
    describe.add_argument("kind", choices=sorted(KINDS))
    describe.add_argument("name")
    describe.set_defaults(handler=_describe)
    return parser


def _run(args) -> int:
    from .engine import simulate
    from .io import write_dataset
    from .scenario import load_scenario
    from .summary import format_summary

    scenario = load_scenario(args.scenario)
    output = args.output or scenario.output
    if not output:
        raise ScenarioError("no output file: give -o/--output or an 'output' key", file=args.scenario, key="output")
    dataset = simulate(scenario, device=args.device)
    path = write_dataset(dataset, output)
    if not args.quiet:
        print(f"scenario {scenario.name} ({args.scenario}) on {dataset.attrs['device']}, "
              f"{scenario.particles} particles, {scenario.time_steps} time steps, seeds {scenario.seeds}")
        print(format_summary(dataset))
        print(f"\nwrote {path}")
    return 0


def _validate(args) -> int:
    from .scenario import load_scenario

    scenario = load_scenario(args.scenario)
    print(f"{args.scenario}: valid ({len(scenario.protocols)} protocols, {len(scenario.perturbations)} "
          f"perturbations, observers: {', '.join(o.name for o in scenario.observers)})")
    return 0


def _plugins(args) -> int:
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
    sys.exit(main())
