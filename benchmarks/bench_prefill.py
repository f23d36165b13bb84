"""Wall time of a FedAttn prefill next to a centralized `is_causal` forward of the same tokens (real model).

Both run in this process, interleaved (so that load drift hits both alike), and both end with the last
position's logits. The centralized forward is the plain model with torch's fast causal kernel
(`F.scaled_dot_product_attention(is_causal=True, enable_gqa=True)`); the FedAttn prefill has N participants
holding equal contiguous chunks and syncs every H blocks. The peak resident memory of the FedAttn prefill is
measured apart, in a fresh child process that loads the model and runs one prefill (`ru_maxrss`).

Goals (issue 12, on a quiet machine): L=8192, N=16, H=4 at most 0.7x; L=4096, N=4, H=4 at most 1.0x;
peak memory at L=32768, N=16 under 6 GB.

    python3 benchmarks/bench_prefill.py --tokens 4096 --participants 4 --H 4 [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's fedsim, not an installed one

from fedsim.fedattn.partition import partition_pieces  # noqa: E402
from fedsim.fedattn.prefill import FedAttnPrefill  # noqa: E402
from fedsim.fedattn.schedule import make_schedule  # noqa: E402
from fedsim.models.loading import load_model  # noqa: E402

MODEL = "smollm2-135m-instruct"


def prompt(n_tokens: int, vocab: int) -> torch.Tensor:
    return torch.randint(100, vocab, (n_tokens,), generator=torch.Generator().manual_seed(0))


@torch.inference_mode()
def centralized(model, tokens: torch.Tensor) -> torch.Tensor:
    """The plain causal forward, written out with torch's public fast kernel; last position's logits."""
    x = model.embed(tokens[None])
    rope = model.rope(torch.arange(len(tokens)))
    for layer in range(model.cfg.n_layers):
        q, k, v = model.qkv(layer, x, rope)
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           is_causal=True, enable_gqa=True)
        x = model.finish(layer, x, o.transpose(1, 2))
    return model.logits(x[:, -1])[0]


def fedattn(model, tokens: torch.Tensor, n_participants: int, H: int) -> torch.Tensor:
    part = partition_pieces([len(tokens)], ["question"], n_participants, "contiguous")
    return FedAttnPrefill(model, tokens, part, make_schedule(model.cfg.n_layers, H)).run().last_logits()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def child_peak(args: argparse.Namespace) -> None:
    """Run one FedAttn prefill and print this process's peak resident set size in bytes."""
    torch.set_num_threads(args.threads)
    model = load_model(MODEL).model
    fedattn(model, prompt(args.tokens, model.cfg.vocab_size), args.participants, args.H)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # Linux reports KiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--participants", type=int, default=4)
    ap.add_argument("--H", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--child-peak", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_peak:
        return child_peak(args)
    torch.set_num_threads(args.threads)
    model = load_model(MODEL).model
    tokens = prompt(args.tokens, model.cfg.vocab_size)
    runs = {"centralized": lambda: centralized(model, tokens),
            "fedattn": lambda: fedattn(model, tokens, args.participants, args.H)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            times[name].append(timed(fn))
    print(f"SmolLM2-135M-Instruct, {args.tokens} tokens, N={args.participants}, H={args.H}, "
          f"torch threads={args.threads}, {args.repeats} interleaved repeats (best / median)")
    for name, t in times.items():
        print(f"{name:12s} {min(t):8.3f} s / {statistics.median(t):8.3f} s")
    print(f"median ratio: {statistics.median(times['fedattn']) / statistics.median(times['centralized']):.2f}")
    cmd = [sys.executable, __file__, "--child-peak", "--tokens", str(args.tokens), "--participants",
           str(args.participants), "--H", str(args.H), "--threads", str(args.threads)]
    peak = int(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()[-1])
    print(f"ratio fedattn/centralized: {min(times['fedattn']) / min(times['centralized']):.2f}")
    print(f"peak_rss_gb: {peak / 1e9:.1f}")


if __name__ == "__main__":
    main()
