"""Command line: parses arguments and calls library functions; a user mistake becomes one `error:` line.

    fedsim run SCENARIO                     one run, or the grid of the scenario's `sweep:` block
    fedsim sweep SCENARIO --set schedule.H=1,2,4,8 --set participants.n=2,4,8
    fedsim plot RESULTS_DIR                 (re)draw the plots of results/<name>
    fedsim report RESULTS_DIR               (re)write results/<name>/report.html
    fedsim profiles                         device and link profiles with their sources
    fedsim validate SCENARIO                check a scenario (and its grid) without running anything
    fedsim real SCENARIO                    run it for real: one process per participant, K/V over gloo
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
from fedsim.experiment.backends import BACKENDS
from fedsim.experiment.scenario_file import load_scenario
from fedsim.experiment.sweep import expand_grid, parse_set, prepare_points, results_root, run_sweep


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
                     progress=not args.no_progress, scheduler=args.scheduler)
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


def _real(args: argparse.Namespace) -> int:
    from fedsim.experiment.real_results import measure
    from fedsim.experiment.real_run import RealOptions

    options = RealOptions(threads=args.threads, timeout_s=args.timeout, master_port=args.master_port,
                          rate_mbit=args.rate_mbit, burst_kb=args.burst_kb)
    measure(load_scenario(args.scenario), options, args.out, print, args.rank, args.world_size)
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from fedsim.experiment.timing import calibrate_machine

    rates = [None] * args.unshaped + list(args.rate_mbit or [])
    links = calibrate_machine(Path(args.out), rates, args.quick, args.timeout, model=args.model,
                              threads=args.threads, processes=args.processes, name=args.name)
    print(f"device '{args.name}' and link(s) {links} written to {args.out}; use them with "
          f"`profiles: [{args.out}]` in a scenario")
    return 0


def _validate_timing(args: argparse.Namespace) -> int:
    from fedsim.experiment.timing import report, validate_timing, write_outputs

    out = Path(args.out)
    rows = validate_timing(out, args.quick, Path(args.calibration) if args.calibration else None, args.repeats,
                           args.timeout)
    write_outputs(rows, out, "python3 run_sim.py validate-timing" + " --quick" * args.quick + f" --out {args.out}")
    print("\n".join(report(rows)))
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
        sub.add_argument("--workers", type=_positive_int, help="parallel runs (default: CPU cores, or the cluster's)")
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
    plot = add("plot", _plot, "draw the plots of a results folder (results/<scenario name>)")
    plot.add_argument("results_dir", help="e.g. results/default")
    report = add("report", _report_command, "write report.html: scenario, key runs, plots, traces (one page)")
    report.add_argument("results_dir", help="e.g. results/default")
    add("profiles", _profiles, "list device and link profiles with their sources")
    real = add("real", _real, "run a scenario for real: one OS process per participant on this machine, K/V "
               "exchanged over torch.distributed (gloo); writes the run's tables with measured times")
    real.add_argument("scenario", help="scenario YAML file (its sweep: grid is measured point by point)")
    real.add_argument("--out", metavar="DIR", help="write to DIR/<scenario name>/real/ (default: output_dir)")
    real.add_argument("--threads", type=_positive_int, default=1, help="torch threads per participant (default 1)")
    real.add_argument("--timeout", type=float, default=600.0, help="seconds before a run is abandoned (600)")
    real.add_argument("--rate-mbit", type=float, help="shape loopback to this rate in a private network "
                      "namespace (root; tbf); default: unshaped loopback")
    real.add_argument("--burst-kb", type=float, default=8.0, help="token-bucket burst for --rate-mbit (8)")
    real.add_argument("--master-port", type=int, help="rendezvous port (default: a free one)")
    real.add_argument("--rank", type=int, help="run only this rank of a run across machines (rendezvous from "
                      "MASTER_ADDR/MASTER_PORT; rank 0 writes the tables)")
    real.add_argument("--world-size", type=int, help="with --rank: participants (+1 for the star's relay)")
    cal = add("calibrate", _calibrate, "measure this machine as a device (tables of block and decode times) and "
              "its loopback transport as links, into a profile file the simulator can use")
    cal.add_argument("--out", default="calibration.yaml", help="the profile file to write (calibration.yaml)")
    cal.add_argument("--model", default="smollm2-135m-instruct", help="the model to time (smollm2-135m-instruct)")
    cal.add_argument("--name", default="this-machine", help="the device profile's name (this-machine)")
    cal.add_argument("--threads", type=_positive_int, default=1, help="torch threads per participant (1)")
    cal.add_argument("--processes", type=_positive_int, default=2,
                     help="participants computing at once on this machine during a run (2)")
    cal.add_argument("--rate-mbit", type=float, action="append", help="also calibrate loopback shaped by tbf at "
                     "this rate (root; repeatable)")
    cal.add_argument("--unshaped", action="store_true", help="calibrate unshaped loopback (the default if no "
                     "--rate-mbit is given)")
    cal.add_argument("--quick", action="store_true", help="a coarser grid with fewer repeats")
    cal.add_argument("--timeout", type=float, default=900.0, help="seconds before a probe is abandoned (900)")
    vt = add("validate-timing", _validate_timing, "run a grid for real and simulated with calibrated profiles; "
             "print measured, simulated and error per metric (root: shapes loopback in a private namespace)")
    vt.add_argument("--quick", action="store_true", help="a small subset (4 points) in a few minutes")
    vt.add_argument("--out", default="results/validate-timing", help="where the table, plot and calibration go")
    vt.add_argument("--calibration", help="an existing profile file from `fedsim calibrate` (default: calibrate "
                    "first, into --out)")
    vt.add_argument("--repeats", type=_positive_int, default=1, help="real runs per point; the median counts (1)")
    vt.add_argument("--timeout", type=float, default=600.0, help="seconds before a run is abandoned (600)")
    add("schema", _schema, "print the scenario JSON Schema (for editors: README, Scenarios)")
    return parser
