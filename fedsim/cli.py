"""Command line: parses arguments and calls library functions; a user mistake becomes one `error:` line.

    fedsim run SCENARIO                     one run, or the grid of the scenario's `sweep:` block
    fedsim sweep SCENARIO --set schedule.H=1,2,4,8 --set participants.n=2,4,8
    fedsim plot RESULTS_DIR                 (re)draw the plots of results/<name>
    fedsim report RESULTS_DIR               (re)write results/<name>/report.html
    fedsim profiles                         device and link profiles with their sources
    fedsim validate SCENARIO                check a scenario (and its grid) without running anything
    fedsim schema                           the scenario JSON Schema, for editors
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import fedsim
from fedsim.common.errors import UserError
from fedsim.experiment.scenario_file import load_scenario
from fedsim.experiment.sweep import BACKENDS, expand_grid, parse_set, prepare_points, results_root, run_sweep


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `fedsim` and run_sim.py; returns the exit status (2 for a user error)."""
    args = _parser().parse_args(argv)
    try:
        return args.command(args)
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; run the same command again to resume", file=sys.stderr)
        return 130
    except UserError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    axes = dict(parse_set(a) for a in args.set)
    runs = run_sweep(scenario, axes, out_dir=args.out, workers=args.workers, backend=args.backend,
                     progress=not args.no_progress)
    root = results_root(scenario, args.out)
    print(f"{runs.attrs['ran']} run(s) done, {runs.attrs['skipped']} already finished (skipped): "
          f"{root / 'runs.parquet'}, {root / 'participants.parquet'}")
    if not args.no_plots:
        _plots(root)
    if not args.no_report:
        _report(root)
    return 0


def _plot(args: argparse.Namespace) -> int:
    _plots(Path(args.results_dir))
    return 0


def _plots(root: Path) -> None:
    from fedsim.experiment.plots import plot_results  # matplotlib loads only when plots are drawn

    if paths := plot_results(root):
        print(f"{len(paths)} plot file(s) in {root / 'plots'}")
    else:
        print("no plots: no swept setting has two or more values")


def _report_command(args: argparse.Namespace) -> int:
    _report(Path(args.results_dir))
    return 0


def _report(root: Path) -> None:
    from fedsim.experiment.report import write_report

    print(f"report: {write_report(root)}")


def _schema(args: argparse.Namespace) -> int:
    from fedsim.experiment.config import Scenario

    print(json.dumps({"$schema": "https://json-schema.org/draft/2020-12/schema", **Scenario.model_json_schema()},
                     indent=2))
    return 0


def _validate(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    points = expand_grid(scenario, dict(parse_set(a) for a in args.set))
    prepare_points(points)
    print(f"ok: {args.scenario}: {len(points)} run(s) into {results_root(scenario)}")
    return 0


def _profiles(args: argparse.Namespace) -> int:
    from fedsim.sim.profiles import describe

    print(describe())
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {value})")
    return value


_EXAMPLES = {
    "": """examples:
  fedsim run scenarios/default.yaml                  four Jetsons on Wi-Fi 6, H = 1, 2, 4, 8
  fedsim run scenarios/default.yaml --set participants.n=2,8 --workers 4
  fedsim validate scenarios/retrieval.yaml           check a scenario without running it
  fedsim report results/default                      rewrite results/default/report.html
  fedsim schema > scenario.schema.json               for the editor (README: "Scenarios")
run `fedsim COMMAND --help` for a command's options.""",
    "run": """examples:
  fedsim run scenarios/default.yaml
  fedsim run scenarios/default.yaml --set schedule.H=1,8 --set network.link=wifi6,5g
  fedsim run scenarios/straggler.yaml --out /tmp/results --backend serial --no-plots""",
    "sweep": """examples:
  fedsim sweep scenarios/default.yaml --set schedule.H=1,2,4,8 --set participants.n=2,4,8
  fedsim sweep scenarios/default.yaml --set "faults.dropout=null,{probability: 0.2}" --workers 4""",
    "validate": """examples:
  fedsim validate scenarios/paper_H_sweep.yaml
  fedsim validate scenarios/default.yaml --set participants.n=2,4,8""",
    "plot": "example:\n  fedsim plot results/default",
    "report": "example:\n  fedsim report results/default     then open results/default/report.html",
    "schema": "example:\n  fedsim schema > scenario.schema.json",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedsim", description="Simulate Federated Attention over edge networks.",
                                     epilog=_EXAMPLES[""], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fedsim {fedsim.__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, epilog=_EXAMPLES.get(name),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.set_defaults(command=handler)
        return sub

    run = add("run", _run, "run a scenario (its sweep: grid if it has one), then write tables and plots")
    sweep = add("sweep", _run, "run a grid: the scenario's sweep: block plus --set axes, then tables and plots")
    for sub in (run, sweep):
        sub.add_argument("scenario", help="scenario YAML file")
        sub.add_argument("--out", metavar="DIR", help="write to DIR/<scenario name>/ (default: output_dir)")
        sub.add_argument("--workers", type=_positive_int, help="parallel runs (default: min(2, CPUs))")
        sub.add_argument("--backend", choices=BACKENDS, default="process",
                         help="process: local processes (default); serial: in this process; ray: Ray cluster")
        sub.add_argument("--no-progress", action="store_true", help="no progress bar")
        sub.add_argument("--no-plots", action="store_true", help="skip plotting (draw later with `fedsim plot`)")
        sub.add_argument("--no-report", action="store_true", help="skip report.html (write later with `fedsim report`)")
    validate = add("validate", _validate, "check a scenario and its grid without running anything")
    validate.add_argument("scenario", help="scenario YAML file")
    for sub in (run, sweep, validate):
        sub.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2,...",
                         help="add or replace a sweep axis, e.g. schedule.H=1,2,4,8 (values are YAML)")
    plot = add("plot", _plot, "draw the plots of a results folder (results/<scenario name>)")
    plot.add_argument("results_dir", help="e.g. results/default")
    report = add("report", _report_command, "write report.html: scenario, key runs, plots, traces (one page)")
    report.add_argument("results_dir", help="e.g. results/default")
    add("profiles", _profiles, "list device and link profiles with their sources")
    add("schema", _schema, "print the scenario JSON Schema (for editors: README, Scenarios)")
    return parser
