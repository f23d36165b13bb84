"""The share of a 1,000-point sweep's wall time spent on aggregation (issue 12: under 10%).

The sweep runs the tiny model (`model: {name: tiny-random}`, retrieval prompts, 2 participants, 4 new tokens,
one point per seed) in this process (`--backend serial`), so that every step is timed on one clock; with a
process pool the same work is spread over the workers. Aggregation is everything the results layer does once
a run's records exist: typing them into Arrow tables, writing the run's files (config, versions, tables, DONE),
reading each run back, tidying the folder, and building the sweep's tables at the end. Timing is by wrapping
those functions from outside. The aggregation time per run over the first and the last tenth of the runs
shows whether it grows with the size of the folder (it rewrote every table after every run before).

    python3 benchmarks/bench_aggregation.py [--points 1000] [--out DIR]
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's fedsim, not an installed one

import fedsim.experiment.sweep as sweep  # noqa: E402
import fedsim.experiment.worker as worker  # noqa: E402
from fedsim.experiment.config import validate_scenario  # noqa: E402
from fedsim.experiment.results import ResultsFolder  # noqa: E402

SCENARIO = {"name": "aggregation", "model": {"name": "tiny-random"}, "task": {"kind": "retrieval"},
            "participants": {"n": 2}, "decoding": {"max_new_tokens": 4}}


class Clock:
    """Seconds spent inside wrapped calls (outermost calls only, so nested wrapped calls count once)."""

    def __init__(self) -> None:
        self.total, self.per_run, self._depth = 0.0, [], 0

    def wrap(self, fn: Callable[..., Any], per_run: bool = False) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._depth += 1
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    spent = time.perf_counter() - start
                    self.total += spent
                    if per_run:
                        self.per_run.append(spent)
        return timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--out", type=Path, help="results folder (default: a temporary one)")
    args = ap.parse_args()

    clock, writes = Clock(), Clock()
    for name in ("start_run", "read_run", "read_runs", "tidy"):
        setattr(ResultsFolder, name, clock.wrap(getattr(ResultsFolder, name)))
    ResultsFolder.finish_run = clock.wrap(writes.wrap(ResultsFolder.finish_run, per_run=True))
    worker.run_tables = clock.wrap(worker.run_tables)
    sweep.build_tables = clock.wrap(sweep.build_tables)

    scenario = validate_scenario({**SCENARIO, "sweep": {"seed": list(range(args.points))}})
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        start = time.perf_counter()
        runs = sweep.run_sweep(scenario, out_dir=out, backend="serial", progress=True)
        wall = time.perf_counter() - start
        files = sum(1 for _ in (out / scenario.name).rglob("*.parquet"))
    tenth = max(1, len(writes.per_run) // 10)
    first, last = writes.per_run[:tenth], writes.per_run[-tenth:]
    print(f"points: {args.points} ({runs.attrs['ran']} run, {runs.attrs['skipped']} already done), "
          f"{len(runs)} rows, {files} Parquet files")
    print(f"wall: {wall:.1f} s, aggregation: {clock.total:.2f} s "
          f"({clock.total / max(1, len(runs)) * 1e3:.2f} ms per run)")
    if writes.per_run:
        print(f"writing a run's files, first {tenth} runs: {sum(first) / len(first) * 1e3:.2f} ms per run, "
              f"last {tenth}: {sum(last) / len(last) * 1e3:.2f} ms per run")
    print(f"aggregation share: {clock.total / wall:.1%}")


if __name__ == "__main__":
    main()
