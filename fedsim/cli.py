"""Command line: parses arguments and calls library functions; a user mistake becomes one `error:` line.

    fedsim run SCENARIO                     one run, or the grid of the scenario's `sweep:` block
    fedsim sweep SCENARIO --set schedule.H=1,2,4,8 --set participants.n=2,4,8
    fedsim plot RESULTS_DIR                 (re)draw the plots of results/<name>
    fedsim profiles                         device and link profiles with their sources
    fedsim validate SCENARIO                check a scenario (and its grid) without running anything
    fedsim real SCENARIO                    run it for real: one process per participant, K/V over gloo
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

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
    from fedsim.experiment.real_results import emulate_links, real_root, run_real_grid, write_real
    from fedsim.experiment.real_run import RealOptions, run_real

    scenario = load_scenario(args.scenario)
    options = RealOptions(threads=args.threads, timeout_s=args.timeout, master_port=args.master_port,
                          rate_mbit=args.rate_mbit, burst_kb=args.burst_kb)
    if args.rank is not None:  # one rank of a run across machines
        run = run_real(scenario, options, rank=args.rank, world_size=args.world_size)
        if run is not None:
            write_real(run, scenario, options, real_root(scenario, args.out))
            print(f"rank 0: measured run {run.run_id} written to {real_root(scenario, args.out)}")
        return 0
    emulate_links(options)

    def report(point, run) -> None:
        s = run.summary
        print(f"{run.run_id}: prefill {s['prefill_s'] * 1e3:.1f} ms, TTFT {s['ttft_s'] * 1e3:.1f} ms, "
              f"exchange {s['exchange_s'] * 1e3:.2f} ms, decode {s['decode_s_per_token'] * 1e3:.2f} ms/token, "
              f"sent {s['bytes_sent_per_participant']:.0f} B/participant: {s['generated_text']!r}")

    runs = run_real_grid(scenario, options, args.out, each=report)
    root = real_root(scenario, args.out)
    print(f"{runs.attrs['ran']} real run(s) measured, {runs.attrs['skipped']} already measured (skipped): "
          f"{root / 'runs.parquet'}, {root / 'participants.parquet'}")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {value})")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedsim", description="Simulate Federated Attention over edge networks.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
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
    run.set_defaults(set=[])
    validate = add("validate", _validate, "check a scenario and its grid without running anything")
    validate.add_argument("scenario", help="scenario YAML file")
    for sub in (sweep, validate):
        sub.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2,...",
                         help="add or replace a sweep axis, e.g. schedule.H=1,2,4,8 (values are YAML)")
    plot = add("plot", _plot, "draw the plots of a results folder (results/<scenario name>)")
    plot.add_argument("results_dir", help="e.g. results/default")
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
    return parser
