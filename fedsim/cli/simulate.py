"""The simulator's commands: run, sweep, validate, plot, report, profiles, schema."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fedsim.cli.args import positive_int


def register(add) -> None:
    from fedsim.experiment.backends import BACKENDS
    from fedsim.experiment.config import MAX_RUNS

    run = add("run", _run, "run a scenario (its sweep: grid if it has one), then write tables and plots")
    sweep = add("sweep", _run, "run a grid: the scenario's sweep: block plus --set axes, then tables and plots")
    for sub in (run, sweep):
        sub.add_argument("scenario", help="scenario YAML file")
        sub.add_argument("--out", metavar="DIR", help="write to DIR/<scenario name>/ (default: output_dir)")
        sub.add_argument("--workers", type=positive_int, help="parallel runs (default: CPU cores, or the cluster's)")
        sub.add_argument("--backend", choices=BACKENDS, default="process",
                         help="process: local processes (default); dask: a Dask cluster; serial: in this process")
        sub.add_argument("--scheduler", metavar="ADDRESS",
                         help="Dask scheduler, e.g. tcp://host:8786 (default: a local cluster); run folders must "
                              "be on a filesystem all workers share")
        sub.add_argument("--no-progress", action="store_true", help="no progress bar")
        sub.add_argument("--no-plots", action="store_true", help="skip plotting (draw later with `fedsim plot`)")
        sub.add_argument("--no-report", action="store_true", help="skip report.html (write later with `fedsim report`)")
    validate = add("validate", _validate, "check a scenario and its grid without running anything")
    validate.add_argument("scenario", help="scenario YAML file")
    for sub in (run, sweep, validate):
        sub.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2,...",
                         help="add or replace a sweep axis, e.g. schedule.H=1,2,4,8 (values are YAML)")
        sub.add_argument("--max-runs", type=positive_int, default=MAX_RUNS, metavar="N",
                         help=f"refuse a grid of more than N runs (default: {MAX_RUNS})")
    plot = add("plot", _plot, "draw the plots of a results folder (results/<scenario name>)")
    plot.add_argument("results_dir", help="e.g. results/default")
    report = add("report", _report_command, "write report.html: scenario, key runs, plots, traces (one page)")
    report.add_argument("results_dir", help="e.g. results/default")
    add("profiles", _profiles, "list device and link profiles with their sources")
    add("schema", _schema, "print the scenario JSON Schema (for editors: README, Scenarios)")


def _run(args: argparse.Namespace) -> int:
    from fedsim.experiment.scenario_file import load_scenario, parse_set
    from fedsim.experiment.sweep import results_root, run_sweep

    scenario = load_scenario(args.scenario)
    axes = dict(parse_set(a) for a in args.set)
    runs = run_sweep(scenario, axes, out_dir=args.out, workers=args.workers, backend=args.backend,
                     progress=not args.no_progress, scheduler=args.scheduler, max_runs=args.max_runs)
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


def _validate(args: argparse.Namespace) -> int:
    from fedsim.experiment.scenario_file import load_scenario, parse_set
    from fedsim.experiment.sweep import validate_grid

    scenario = load_scenario(args.scenario)
    points, root = validate_grid(scenario, dict(parse_set(a) for a in args.set), args.max_runs)
    print(f"ok: {args.scenario}: {len(points)} run(s) into {root}")
    return 0


def _profiles(args: argparse.Namespace) -> int:
    from fedsim.sim.profiles import describe

    print(describe())
    return 0


def _schema(args: argparse.Namespace) -> int:
    from fedsim.experiment.config import Scenario

    print(json.dumps({"$schema": "https://json-schema.org/draft/2020-12/schema", **Scenario.model_json_schema()},
                     indent=2))
    return 0
