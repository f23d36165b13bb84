"""Calibration probes: micro-measurements of this machine, each rank its own process (run by the launcher).

`device` probes time the runtime's own code on synthetic inputs: a block's part before the exchange
(`ParticipantPrefill.start_block`) by query count, the part after it (`finish_block`) by query count and
keys before the participant's own chunk, one decode step (`Decoder.step`) by the keys it attends, and the LM
head. Several device ranks measure in lockstep (a barrier before every point), so the tables include the
contention of that many participants computing at once. `link` probes time the runtime's Transport by size:
one message alone, whole K/V exchanges (directly and through the star's relay), and two messages at once.
Nothing here runs FedAttn on a prompt: calibration never sees the runs it is validated against.

    python3 -m fedsim.real.probe < spec.json
"""

from __future__ import annotations

import itertools
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from fedsim.fedattn.participant import Decoder, ParticipantPrefill, Slice
from fedsim.fedattn.schedule import make_schedule
from fedsim.models.loading import load_model
from fedsim.real.calibrate import fit_line
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
    """Three measurements of the transport between rank 0 and rank 1 (same machine, same monotonic clock),
    rank 2 being the star's relay (at its real-time priority, as in a run):

    - `one_way_s`: one message of each size alone, rank 0 to rank 1, from the moment both ends are ready to
      its receipt (the receiver posted its receive before computing, as in a run).
    - `exchange_s`: a whole K/V exchange of each size, as a run's participants do it, directly (mesh) and
      through the relay (star): both post their receives, compute (rank 1 for longer, so rank 0's K/V has
      arrived everywhere before rank 1 is ready), pack their K/V, exchange, and go on computing; the time from
      the later sender being ready to the last receipt. On a loopback the transport's cost is CPU time, and
      this is the load under which a run pays it: both directions at once, the ends computing around them.
    - `first_of_two`: two equal messages of the largest size sent at once by ranks 0 and 2 into rank 1, as the
      star's uploads reach the relay: when the first arrived, as a fraction of when both had (`_first_of_two`).

    Means, not medians, as the simulator's times are expectations and the delays are heavy-tailed."""
    rank, heads, dim = spec["rank"], spec["kv_heads"], spec["head_dim"]
    if rank == 2:
        take_relay_priority()
    sizes = {size: max(1, size // (2 * heads * dim * 4)) for size in spec["sizes"]}

    def nbytes(tokens: int) -> str:
        return str(tokens * 2 * heads * dim * 4)

    def timed(ready: float | None, got: float | None) -> tuple[float, float]:
        """Every rank's (ready, receipt) moments; ranks with nothing to time send zeros."""
        stamps = torch.tensor([ready or 0.0, got or 0.0], dtype=torch.float64)
        every = [torch.zeros(2, dtype=torch.float64) for _ in range(3)]
        dist.all_gather(every, stamps)
        return max(float(every[0][0]), float(every[1][0])), max(float(every[0][1]), float(every[1][1]))

    one_way: dict[str, float] = {}
    for tokens in sizes.values():
        net = Transport(rank, 2, "mesh", [tokens, tokens], heads, dim)
        own = torch.zeros(2, heads, tokens, dim)
        spans = []
        for _ in range(spec["repeats"]):
            dist.barrier()
            ready = got = None
            if rank == 1:
                net.expect(0, [0])
            if rank < 2:
                _compute(spec["gap_s"])  # the token bucket refills while the ends compute, as between blocks
                ready = time.perf_counter()
                net.exchange(0, own if rank == 0 else None, [0])
                got = time.perf_counter() if rank == 1 else None
            start, end = timed(ready, got)
            spans.append(end - start)
        one_way[nbytes(tokens)] = statistics.fmean(spans)
    rate, latency = fit_line({int(k): v for k, v in one_way.items()})

    exchange: dict[str, dict[str, float]] = {"direct": {}, "relayed": {}}
    for tokens in sizes.values():
        alone = latency + int(nbytes(tokens)) / rate
        skew = 0.01 + 3 * alone  # rank 0's K/V is everywhere (two traversals) before rank 1 is ready
        k = v = torch.zeros(heads, tokens, dim)
        for path, topology in (("direct", "mesh"), ("relayed", "star")):
            net = Transport(rank, 2, topology, [tokens, tokens], heads, dim)
            spans = []
            after = 0.01 + 2 * alone  # the post part: the other end still receives meanwhile
            for _ in _budgeted(spec, spec["gap_s"] + skew + after + 2 * alone):
                dist.barrier()
                ready = got = None
                if rank == 2:
                    if topology == "star":
                        net.relay_block(0, [0, 1])
                else:
                    net.expect(0, [0, 1])
                    _compute(spec["gap_s"] + (skew if rank == 1 else 0.0))
                    ready = time.perf_counter()
                    net.exchange(0, torch.stack([k, v]).contiguous(), [0, 1])  # packed as the worker packs
                    got = time.perf_counter()
                    _compute(after)
                start, end = timed(ready, got)
                spans.append(end - start)
            exchange[path][nbytes(tokens)] = statistics.fmean(spans)

    tokens = max(sizes.values())
    alone = latency + int(nbytes(tokens)) / rate
    firsts = []
    for _ in _budgeted(spec, spec["gap_s"] + 2 * alone):
        dist.barrier()
        start = timed(time.perf_counter(), None)[0] + spec["gap_s"]  # one moment every rank knows
        first = 0.0
        if rank == 1:
            first = _first_of_two(heads, tokens, dim, start)
        else:
            _until(start)
            dist.isend(torch.zeros(2, heads, tokens, dim), 1, tag=1 + rank).wait()
        firsts.append(timed(first, None)[0])  # rank 1's number, to every rank
    return {"one_way_s": one_way, "exchange_s": exchange, "first_of_two": statistics.fmean(firsts)}


def _first_of_two(heads: int, tokens: int, dim: int, start: float) -> float:
    """Rank 1's end of two equal messages sent at `start` by ranks 0 and 2 (the star's uploads, two senders into
    one receiver): when the first arrived, as a fraction of when both had (1/2: one after the other; 1: equal
    shares)."""
    works = [dist.irecv(torch.empty(2, heads, tokens, dim), src, tag=1 + src) for src in (0, 2)]
    with ThreadPoolExecutor(max_workers=2) as pool:  # gloo's wait releases the GIL: both are awaited at once
        done = list(pool.map(lambda work: (work.wait(), time.perf_counter())[1], works))
    return (min(done) - start) / (max(done) - start)


def _budgeted(spec: dict[str, Any], cycle_s: float) -> range:
    """As many repeats of a `cycle_s` measurement as fit in the budget, within its bounds (every rank counts
    the same: the number comes from the spec and the line fitted from what every rank gathered)."""
    least, most = spec["exchange_repeats"]
    return range(max(least, min(most, int(spec["budget_s"] / cycle_s))))


def _until(deadline: float) -> None:
    """Compute until shortly before `deadline` (a product takes a few ms), then spin until it, to the µs."""
    _compute(deadline - time.perf_counter() - 0.006)
    while time.perf_counter() < deadline:
        pass


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
