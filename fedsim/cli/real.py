"""The real runtime's commands: real, calibrate, validate-timing."""

from __future__ import annotations

import argparse
from pathlib import Path

from fedsim.cli.args import positive_int


def register(add) -> None:
    real = add("real", _real, "run a scenario for real: one OS process per participant on this machine, K/V "
               "exchanged over torch.distributed (gloo); writes the run's tables with measured times")
    real.add_argument("scenario", help="scenario YAML file (its sweep: grid is measured point by point)")
    real.add_argument("--out", metavar="DIR", help="write to DIR/<scenario name>/real/ (default: output_dir)")
    real.add_argument("--threads", type=positive_int, default=1, help="torch threads per participant (default 1)")
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
    cal.add_argument("--threads", type=positive_int, default=1, help="torch threads per participant (1)")
    cal.add_argument("--processes", type=positive_int, default=2,
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
    vt.add_argument("--repeats", type=positive_int, default=1, help="real runs per point; the median counts (1)")
    vt.add_argument("--timeout", type=float, default=600.0, help="seconds before a run is abandoned (600)")


def _real(args: argparse.Namespace) -> int:
    from fedsim.experiment.real_results import measure
    from fedsim.experiment.real_run import RealOptions
    from fedsim.experiment.scenario_file import load_scenario

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
    command = "python3 run_sim.py validate-timing" + " --quick" * args.quick + f" --repeats {args.repeats}" * (
        args.repeats != 1) + f" --out {args.out}"
    write_outputs(rows, out, command)
    print("\n".join(report(rows)))
    return 0
