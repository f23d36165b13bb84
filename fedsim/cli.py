"""Command line: parses arguments and calls library functions; whatever goes wrong is one `error:` line.

    fedsim run SCENARIO                     one run, or the grid of the scenario's `sweep:` block
    fedsim sweep SCENARIO --set schedule.H=1,2,4,8 --set participants.n=2,4,8
    fedsim plot RESULTS_DIR                 (re)draw the plots of results/<name>
    fedsim profiles                         device and link profiles with their sources
    fedsim validate SCENARIO                check a scenario (and its grid) without running anything

Only argparse and the error type are imported up front; the rest loads inside `main`, so Ctrl-C while
modules load is the same one line as Ctrl-C during a run.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from fedsim.common.errors import UserError
from fedsim.common.interrupts import interrupts_to_main_thread

INTERRUPTED = "interrupted: finished runs are kept; run the same command again to resume"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `fedsim` and run_sim.py; returns the exit status (2: a user or OS error, 130: Ctrl-C,
    1: a fault in fedsim itself, still one line)."""
    try:
        with interrupts_to_main_thread():
            args = _parser().parse_args(argv)
            return args.command(args)
    except KeyboardInterrupt:
        return _fail(INTERRUPTED, 130, prefix="")
    except UserError as err:
        return _fail(str(err), 2)
    except OSError as err:  # here or in a worker process: a path, a permission, a full disk
        return _fail(_os_error(err), 2)
    except RecursionError:
        return _fail("input nested too deeply to process; simplify the scenario", 2)
    except MemoryError:
        return _fail("out of memory; run fewer or smaller runs at once (--workers 1, a shorter prompt)", 2)
    except Exception as err:  # a bug in fedsim: still one line, never a traceback
        return _fail(f"internal error: {type(err).__name__}: {err}; please report it with the command you ran", 1)


def _fail(message: str, code: int, prefix: str = "error: ") -> int:
    """One line: whitespace collapsed, and any word over 100 characters (a pasted value) cut in the middle."""
    words = [w if len(w) <= 100 else f"{w[:40]}...({len(w):,} characters)...{w[-30:]}" for w in str(message).split()]
    print(prefix + " ".join(words), file=sys.stderr)
    return code


def _os_error(err: OSError) -> str:
    where = err.filename if err.filename is not None else "a file"
    fix = {errno.ENOSPC: "free some disk space", errno.ENAMETOOLONG: "use shorter names",
           errno.ELOOP: "fix or remove the symbolic link", errno.EROFS: "choose another folder with --out",
           errno.EACCES: "check permissions or choose another folder with --out",
           errno.EPERM: "check permissions or choose another folder with --out"}
    return f"{where}: {(err.strerror or str(err)).lower()}; {fix.get(err.errno or 0, 'check the path')}"


def _run(args: argparse.Namespace) -> int:
    from fedsim.experiment.config import check_grid_size
    from fedsim.experiment.scenario_file import load_scenario
    from fedsim.experiment.sweep import parse_set, results_root, run_sweep

    scenario = load_scenario(args.scenario)
    axes = dict(parse_set(a) for a in args.set)
    check_grid_size(scenario, axes, args.max_runs)
    runs = run_sweep(scenario, axes, out_dir=args.out, workers=args.workers, backend=args.backend,
                     progress=not args.no_progress)
    root = results_root(scenario, args.out)
    print(f"{runs.attrs['ran']} run(s) done, {runs.attrs['skipped']} already finished (skipped): "
          f"{root / 'runs.parquet'}, {root / 'participants.parquet'}")
    if not args.no_plots:
        _plots(root)
    return 0


def _plot(args: argparse.Namespace) -> int:
    from fedsim.experiment.destination import check_destination

    root = Path(args.results_dir)
    check_destination(root, "RESULTS_DIR")
    _plots(root)
    return 0


def _plots(root: Path) -> None:
    from fedsim.experiment.plots import plot_results  # matplotlib loads only when plots are drawn

    if paths := plot_results(root):
        print(f"{len(paths)} plot file(s) in {root / 'plots'}")
    else:
        print("no plots: no swept setting has two or more values")


def _validate(args: argparse.Namespace) -> int:
    from fedsim.experiment.config import check_grid_size
    from fedsim.experiment.destination import check_destination
    from fedsim.experiment.scenario_file import load_scenario
    from fedsim.experiment.sweep import expand_grid, parse_set, prepare_points, results_root

    scenario = load_scenario(args.scenario)
    axes = dict(parse_set(a) for a in args.set)
    check_grid_size(scenario, axes, args.max_runs)
    points = expand_grid(scenario, axes)
    prepare_points(points)
    check_destination(results_root(scenario), "output_dir")
    print(f"ok: {args.scenario}: {len(points)} run(s) into {results_root(scenario)}")
    return 0


def _profiles(args: argparse.Namespace) -> int:
    from fedsim.sim.profiles import describe

    print(describe())
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1 (got {text[:30]!r})") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {value})")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes are one line (the usage block is what `--help` is for)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(self.prog, message, f"see `{self.prog} --help`")


def _parser() -> argparse.ArgumentParser:
    from fedsim.experiment.config import MAX_RUNS
    from fedsim.experiment.sweep import BACKENDS

    parser = _Parser(prog="fedsim", description="Simulate Federated Attention over edge networks.")
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
    for sub in (run, sweep, validate):
        sub.add_argument("--max-runs", type=_positive_int, default=MAX_RUNS, metavar="N",
                         help=f"refuse a grid of more than N runs (default: {MAX_RUNS})")
    plot = add("plot", _plot, "draw the plots of a results folder (results/<scenario name>)")
    plot.add_argument("results_dir", help="e.g. results/default")
    add("profiles", _profiles, "list device and link profiles with their sources")
    return parser
