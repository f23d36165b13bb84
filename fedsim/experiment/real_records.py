"""The tables of a real run, in the simulator's columns: times and bytes as measured by the worker processes,
FLOPs and memory from the same closed forms the simulator uses, quality of the responder's generation.

Measured definitions (every time is seconds from the common start after the workers loaded the model):
`prefill_s` is the end of a participant's last block; `prefill_compute_s` sums its pre and post parts;
`prefill_wait_s` (= `prefill_comm_s`) sums the time from the end of a block's pre part to the moment all the
K/V it needed had arrived; `ttft_s` is when the responder has the first token; `decode_s_per_token` is the
mean of the full passes after it. A block's `exchange_s` runs from the moment its last sender was ready to
the last participant's receipt (fedsim.sim.block.Block.exchange_span, the same definition). `kl_mean`, `top1_agree` and
`hidden_dev_last` are not measured in a real run (NaN).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from fedsim.experiment.quality import Reference
from fedsim.experiment.records import QUALITY_METRICS, summarize
from fedsim.experiment.setup import RunSetup
from fedsim.fedattn.costs import decode_step_cost, kv_bytes_per_token, layer_cost, lm_head_flops, model_weight_bytes
from fedsim.fedattn.metrics import token_overlap
from fedsim.sim.trace import TraceEvent, chrome_trace
from fedsim.workloads.registry import score


def dense_counts(setup: RunSetup, layer: int, p: int) -> tuple[int, int, int, int, int]:
    """(queries, attended pairs, own pairs, visible keys, sent tokens) of participant p at a block of a dense
    schedule: what its attention evaluates (causal by global position) and what it holds and sends."""
    part = setup.prompt.partition
    sizes = part.sizes()
    n, offset, kind = sizes[p], sum(sizes[:p]), setup.schedule.kind(layer)
    own = n * (n + 1) // 2
    if kind == "sync":
        return n, n * offset + own, own, part.n_tokens, n
    if kind == "publisher":
        pub = part.publisher
        return n, own, own, n + (0 if p == pub else sizes[pub]), n if p == pub else 0
    return n, own, own, n, 0


def decode_flops(cfg: Any, costs: list[Any], full_passes: int, prec: Any) -> float:
    """The responder's decode FLOPs as the simulator counts them: the LM head for the first token, then each
    full pass over the prompt keys it holds plus the tokens generated so far."""
    held = sum(c.kv_cache_bytes for c in costs) / kv_bytes_per_token(cfg, prec)
    return lm_head_flops(cfg) + sum(decode_step_cost(cfg, int(held) + cfg.n_layers * (g + 1), prec).flops
                                    for g in range(full_passes))


def own_sent(block: dict[str, Any], cost: Any) -> bool:
    """Whether a participant's own K/V left it at this block: it had some to share and it sent bytes."""
    return cost.send_bytes > 0 and block["sent"] > 0


def block_exchange_s(records: list[dict[str, Any]], layer: int) -> float:
    """One block's K/V exchange: from the moment its last sender had its K/V ready to the last receipt (the
    straggle before that, one participant waiting for a slower one, is compute, not communication)."""
    blocks = [r["blocks"][layer] for r in records if r["role"] == "participant"]
    ready = [b["pre_end"] for b in blocks if b["sent"] > 0]
    return max(b["xchg_end"] for b in blocks) - max(ready) if ready else math.nan


def real_tables(setup: RunSetup, records: list[dict[str, Any]], ref: Reference, cfg: Any, decode_text,
                run_id: str) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(participants, layers, summary) of one real run."""
    workers = [r for r in records if r["role"] == "participant"]
    part, prec = setup.prompt.partition, setup.precision
    weights = model_weight_bytes(cfg, prec)
    rows, layer_rows = [], []
    for p, rec in enumerate(workers):
        costs = [layer_cost(cfg, *dense_counts(setup, layer, p), prec) for layer in range(cfg.n_layers)]
        blocks = rec["blocks"]
        compute = sum(b["pre_end"] - b["start"] + b["end"] - b["xchg_end"] for b in blocks)
        wait = sum(b["xchg_end"] - b["pre_end"] for b in blocks)
        responder = p == setup.responder
        tokens = rec["decode_token_s"]
        gen = rec["generated"] if responder else None
        text = decode_text(gen) if gen is not None else ""
        kv = sum(c.kv_cache_bytes for c in costs)
        row = {
            "run_id": run_id, "participant": p, "role": "publisher" if p == part.publisher else "collaborator",
            "responder": responder, "device": "this machine", "n_prompt_tokens": part.sizes()[p],
            "ttft_s": rec.get("first_token_at", math.nan), "prefill_s": rec["prefill_end"],
            "prefill_compute_s": compute, "prefill_wait_s": wait, "prefill_comm_s": wait,
            "decode_s_per_token": sum(tokens) / len(tokens) if tokens else math.nan,
            "bytes_sent": float(rec["bytes_sent"]), "bytes_received": float(rec["bytes_received"]),
            "flops_prefill": sum(c.flops for c in costs),
            "flops_decode": decode_flops(cfg, costs, len(tokens), prec) if responder else 0.0,
            "kv_cache_bytes": kv, "peak_mem_bytes": weights + kv + max(c.peak_act_bytes for c in costs),
            # blocks where its own K/V left the device (forwarding others' K/V on a ring exposes nothing of its own)
            "exposed_layers": [b["layer"] for b, c in zip(blocks, costs, strict=True) if own_sent(b, c)],
            "exposed_bytes": sum(c.send_bytes for b, c in zip(blocks, costs, strict=True) if own_sent(b, c)),
            "dropped": False,
            "peak_rss_bytes": float(rec["peak_rss_bytes"]),
            # this machine's power is not measured: no energy for a real run
            "energy_compute_j": math.nan, "energy_radio_j": math.nan, "energy_j": math.nan,
        }
        quality = dict.fromkeys(QUALITY_METRICS, math.nan)
        if responder:
            quality.update(gen_exact_match=float(gen == ref.continuation),
                           gen_token_overlap=token_overlap(ref.continuation, gen),
                           task_correct=score(setup.prompt.task_kind, text, setup.prompt.task.answer))
        rows.append({**row, **quality, "n_generated": len(gen or []), "generated_text": text})
        for b, c in zip(blocks, costs, strict=True):
            layer_rows.append({
                "run_id": run_id, "layer": b["layer"], "participant": p, "kind": b["kind"], "included": True,
                "attended_pairs": dense_counts(setup, b["layer"], p)[1],
                "visible_keys": dense_counts(setup, b["layer"], p)[3],
                "sent_tokens": dense_counts(setup, b["layer"], p)[4], "hidden_dev": math.nan,
                "start_s": b["start"], "pre_s": b["pre_end"] - b["start"], "wait_s": b["xchg_end"] - b["pre_end"],
                "post_s": b["end"] - b["xchg_end"], "flops": c.flops})
    participants = pd.DataFrame(rows)
    summary = summarize(participants, run_id, setup.responder)
    sync = [layer for layer in range(cfg.n_layers) if setup.schedule.kind(layer) == "sync"]
    summary["exchange_s"] = (sum(block_exchange_s(records, layer) for layer in sync) / len(sync)
                             if sync and len(workers) > 1 else math.nan)
    summary["peak_rss_bytes"] = float(participants.peak_rss_bytes.max())
    return participants, pd.DataFrame(layer_rows), summary


def real_trace(records: list[dict[str, Any]]) -> dict[str, Any]:
    """A Chrome trace of the measured run: each participant's blocks and exchanges, the responder's tokens."""
    events = []
    for rec in records:
        if rec["role"] != "participant":
            continue
        p = rec["rank"]
        for b in rec["blocks"]:
            events.append(TraceEvent(f"L{b['layer']} pre", "compute", p, "compute", b["start"],
                                     b["pre_end"] - b["start"]))
            if b["xchg_end"] > b["pre_end"]:
                events.append(TraceEvent(f"L{b['layer']} exchange", "transfer", p, "exchange", b["pre_end"],
                                         b["xchg_end"] - b["pre_end"], {"bytes_sent": b["sent"]}))
            events.append(TraceEvent(f"L{b['layer']} post", "compute", p, "compute", b["xchg_end"],
                                     b["end"] - b["xchg_end"]))
        for i, (start, dur) in enumerate(zip(rec.get("decode_token_start", []), rec["decode_token_s"], strict=True)):
            events.append(TraceEvent(f"decode {i + 1}", "compute", p, "compute", start, dur))
    names = {r["rank"]: f"P{r['rank']} (measured)" for r in records if r["role"] == "participant"}
    return chrome_trace(events, names)
