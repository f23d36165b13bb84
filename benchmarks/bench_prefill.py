"""Wall time of a FedAttn prefill next to a plain centralized forward of the same tokens (real model).

Goal (issue 2): FedAttn with N=4, H=4 on ~600 tokens costs at most 1.3x the centralized forward. Both
compute last-position logits only; FedAttn evaluates all N participants in one batched masked pass.
Also times a second schedule sharing a prefix of blocks with the first (the sweep's prefix cache).

    python benchmarks/bench_prefill.py [--tokens 600] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fedsim.fedattn.partition import partition_pieces
from fedsim.fedattn.prefill import FedAttnPrefill, PrefixCache
from fedsim.fedattn.schedule import make_schedule
from fedsim.models.loading import load_model


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def interleaved(fns: list, repeats: int) -> list[tuple[float, float]]:
    """(best, median) per function, alternating them so that load drift hits all alike."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            times[i].append(timed(fn))
    return [(min(t), statistics.median(t)) for t in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(2)
    lm = load_model("smollm2-135m-instruct")
    tokens = torch.randint(100, lm.cfg.vocab_size, (args.tokens,), generator=torch.Generator().manual_seed(0))
    part = partition_pieces([args.tokens], ["question"], 4, "contiguous")
    sched = make_schedule(lm.cfg.n_layers, 4)

    cache = PrefixCache()
    with torch.inference_mode():
        FedAttnPrefill(lm.model, tokens, part, make_schedule(lm.cfg.n_layers, 8), cache=cache).run()
        central, fed, cached = interleaved([
            lambda: lm.model(tokens[None], last_only=True),
            lambda: FedAttnPrefill(lm.model, tokens, part, sched).run().last_logits(),
            lambda: FedAttnPrefill(lm.model, tokens, part, make_schedule(lm.cfg.n_layers, 8),
                                   cache=cache).run().last_logits(),
        ], args.repeats)
    print(f"SmolLM2-135M-Instruct, {args.tokens} tokens, torch threads=2, best/median of {args.repeats}")
    print(f"centralized forward           {central[0]:.3f} s / {central[1]:.3f} s")
    print(f"FedAttn N=4 H=4 prefill       {fed[0]:.3f} s / {fed[1]:.3f} s   ratio best {fed[0] / central[0]:.2f}x, "
          f"median {fed[1] / central[1]:.2f}x (goal <= 1.3x)")
    print(f"FedAttn N=4 H=8, prefix cached {cached[0]:.3f} s / {cached[1]:.3f} s (every block reused)")


if __name__ == "__main__":
    main()
