"""One participant (or the star's relay) of a real FedAttn run, as its own OS process.

A worker gets a spec (its rank, its own token ids and global offset, the schedule, the topology, decoding)
and nothing about the other participants' text or ids: it learns their slice lengths and offsets in one
small all-gather at start-up, and their K/V at the blocks where they share it. It times every phase of every
block with a monotonic clock from a common start (`_origin`, after loading the model), and rank 0 gathers
every rank's record at the end.

    python3 -m fedsim.real.worker < spec.json      # what the launcher runs, one per rank

Rendezvous is torch.distributed's usual environment: MASTER_ADDR and MASTER_PORT (and the rank and world size
from the spec). Two switches exist for tests: `FEDSIM_REAL_FAULT=rank:block` makes that rank exit abruptly at
that block (fault injection: a crashed worker must end the whole run), and `FEDSIM_REAL_AUDIT=DIR` keeps the
spec each rank received in DIR (privacy: no rank may receive another participant's tokens).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from fedsim.fedattn.participant import Decoder, ParticipantPrefill, Slice, senders_at
from fedsim.fedattn.schedule import Schedule
from fedsim.models.loading import load_model
from fedsim.real.transport import Transport, take_relay_priority


def run(spec: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Run this rank; rank 0 returns every rank's record (in rank order), the others None."""
    torch.set_num_threads(spec["threads"])
    if spec["role"] == "relay":
        take_relay_priority()
    dist.init_process_group("gloo", rank=spec["rank"], world_size=spec["world_size"],
                            timeout=timedelta(seconds=spec["timeout_s"]))
    try:
        record = _relay(spec) if spec["role"] == "relay" else _participant(spec)
        record["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        gathered = [None] * spec["world_size"] if spec["rank"] == 0 else None
        dist.gather_object(record, gathered, dst=0)
        return gathered
    finally:
        dist.destroy_process_group()


def _schedule(spec: dict[str, Any]) -> Schedule:
    s = spec["schedule"]
    return Schedule(s["n_layers"], frozenset(s["sync_layers"]), frozenset(s["publisher_layers"]))


def _slices(spec: dict[str, Any]) -> list[Slice]:
    """Everyone's (offset, length), learned from one all-gather: the only thing known of the others' prompt."""
    mine = torch.tensor([spec.get("offset", -1), len(spec.get("tokens", []))], dtype=torch.long)
    everyone = [torch.zeros(2, dtype=torch.long) for _ in range(spec["world_size"])]
    dist.all_gather(everyone, mine)
    return [Slice(int(o), int(n)) for o, n in everyone[: spec["n_participants"]]]


def _senders(schedule: Schedule, n: int, publisher: int) -> dict[int, list[int]]:
    """The ranks whose K/V is shared at each exchanging block: everyone at a sync block, the publisher at a
    publisher block (none when the participant is alone)."""
    if n < 2:
        return {}
    kinds = {layer: schedule.kind(layer) for layer in range(schedule.n_layers)}
    return {layer: list(range(n)) if kind == "sync" else [publisher]
            for layer, kind in kinds.items() if kind != "local"}


def _participant(spec: dict[str, Any]) -> dict[str, Any]:
    me, n, publisher = spec["rank"], spec["n_participants"], spec["publisher"]
    lm = load_model(spec["model"])
    schedule, slices = _schedule(spec), _slices(spec)
    cfg = lm.cfg
    net = Transport(me, n, spec["topology"], [s.length for s in slices], cfg.n_kv_heads, cfg.head_dim)
    _warm_up(lm.model, len(spec["tokens"]))
    fault = _fault_block(spec)
    senders = _senders(schedule, n, publisher)
    for layer, these in senders.items():  # every receive is posted at once: K/V flows as soon as it is sent
        net.expect(layer, these)
    t0 = _origin()

    def now() -> float:
        return time.perf_counter() - t0

    pf = ParticipantPrefill(lm.model, spec["tokens"], me, slices, schedule)
    blocks = []
    for layer in range(cfg.n_layers):
        if layer == fault:
            os._exit(3)
        kind = schedule.kind(layer)
        start = now()
        k, v = pf.start_block()
        pre_end = now()
        wanted = senders_at(kind, me, n, publisher)
        received: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        if layer in senders:
            own = torch.stack([k[0], v[0]]).contiguous() if me in senders[layer] else None
            got = net.exchange(layer, own, senders[layer])
            received = {s: (got[s][0][None], got[s][1][None]) for s in wanted}
        xchg_end = now()
        pf.finish_block(received)
        blocks.append({"layer": layer, "kind": kind, "start": start, "pre_end": pre_end, "xchg_end": xchg_end,
                       "end": now(), "sent": net.counters.per_block_sent.get(layer, 0)})
    record = {"rank": me, "role": "participant", "blocks": blocks, "prefill_end": now(),
              "bytes_sent": net.counters.bytes_sent, "bytes_received": net.counters.bytes_received,
              "messages_sent": net.counters.messages_sent, "generated": [], "decode_token_s": []}
    record.update(_decode(spec, pf, now))
    return record


def _decode(spec: dict[str, Any], pf: ParticipantPrefill, now) -> dict[str, Any]:
    """The first token comes from the prompt's last position (the publisher's); the responder decodes the rest
    from the K/V it holds. A collaborator responder receives that first token id: no K/V moves."""
    me, publisher, responder = spec["rank"], spec["publisher"], spec["responder"]
    d = spec["decode"]
    out: dict[str, Any] = {}
    if me == publisher:
        start = now()
        logits = pf.last_logits()
        first = int(logits.argmax())
        out["first_token_s"] = now() - start
        out["last_logits"] = logits.tolist() if spec.get("keep_logits") else None
        if responder != publisher:
            dist.send(torch.tensor([first]), responder)
    elif me == responder:
        got = torch.zeros(1, dtype=torch.long)
        dist.recv(got, publisher)
        first = int(got)
    if me == responder:
        out["first_token_at"] = now()
    if me != responder or d["max_new_tokens"] == 0:
        return out
    eos, tokens, starts, times = set(d["eos_ids"]), [], [], []
    token, decoder = first, Decoder(pf)
    for step in range(d["max_new_tokens"]):
        if token in eos:
            break
        tokens.append(token)
        if step == d["max_new_tokens"] - 1:
            break
        starts.append(now())
        token = int(decoder.step(token).argmax())
        times.append(now() - starts[-1])
    out.update(generated=tokens, decode_token_start=starts, decode_token_s=times, decode_end=now())
    return out


def _relay(spec: dict[str, Any]) -> dict[str, Any]:
    """The star's access point / edge server: forwards K/V, holds no prompt and runs no model."""
    n, publisher = spec["n_participants"], spec["publisher"]
    schedule, slices = _schedule(spec), _slices(spec)
    net = Transport(spec["rank"], n, "star", [s.length for s in slices], spec["kv_heads"], spec["head_dim"])
    senders = _senders(schedule, n, publisher)
    for layer, these in senders.items():
        net.expect(layer, these)
    t0 = _origin()
    for layer, these in senders.items():
        net.relay_block(layer, these)
    return {"rank": spec["rank"], "role": "relay", "bytes_sent": net.counters.bytes_sent,
            "bytes_received": net.counters.bytes_received, "end": time.perf_counter() - t0}


def _origin() -> float:
    """The common time origin of every rank's record. Ranks on one machine share its monotonic clock, so they
    take one origin (the last rank's exit from a barrier) and their times compare directly; a per-rank origin
    would be off by the barrier's exit skew (milliseconds on a busy machine), enough to misplace an exchange.
    Ranks on different machines each keep their own barrier exit."""
    dist.barrier()
    mine = (_boot_id(), time.perf_counter())
    everyone: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    return max(t for _, t in everyone) if all(b == mine[0] for b, _ in everyone) else mine[1]


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return f"{os.uname().nodename}:{os.getpid()}"  # unknown: no two processes are assumed to share a clock


def _warm_up(model, n_tokens: int) -> None:
    """Costs that no block of the prompt should be charged, paid before the clock starts, as a deployed
    participant that served an earlier prompt has paid them: the weights paged in (they are memory-mapped
    from the weight cache, and a block's first touch of them cost about 2 ms of a 12 ms SmolLM2 block here),
    and the first torch calls at this participant's size (the allocator growing, kernels' first dispatch)."""
    def blocks(n: int, layers: range) -> torch.Tensor:
        x = model.embed(torch.zeros(1, n, dtype=torch.long))
        rope, causal = model.rope(torch.arange(n)), torch.ones(n, n, dtype=torch.bool).tril()
        for layer in layers:
            x = model.finish(layer, x, model.attend(*model.qkv(layer, x, rope), causal))
        return x

    with torch.inference_mode():
        model.logits(blocks(1, range(model.cfg.n_layers))[:, -1])  # one token through every weight
        blocks(max(1, n_tokens), range(1))  # one block at this participant's size


def _fault_block(spec: dict[str, Any]) -> int | None:
    rank, _, block = os.environ.get("FEDSIM_REAL_FAULT", "").partition(":")
    return int(block) if rank and int(rank) == spec["rank"] else None


def main() -> None:
    raw = sys.stdin.read()
    spec = json.loads(raw)
    if audit := os.environ.get("FEDSIM_REAL_AUDIT"):  # keep what this process was given, for privacy tests
        with open(os.path.join(audit, f"rank{spec['rank']}.json"), "w", encoding="utf-8") as f:
            f.write(raw)
    records = run(spec)
    if records is not None:
        with open(spec["records_path"], "w", encoding="utf-8") as f:
            json.dump(records, f)


if __name__ == "__main__":
    main()
