"""Real runs written like simulated ones: one folder per run under `<results>/<name>/real/`, tables gathered
at that root, a Chrome trace per run, and a grid that resumes where it stopped."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from fedsim.common.errors import UserError
from fedsim.experiment.config import Scenario
from fedsim.experiment.identity import versions
from fedsim.experiment.real_run import RealOptions, RealRun, run_id, run_real
from fedsim.experiment.results import ResultsFolder, read_results
from fedsim.experiment.sweep import expand_grid, results_root
from fedsim.experiment.worker import run_tables
from fedsim.real.netns import enter_private_network, shape_loopback


def real_root(sc: Scenario, out_dir: str | Path | None = None) -> Path:
    return results_root(sc, out_dir) / "real"


def write_real(run: RealRun, sc: Scenario, options: RealOptions, root: Path) -> None:
    """One measured run into its folder, tables and trace, DONE last (the testbed's settings are columns)."""
    folder = ResultsFolder(root)
    folder.root.mkdir(parents=True, exist_ok=True)
    lock = folder.try_lock(run.run_id)
    if lock is None:
        raise UserError("--out", f"run {run.run_id} is being written by another command", "wait for it")
    try:
        resolved = sc.resolved()
        folder.start_run(run.run_id, {**resolved, "real": options.label()}, versions())
        run.summary.update({f"real.{k}": v for k, v in options.label().items()})
        folder.finish_run(run.run_id, run_tables(run.run_id, resolved, run), run.trace)
    finally:
        lock.release()


def run_real_grid(sc: Scenario, options: RealOptions, out_dir: str | Path | None = None,
                  each: Callable[[Scenario, RealRun], None] = lambda sc, run: None) -> pd.DataFrame:
    """Measure every grid point not measured yet (one real run at a time: they share the machine)."""
    root = real_root(sc, out_dir)
    ran = skipped = 0
    for point in expand_grid(sc):
        if ResultsFolder(root).is_finished(run_id(point, options)):
            skipped += 1
            continue
        run = run_real(point, options)
        write_real(run, point, options, root)
        each(point, run)
        ran += 1
    runs, _ = read_results(root)
    runs.attrs.update(ran=ran, skipped=skipped)
    return runs


def measure(sc: Scenario, options: RealOptions, out_dir: str | Path | None, say: Callable[[str], None],
            rank: int | None = None, world_size: int | None = None) -> None:
    """`fedsim real`: measure the scenario's grid on this machine, or be one rank of a run across machines."""
    root = real_root(sc, out_dir)
    if rank is not None:
        run = run_real(sc, options, rank=rank, world_size=world_size)
        if run is not None:
            write_real(run, sc, options, root)
            say(f"rank 0: measured run {run.run_id} written to {root}")
        return
    emulate_links(options)

    def report(point: Scenario, run: RealRun) -> None:
        s = run.summary
        say(f"{run.run_id}: prefill {s['prefill_s'] * 1e3:.1f} ms, TTFT {s['ttft_s'] * 1e3:.1f} ms, exchange "
            f"{s['exchange_s'] * 1e3:.2f} ms, decode {s['decode_s_per_token'] * 1e3:.2f} ms/token, sent "
            f"{s['bytes_sent_per_participant']:.0f} B/participant: {s['generated_text']!r}")

    runs = run_real_grid(sc, options, out_dir, each=report)
    say(f"{runs.attrs['ran']} real run(s) measured, {runs.attrs['skipped']} already measured (skipped): "
        f"{root / 'runs.parquet'}, {root / 'participants.parquet'}")


def emulate_links(options: RealOptions) -> None:
    """Shape this machine's loopback as the options ask, from inside a private network namespace."""
    if options.rate_mbit is not None:
        enter_private_network()
        shape_loopback(options.rate_mbit, options.burst_kb)
