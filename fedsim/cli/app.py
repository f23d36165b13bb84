"""Command line: parses arguments and calls library functions; whatever goes wrong is one `error:` line.

    fedsim run SCENARIO                     one run, or the grid of the scenario's `sweep:` block
    fedsim sweep SCENARIO --set schedule.H=1,2,4,8 --set participants.n=2,4,8
    fedsim validate SCENARIO                check a scenario (and its grid) without running anything
    fedsim plot RESULTS_DIR                 (re)draw the plots of results/<name>
    fedsim report RESULTS_DIR               (re)write results/<name>/report.html
    fedsim profiles                         device and link profiles with their sources
    fedsim schema                           the scenario JSON Schema, for editors
    fedsim real SCENARIO                    run it for real: one process per participant, K/V over gloo
    fedsim calibrate                        measure this machine and its loopback as profiles
    fedsim validate-timing                  the simulator's latency against real runs

Only argparse and the error type are imported up front; the rest loads inside the commands, so Ctrl-C while
modules load is the same one line as Ctrl-C during a run.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Sequence

import fedsim
from fedsim.cli import real, simulate
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


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes are one line (the usage block is what `--help` is for)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(self.prog, message, f"see `{self.prog} --help`")


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
    "real": """examples:
  fedsim real scenarios/real_smoke.yaml                        two processes on unshaped loopback
  fedsim real scenarios/real_smoke.yaml --rate-mbit 20         a 20 Mbit/s shared link (root)
  MASTER_ADDR=10.0.0.1 MASTER_PORT=29500 fedsim real scen.yaml --rank 1 --world-size 3   across machines""",
    "calibrate": """examples:
  fedsim calibrate --out calibration.yaml                      this machine, unshaped loopback
  fedsim calibrate --rate-mbit 20 --rate-mbit 100 --unshaped   and shaped links (root)""",
    "validate-timing": """examples:
  fedsim validate-timing --quick                               4 points, a few minutes (root)
  fedsim validate-timing --out docs/timing_validation          the whole grid, the docs' table and plot""",
}


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fedsim", description="Simulate Federated Attention over edge networks.",
                     epilog=_EXAMPLES[""], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fedsim {fedsim.__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def add(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, epilog=_EXAMPLES.get(name),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.set_defaults(command=handler)
        return sub

    simulate.register(add)
    real.register(add)
    return parser

