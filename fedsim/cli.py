"""Command line: parses arguments and calls library functions; user mistakes become one `error:` line.

    fedsim run SCENARIO                     one run, or the grid of the scenario's `sweep:` block
    fedsim sweep SCENARIO --set schedule.H=1,2,4,8 --set participants.n=2,4,8
    fedsim plot RESULTS_DIR                 (re)draw the plots of results/<name>
    fedsim profiles                         device and link profiles with their sources
    fedsim validate SCENARIO                check a scenario (and its grid) without running anything
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from fedsim.config import ScenarioError, load_scenario
from fedsim.plots import plot_results
from fedsim.profiles import ProfileError, load_devices, load_links
from fedsim.sweep import BACKENDS, BackendError, check_points, expand_grid, parse_set, results_root, run_sweep


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `fedsim` and run_sim.py; returns the exit status (2 for a user error)."""
    args = _parser().parse_args(argv)
    try:
        return args.command(args)
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as err:
        if not isinstance(err, _user_errors()):
            raise  # a bug: keep the traceback
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors the user can fix (scenario values only checkable against the model's depth and the prompt
    included); these modules load only when an error is being reported."""
    from fedsim.model_files import ModelFileError
    from fedsim.partition import PartitionError
    from fedsim.schedule import ScheduleError

    return ScenarioError, ProfileError, BackendError, ModelFileError, ScheduleError, PartitionError, FileNotFoundError


def _one_line(err: Exception) -> str:
    if isinstance(err, FileNotFoundError) and err.filename:
        return f"{err.filename}: no such file or directory"
    return " ".join(str(err).split())


def _run(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    axes = dict(parse_set(a) for a in args.set)
    runs = run_sweep(scenario, axes, out_dir=args.out, workers=args.workers, backend=args.backend,
                     progress=not args.no_progress)
    root = results_root(scenario, args.out)
    print(f"{runs.attrs['ran']} run(s) done, {runs.attrs['skipped']} already finished (skipped): "
          f"{root / 'runs.parquet'}, {root / 'participants.parquet'}")
    if not args.no_plots:
        _report_plots(plot_results(root), root)
    return 0


def _plot(args: argparse.Namespace) -> int:
    _report_plots(plot_results(args.results_dir), Path(args.results_dir))
    return 0


def _report_plots(paths: list[Path], root: Path) -> None:
    if paths:
        print(f"{len(paths)} plot file(s) in {root / 'plots'}")
    else:
        print("no plots: no swept setting has two or more values")


def _validate(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    points = expand_grid(scenario, dict(parse_set(a) for a in args.set))
    check_points(points)
    print(f"ok: {args.scenario}: {len(points)} run(s) into {results_root(scenario)}")
    return 0


def _profiles(args: argparse.Namespace) -> int:
    devices = [
        (d.name, f"{d.peak_flops / 1e12:g} TFLOP/s {d.precision}", f"{d.mem_bandwidth / 1e9:g} GB/s",
         f"{d.mem_bytes / 2**30:.3g} GiB", f"{d.efficiency:g}", f"{d.msg_overhead_s * 1e6:g} us", d.source)
        for d in load_devices().values()
    ]
    links = [
        (k.name, f"{k.uplink_Bps * 8 / 1e6:g} Mbit/s", f"{k.downlink_Bps * 8 / 1e6:g} Mbit/s",
         f"{k.latency_s * 1e3:g} ms", f"{k.jitter_s * 1e3:g} ms", "shared" if k.shared_medium else "dedicated",
         k.source)
        for k in load_links().values()
    ]
    _print_table("DEVICES", ("name", "peak compute", "memory bandwidth", "memory", "efficiency",
                             "per-message overhead"), devices)
    print()
    _print_table("LINKS", ("name", "uplink", "downlink", "latency (one way)", "jitter", "medium"), links)
    return 0


def _print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Aligned columns, each row's source on the line below it (sources are long citations)."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    print(title)
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for *cells, source in rows:
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
        print(f"    source: {' '.join(source.split())}")


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
    return parser
