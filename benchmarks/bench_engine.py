"""Engine overhead of one scenario run: SimPy events, events per second, and the share of wall time spent
outside the torch math (goal: under 10%).

The torch math is `FedAttnLayerMath.advance` (one real transformer block for all participants, called by
the engine) plus `measure_quality` (teacher-forced logits and generation for every responder); everything
else in `run_scenario` is overhead: scenario checks, tokenising the prompt, the engine's event loop and
cost queries, the records. Timing is by wrapping those functions from outside (the run is not edited).
Each repeat gets an empty prefix cache in its RunContext, so every block really runs, as in the first run of
a sweep; the centralized reference (kept in the context, shared by a sweep's runs) is computed before the
timed repeats and reported on its own line.

    python3 benchmarks/bench_engine.py [--scenario scenarios/default.yaml] [--repeats 5] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import pstats
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import fedsim.experiment.run as runner
from fedsim.experiment.config import Scenario
from fedsim.experiment.run import RunContext
from fedsim.experiment.scenario_file import load_scenario
from fedsim.experiment.setup import RunSetup, prepare
from fedsim.experiment.sweep import expand_grid
from fedsim.fedattn.prefill import PrefixCache
from fedsim.models.loading import load_model

ROOT = Path(__file__).resolve().parent.parent


class Timers:
    """Wall time accumulated inside wrapped functions, plus the engine's event count of the last run."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.events = 0

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

        return timed


def instrument(timers: Timers) -> None:
    """Wrap the torch math, the quality measurement and the engine entry point (names the run module looks
    up at call time)."""
    runner.FedAttnLayerMath.advance = timers.wrap("advance", runner.FedAttnLayerMath.advance)
    runner.measure_quality = timers.wrap("quality", runner.measure_quality)
    simulate = timers.wrap("simulate", runner.simulate)

    def counted(*args: Any, **kwargs: Any) -> Any:
        result = simulate(*args, **kwargs)
        timers.events = result.events_processed
        return result

    runner.simulate = counted


def pick_point(path: Path, h: int | None) -> Scenario:
    """The scenario's base point: its `schedule.H` (or --H), the first value of every other sweep axis."""
    base = load_scenario(path)
    points = expand_grid(base)
    want = h if h is not None else base.schedule.H
    return next((p for p in points if p.schedule.H == want), points[0])


def one_run(sc: Scenario, setup: RunSetup, context: RunContext, timers: Timers) -> dict[str, float]:
    context.prefix_cache = PrefixCache()  # every block really runs
    timers.seconds.clear()
    start = time.perf_counter()
    runner.run_scenario(sc, setup, context)
    total = time.perf_counter() - start
    advance, quality = timers.seconds.get("advance", 0.0), timers.seconds.get("quality", 0.0)
    engine = timers.seconds.get("simulate", 0.0) - advance  # the event loop and cost queries, math excluded
    outside = total - advance - quality
    return {"total": total, "advance": advance, "quality": quality, "engine": engine, "outside": outside,
            "share": outside / total, "events": timers.events, "events_per_s": timers.events / engine}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "default.yaml")
    ap.add_argument("--H", type=int, default=None, help="pick this schedule.H point of the sweep (default: the "
                    "scenario's schedule.H)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="cProfile one more run; print the top of it")
    args = ap.parse_args()
    torch.set_num_threads(2)
    sc = pick_point(args.scenario, args.H)
    lm = load_model(sc.model.name)
    setup, context = prepare(sc), RunContext()
    start = time.perf_counter()
    context.reference(lm, setup.tokens, sc.decoding.max_new_tokens)
    ref_s = time.perf_counter() - start

    timers = Timers()
    instrument(timers)
    runner.run_scenario(sc, setup, context)  # warm-up: imports, allocator, caches of tokenizer and schedule
    runs = [one_run(sc, setup, context, timers) for _ in range(args.repeats)]

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    print(f"{args.scenario.name}: {sc.model.name}, {sc.task.kind}, N={sc.participants.n}, H={sc.schedule.H}, "
          f"{len(setup.tokens)} prompt tokens ({'/'.join(map(str, setup.prompt.partition.sizes()))}), "
          f"max_new_tokens={sc.decoding.max_new_tokens}, {sc.network.link}; torch threads 2; "
          f"median of {args.repeats} runs (min-max in brackets)")

    def line(label: str, key: str, scale: float = 1.0, unit: str = "s", fmt: str = ".3f") -> str:
        lo, hi = min(r[key] for r in runs), max(r[key] for r in runs)
        return f"  {label:<46} {med(key) * scale:{fmt}} {unit}  [{lo * scale:{fmt}}-{hi * scale:{fmt}}]"

    print(f"  {'centralized reference (once per prompt)':<46} {ref_s:.3f} s")
    print(line("run_scenario total", "total"))
    print(line("  FedAttnLayerMath.advance (torch blocks)", "advance"))
    print(line("  measure_quality (torch logits + generation)", "quality"))
    print(line("  engine event loop, math excluded", "engine", 1e3, "ms", ".1f"))
    print(line("  everything outside the torch math", "outside", 1e3, "ms", ".1f"))
    print(line("share of wall time outside the torch math", "share", 100, "%", ".1f")
          + f"   (goal < 10%: {'met' if med('share') < 0.10 else 'NOT met'})")
    print(f"  {'SimPy events processed':<46} {int(med('events'))}")
    print(line("events per second (engine time only)", "events_per_s", 1e-3, "k/s", ".0f"))

    if args.profile:
        context.prefix_cache = PrefixCache()
        prof = cProfile.Profile()
        prof.runcall(runner.run_scenario, sc, setup, context)
        print("\ncProfile of one more run, by cumulative time:")
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
