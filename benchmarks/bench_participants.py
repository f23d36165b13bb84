"""Wall time of one whole run (engine, FedAttn math, every participant's quality as a responder) of the default
scenario (7-shot GSM8K, SmolLM2-135M-Instruct, H=4) with 4 and with 64 participants, in one process.

Each run starts from a fresh run context (its own centralized reference, no prefix cache), as a single
`fedsim run` does; the model is loaded once beforehand. Runs alternate (N=4, N=64, N=4, ...) so that load
drift hits both alike; the best of `--repeats` is reported. Goal (issue 12): N=64 costs at most 3x N=4.

    python3 benchmarks/bench_participants.py [--repeats 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's fedsim, not an installed one

from fedsim.experiment.config import validate_scenario  # noqa: E402
from fedsim.experiment.run import RunContext, run_scenario  # noqa: E402
from fedsim.experiment.setup import prepare  # noqa: E402
from fedsim.models.loading import load_model  # noqa: E402

SIZES = (4, 64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_model("smollm2-135m-instruct")
    scenarios = {n: validate_scenario({"task": {"kind": "gsm8k", "shots": 7}, "participants": {"n": n},
                                       "schedule": {"H": 4}}) for n in SIZES}
    setups = {n: prepare(sc) for n, sc in scenarios.items()}
    times: dict[int, list[float]] = {n: [] for n in SIZES}
    for _ in range(args.repeats):
        for n in SIZES:
            start = time.perf_counter()
            run_scenario(scenarios[n], setups[n], RunContext())
            times[n].append(time.perf_counter() - start)
    print(f"default scenario (7-shot GSM8K, {len(setups[4].tokens)} prompt tokens, H=4), torch threads="
          f"{args.threads}, {args.repeats} alternating repeats (best / median)")
    for n, t in times.items():
        print(f"N={n:<3d} {min(t):8.2f} s / {statistics.median(t):8.2f} s")
    print(f"ratio N64/N4: {min(times[64]) / min(times[4]):.2f}")


if __name__ == "__main__":
    main()
