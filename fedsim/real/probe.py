"""Calibration probes: micro-measurements of this machine, each rank its own process (run by the launcher).

`device` probes time the runtime's own code on synthetic inputs: a block's part before the exchange
(`ParticipantPrefill.start_block`) by query count, the part after it (`finish_block`) by query count and
keys before the participant's own chunk, one decode step (`Decoder.step`) by the keys it attends, and the LM
head. Several device ranks measure in lockstep (a barrier before every point), so the tables include the
contention of that many participants computing at once. `link` probes time one message from rank 0 to rank 1
through the runtime's Transport, by size, directly and through the star's relay. Nothing here runs FedAttn on
a prompt: calibration never sees the runs it is validated against.

    python3 -m fedsim.real.probe < spec.json
"""

from __future__ import annotations

import itertools
import json
import statistics
import sys
import time
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from fedsim.fedattn.participant import Decoder, ParticipantPrefill, Slice
from fedsim.fedattn.schedule import make_schedule
from fedsim.models.loading import load_model
from fedsim.real.transport import Transport, take_relay_priority


def _mean_time(fn, repeats: int) -> float:
    """The mean, not the median: the simulator's times are expectations, and a participant sharing its cores
    with others is now and then preempted, which a median would leave out."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.fmean(times)


def device(spec: dict[str, Any]) -> dict[str, Any]:
    lm = load_model(spec["model"])
    model, cfg, repeats = lm.model, lm.cfg, spec["repeats"]
    schedule = make_schedule(cfg.n_layers, 1)
    gen = torch.Generator().manual_seed(spec["rank"])
    layers = itertools.cycle(range(cfg.n_layers))

    def kv(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.randn(1, cfg.n_kv_heads, n, cfg.head_dim, generator=gen),
                torch.randn(1, cfg.n_kv_heads, n, cfg.head_dim, generator=gen))

    def block(n_q: int, before: int) -> ParticipantPrefill:
        """A participant holding n_q tokens after `before` tokens of someone else, at the next block of a cycle
        over the model's blocks: consecutive timings read different weights, as a run does (one block's fp32
        weights, about 19 MB for SmolLM2-135M, stay in cache when a probe repeats the same block; a run's
        blocks find theirs cold)."""
        slices = [Slice(0, before), Slice(before, n_q)] if before else [Slice(0, n_q)]
        tokens = torch.randint(0, cfg.vocab_size, (n_q,), generator=gen)
        pf = ParticipantPrefill(model, tokens, len(slices) - 1, slices, schedule)
        pf.layer = next(layers)
        return pf

    pre, post = [], []
    for n_q in spec["queries"]:
        dist.barrier()
        pre.append(_mean_time(lambda n_q=n_q: block(n_q, 0).start_block(), repeats))
        row = []
        for before in spec["keys_before"]:
            received = {0: kv(before)} if before else {}
            ready = [block(n_q, before) for _ in range(repeats)]
            for pf in ready:
                pf.start_block()
            dist.barrier()
            row.append(_mean_time(lambda ready=ready, received=received: ready.pop().finish_block(received),
                                    repeats))
        post.append(row)
    decode, keys = [], []
    for held in spec["decode_prompt_keys"]:  # the same prompt keys at every block, as a sync-only responder
        pf = block(1, 0)
        pf.held = [(*kv(held), torch.arange(held)) for _ in range(cfg.n_layers)]
        pf.layer, pf.n_prompt = cfg.n_layers, held
        dec = Decoder(pf)
        dec.step(0)  # warm: the first step allocates the generated-token cache
        keys.append(cfg.n_layers * (held + 2))  # the held prompt keys, one earlier token and itself
        dist.barrier()
        decode.append(_mean_time(lambda dec=dec: dec.step(1), repeats))
    x = model.embed(torch.zeros(1, 1, dtype=torch.long))
    with torch.inference_mode():
        lm_head = _mean_time(lambda: model.logits(x[:, -1]), repeats)
    return {"pre_s": pre, "post_s": post, "decode_keys": keys, "decode_s": decode, "lm_head_s": lm_head}


def link(spec: dict[str, Any]) -> dict[str, Any]:
    """One-way time of a message of each size from rank 0 to rank 1 (same machine, same monotonic clock),
    directly and through the star's relay (rank 2, at its real-time priority as in a run), from the moment both
    ends are ready to its receipt, as the transport is used in a run: the receiver posts its receive before it
    computes, both ends have just computed (hot ends hand a message over more slowly than idle ones), and the
    mean, as the simulator's times are expectations and the delays are heavy-tailed."""
    rank, heads, dim = spec["rank"], spec["kv_heads"], spec["head_dim"]
    if rank == 2:
        take_relay_priority()
    out: dict[str, dict[str, float]] = {"direct": {}, "relayed": {}}
    for size in spec["sizes"]:
        tokens = max(1, size // (2 * heads * dim * 4))
        own = torch.zeros(2, heads, tokens, dim) if rank == 0 else None
        for path, topology in (("direct", "mesh"), ("relayed", "star")):
            net = Transport(rank, 2, topology, [tokens, tokens], heads, dim)
            spans = []
            for _ in range(spec["repeats"]):
                dist.barrier()
                stamps = torch.zeros(2, dtype=torch.float64)
                if rank == 2:
                    if topology == "star":
                        net.relay_block(0, [0])
                else:
                    net.expect(0, [0])
                    _compute(spec["gap_s"])  # the token bucket refills while the ends compute, as between blocks
                    ready = time.perf_counter()
                    net.exchange(0, own, [0])
                    stamps = torch.tensor([ready, time.perf_counter()], dtype=torch.float64)
                every = [torch.zeros(2, dtype=torch.float64) for _ in range(3)]
                dist.all_gather(every, stamps)
                spans.append(float(every[1][1] - max(every[0][0], every[1][0])))  # both ready -> received
            out[path][str(tokens * 2 * heads * dim * 4)] = statistics.fmean(spans)
    return {"one_way_s": out}


def _compute(seconds: float) -> None:
    """Busy the rank's torch thread for `seconds` with block-sized matrix products."""
    a = torch.ones(256, 576)
    w = torch.ones(576, 1536)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        a @ w


def main() -> None:
    spec = json.load(sys.stdin)
    torch.set_num_threads(spec["threads"])
    dist.init_process_group("gloo", rank=spec["rank"], world_size=spec["world_size"],
                            timeout=timedelta(seconds=spec["timeout_s"]))
    try:
        with torch.inference_mode():
            record = {"rank": spec["rank"], **(device(spec) if spec["kind"] == "device" else link(spec))}
        gathered = [None] * spec["world_size"] if spec["rank"] == 0 else None
        dist.gather_object(record, gathered, dst=0)
        if spec["rank"] == 0:
            with open(spec["records_path"], "w", encoding="utf-8") as f:
                json.dump(gathered, f)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
