"""Worked example: the engine's times and bytes for one FedAttn run of the real model, next to the same
numbers computed by hand (docs/worked_example.md shows the arithmetic).

Setup (scenarios/worked_example.yaml): SmolLM2-135M-Instruct, N=4 Jetson Orin Nano devices, a 128-token
retrieval prompt split 4 x 32 tokens, H=4 (blocks 0, 4, ..., 28 sync: 8 of 30), star topology, latency
jitter 0, run once on Wi-Fi 6 and once on 5G. The engine numbers come from `run_scenario` (records and its
trace); the hand numbers only from the profile YAML values and fedsim.fedattn.costs' closed forms, never from the
engine.

    python3 benchmarks/worked_example.py
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fedsim.experiment.config import Scenario
from fedsim.experiment.records import RunRecords
from fedsim.experiment.run import RunContext, run_scenario
from fedsim.experiment.scenario_file import load_scenario
from fedsim.experiment.setup import prepare
from fedsim.experiment.sweep import expand_grid
from fedsim.fedattn.costs import (
    Precision,
    attention_flops,
    block_weight_bytes,
    kv_bytes_per_token,
    lm_head_flops,
    model_weight_bytes,
    projection_flops,
)
from fedsim.models.loading import load_model
from fedsim.models.transformer import ModelConfig
from fedsim.sim.devices import DeviceProfile
from fedsim.sim.profiles import LinkProfile, get_device, get_link

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "worked_example.yaml"
REL_TOL = 1e-9  # engine and hand agree when they differ by less than this fraction (float rounding only)
# Times read off the Chrome trace are whole nanoseconds (fedsim/sim/trace.py): a duration there is the
# difference of two rounded times, so a sum of two is within 2 ns of the engine's exact value.
TRACE_TOL_S = 2e-9


@dataclass(frozen=True)
class Hand:
    """Every number of the worked example, from profiles and closed forms only (seconds, bytes, FLOPs)."""

    flops_pre: float
    flops_post_local: float
    flops_post_sync: list[float]  # per participant: later participants attend more keys at a sync block
    pre_s: float
    post_local_s: float
    post_sync_s: list[float]
    kv_bytes: float  # one participant's K/V at one sync block
    exchange_s: float  # one K/V exchange, everyone sending at the same moment
    compute_s: float  # one participant's whole prefill compute
    prefill_s: float
    lm_head_s: float  # first generated token: LM head on the last prompt position
    decode_step_s: list[float]  # token s = 1..n_decode-1: the whole model for one token
    ttft_s: float
    decode_mean_s: float
    energy_compute_j: float  # every participant's prefill: active power computing, idle power waiting
    energy_decode_j: float  # the responder's decode on top: active power for every token
    energy_radio_j: float  # every participant: bits sent x uplink J/bit + bits received x downlink J/bit


def roofline(dev: DeviceProfile, flops: float, nbytes: float) -> float:
    """max(FLOPs / achieved FLOP/s, bytes / memory bandwidth): written out, not DeviceProfile.compute_time."""
    return max(flops / (dev.peak_flops * dev.efficiency), nbytes / dev.mem_bandwidth)


def exchange_time(link: LinkProfile, dev: DeviceProfile, kv: float, n: int) -> float:
    """Star, everyone sends `kv` bytes at once; each receiver needs the other n-1 messages.

    Dedicated links (5G): own uplink, then the receiver's downlink carries n-1 messages side by side.
    Shared medium (Wi-Fi): one half-duplex air channel carries all n uploads, then all n(n-1) relayed copies.
    Both hops pay the one-way latency; the sender pays its per-message software overhead first.
    """
    if link.shared_medium:
        up = n * kv / link.uplink_Bps
        down = n * (n - 1) * kv / link.downlink_Bps
    else:
        up = kv / link.uplink_Bps
        down = (n - 1) * kv / link.downlink_Bps
    return dev.msg_overhead_s + up + link.latency_s + down + link.latency_s


def hand_numbers(cfg: ModelConfig, dev: DeviceProfile, link: LinkProfile, sizes: list[int], n_sync: int,
                 n_decode: int, prec: Precision = Precision()) -> Hand:
    """The worked example by hand; valid when every participant's blocks take equal time (checked)."""
    n_part, n_tok = len(sizes), sizes[0]
    total = sum(sizes)
    qkv, rest = projection_flops(cfg, n_tok)
    w_qkv, w_rest = block_weight_bytes(cfg, prec)
    kv_tok = kv_bytes_per_token(cfg, prec)
    local_pairs = n_tok * (n_tok + 1) // 2
    flops_local = rest + attention_flops(cfg, local_pairs)
    flops_sync = [rest + attention_flops(cfg, n_tok * (p * n_tok) + local_pairs) for p in range(n_part)]
    pre = roofline(dev, qkv, w_qkv)
    post_local = roofline(dev, flops_local, w_rest + n_tok * kv_tok)
    post_sync = [roofline(dev, f, w_rest + total * kv_tok) for f in flops_sync]
    if len(set(sizes)) != 1 or len(set(post_sync)) != 1:
        raise ValueError("hand formulas assume equal slices and equal sync-block times (memory-bound blocks)")
    kv = n_tok * kv_tok
    exchange = exchange_time(link, dev, kv, n_part)
    n_local = cfg.n_layers - n_sync
    compute = cfg.n_layers * pre + n_local * post_local + n_sync * post_sync[0]
    prefill = compute + n_sync * exchange
    lm_head = roofline(dev, lm_head_flops(cfg), cfg.vocab_size * cfg.d_model * prec.weight_bytes)
    # The responder (publisher) holds its own keys at local blocks and everyone's at sync blocks.
    prompt_keys = n_local * n_tok + n_sync * total
    qkv1, rest1 = projection_flops(cfg, 1)
    steps = []
    for s in range(1, n_decode):
        keys = prompt_keys + cfg.n_layers * s  # + the s generated tokens' K/V at every block
        flops = cfg.n_layers * (qkv1 + rest1) + attention_flops(cfg, keys) + lm_head_flops(cfg)
        steps.append(roofline(dev, flops, model_weight_bytes(cfg, prec) + keys * kv_tok))
    energy_compute = dev.active_power_w * compute + dev.idle_power_w * (prefill - compute)
    energy_decode = dev.active_power_w * (lm_head + sum(steps))
    bits_sent, bits_received = 8 * n_sync * kv, 8 * n_sync * (n_part - 1) * kv
    energy_radio = bits_sent * link.uplink_j_per_bit + bits_received * link.downlink_j_per_bit
    return Hand(qkv, flops_local, flops_sync, pre, post_local, post_sync, kv, exchange, compute, prefill, lm_head,
                steps, prefill + lm_head, sum(steps) / len(steps), energy_compute, energy_decode, energy_radio)


def _events(trace: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in trace["traceEvents"] if e.get("ph") == "X"]


def engine_numbers(rec: RunRecords, n_layers: int, kinds: list[str]) -> dict[str, Any]:
    """What the engine reported: records, plus per-block compute and the first exchange from its trace."""
    assert rec.trace is not None, "the scenario must set engine.trace: true"
    ev = _events(rec.trace)
    comp = {(e["pid"], e["name"]): e for e in ev if e["cat"] == "compute"}
    parts = rec.participants
    n = len(parts)
    out: dict[str, Any] = {"pre": [], "post_local": [], "post_sync": [], "flops_sync": [], "exchange": [],
                           "uniform": True}
    for p in range(n):
        pre = [comp[(p, f"L{layer} pre")]["dur"] / 1e6 for layer in range(n_layers)]
        local = [comp[(p, f"L{layer} post")]["dur"] / 1e6 for layer in range(n_layers) if kinds[layer] == "local"]
        sync = [comp[(p, f"L{layer} post")]["dur"] / 1e6 for layer in range(n_layers) if kinds[layer] == "sync"]
        out["uniform"] &= all(max(t) - min(t) <= TRACE_TOL_S for t in (pre, local, sync))
        out["pre"].append(pre[0])
        out["post_local"].append(local[0])
        out["post_sync"].append(sync[0])
        out["flops_sync"].append(comp[(p, "L0 post")]["args"]["flops"])
        l0_pre, l0_post = comp[(p, "L0 pre")], comp[(p, "L0 post")]
        out["exchange"].append((l0_post["ts"] - (l0_pre["ts"] + l0_pre["dur"])) / 1e6)
    out["flops_pre"] = comp[(0, "L0 pre")]["args"]["flops"]
    out["flops_local"] = comp[(0, "L1 post")]["args"]["flops"]
    hops = [e for e in ev if e["cat"] == "transfer" and e["name"].startswith("L0 ")]
    out["uplink_hop"] = max(e["dur"] for e in hops if e["pid"] < n) / 1e6  # sender -> hub
    out["downlink_hop"] = max(e["dur"] for e in hops if e["pid"] == n) / 1e6  # hub -> each receiver
    out["kv_bytes"] = [b / len(x) for b, x in zip(parts.exposed_bytes, parts.exposed_layers, strict=True)]
    resp = parts[parts.responder]
    out["prefill"] = parts.prefill_s.tolist()
    out["ttft"] = float(resp.ttft_s.iloc[0])
    out["decode_mean"] = float(resp.decode_s_per_token.iloc[0])
    decode = {int(m.group(1)): e["dur"] / 1e6 for e in ev if (m := re.fullmatch(r"decode (\d+)", e["name"]))}
    out["decode_steps"] = [decode[s] for s in sorted(decode)]
    out["n_decode"] = len(out["decode_steps"])
    out["bytes_sent"] = parts.bytes_sent.tolist()
    out["bytes_received"] = parts.bytes_received.tolist()
    out["answers"] = [(int(r.participant), r.role, r.generated_text, r.task_correct) for r in parts.itertuples()]
    return out


def _agree(engine: float | list[float], hand: float | list[float], abs_tol: float = 0.0) -> str:
    e = engine if isinstance(engine, list) else [engine]
    h = hand if isinstance(hand, list) else [hand] * len(e)
    ok = all(abs(a - b) <= max(REL_TOL * max(abs(a), abs(b), 1e-30), abs_tol) for a, b in zip(e, h, strict=True))
    return "agree" if ok else "DIFFER"


def _row(label: str, engine: float | list[float], hand: float | list[float], unit: str, scale: float,
         digits: int, trace: bool = False) -> str:
    """One comparison line; per-participant values that differ go on two extra lines (engine, hand). `trace`:
    the engine value is read off the trace, whole nanoseconds, and agrees within TRACE_TOL_S."""
    def values(x: float | list[float]) -> list[float]:
        return [v * scale for v in (x if isinstance(x, list) else [x])]

    e, h = values(engine), values(hand)
    verdict = _agree(engine, hand, TRACE_TOL_S if trace else 0.0) + (" (trace, to 2 ns)" if trace else "")
    if len({round(v, digits) for v in e + h}) == 1:
        return f"  {label:<48} {e[0]:>13.{digits}f} {h[0]:>13.{digits}f} {unit:<6} {verdict}"
    return (f"  {label:<48} {'':>13} {'':>13} {unit:<6} {verdict}\n"
            f"      engine {' '.join(f'{v:.{digits}f}' for v in e)}\n"
            f"      hand   {' '.join(f'{v:.{digits}f}' for v in h)}")


def report(sc: Scenario, rec: RunRecords, hand: Hand, kinds: list[str]) -> list[str]:
    """Lines comparing the engine's numbers with the hand numbers for one network."""
    link = get_link(sc.network.link)
    e = engine_numbers(rec, len(kinds), kinds)
    n = len(e["pre"])
    medium = "one shared half-duplex air channel" if link.shared_medium else "dedicated up/down links"
    lines = [
        f"== {sc.network.link}: up {link.uplink_Bps * 8 / 1e6:g} / down {link.downlink_Bps * 8 / 1e6:g} Mbit/s, "
        f"{medium}, {link.latency_s * 1e3:g} ms one way, jitter 0 ==",
        f"  {'quantity (P0 P1 P2 P3 listed where they differ)':<48} {'engine':>13} {'hand':>13}",
        _row("FLOPs, block pre (QKV), 32 tokens", e["flops_pre"], hand.flops_pre, "MFLOP", 1e-6, 3),
        _row("FLOPs, local block post", e["flops_local"], hand.flops_post_local, "MFLOP", 1e-6, 3),
        _row("FLOPs, sync block post", e["flops_sync"], hand.flops_post_sync, "MFLOP", 1e-6, 3),
        _row("compute, block pre, every block", e["pre"], hand.pre_s, "us", 1e6, 3, trace=True),
        _row("compute, local block post", e["post_local"], hand.post_local_s, "us", 1e6, 3, trace=True),
        _row("compute, sync block post", e["post_sync"], hand.post_sync_s, "us", 1e6, 3, trace=True),
        _row("compute, local block (pre + post)", [a + b for a, b in zip(e["pre"], e["post_local"], strict=True)],
             hand.pre_s + hand.post_local_s, "us", 1e6, 3, trace=True),
        _row("compute, sync block (pre + post)", [a + b for a, b in zip(e["pre"], e["post_sync"], strict=True)],
             hand.pre_s + hand.post_sync_s[0], "us", 1e6, 3, trace=True),
        f"  (every block of a kind takes the same time in the engine: {'yes' if e['uniform'] else 'NO'})",
        _row("K/V bytes per sync per participant", e["kv_bytes"], hand.kv_bytes, "B", 1, 0),
        _row("bytes sent per participant (8 syncs)", e["bytes_sent"], 8 * hand.kv_bytes, "B", 1, 0),
        _row("bytes received per participant", e["bytes_received"], 8 * (n - 1) * hand.kv_bytes, "B", 1, 0),
        _row("one K/V exchange (block 0)", e["exchange"], hand.exchange_s, "ms", 1e3, 5, trace=True),
        f"    trace: upload hop {e['uplink_hop'] * 1e3:.5f} ms, hub -> receiver hop {e['downlink_hop'] * 1e3:.5f} ms",
        _row("prefill compute per participant (30 blocks)", rec.participants.prefill_compute_s.tolist(),
             hand.compute_s, "ms", 1e3, 5),
        _row("prefill waiting per participant (8 exchanges)", rec.participants.prefill_wait_s.tolist(),
             hand.prefill_s - hand.compute_s, "ms", 1e3, 5),
        _row("prefill time (every participant)", e["prefill"], hand.prefill_s, "ms", 1e3, 5),
        _row("waiting share of the prefill", [w / t for w, t in zip(rec.participants.prefill_wait_s,
                                                                      e["prefill"], strict=True)],
             (hand.prefill_s - hand.compute_s) / hand.prefill_s, "%", 100, 1),
        _row("first token: LM head on last prompt position", e["decode_steps"][0], hand.lm_head_s, "ms", 1e3, 5,
             trace=True),
        _row("TTFT (publisher = responder)", e["ttft"], hand.ttft_s, "ms", 1e3, 5),
        _row(f"decode, tokens 2..{e['n_decode']} (whole model per token)", e["decode_steps"][1:],
             hand.decode_step_s, "ms", 1e3, 5, trace=True),
        _row(f"decode s/token (mean of tokens 2..{e['n_decode']}, as recorded)", e["decode_mean"], hand.decode_mean_s,
             "ms", 1e3, 5),
        _row("energy, device (prefill; + decode for P3)", rec.participants.energy_compute_j.tolist(),
             [hand.energy_compute_j + (hand.energy_decode_j if r else 0.0) for r in rec.participants.responder],
             "mJ", 1e3, 4),
        _row("energy, radio (bits sent and received)", rec.participants.energy_radio_j.tolist(),
             hand.energy_radio_j, "mJ", 1e3, 4),
        _row("energy, total", rec.participants.energy_j.tolist(),
             [hand.energy_compute_j + hand.energy_radio_j + (hand.energy_decode_j if r else 0.0)
              for r in rec.participants.responder], "mJ", 1e3, 4),
        "  answers (responder = each participant in turn): "
        + "; ".join(f"P{p} {text!r} {'correct' if ok == 1 else 'wrong'}" for p, _, text, ok in e["answers"]),
    ]
    return lines


def derivation(cfg: ModelConfig, dev: DeviceProfile, links: list[LinkProfile], sizes: list[int], n_sync: int,
               n_decode: int, prec: Precision = Precision()) -> list[str]:
    """The intermediate figures of docs/worked_example.md: both roofline arms of every block, the pieces of
    one exchange, the decode bytes. Hand numbers only (profiles + closed forms)."""
    n, total, n_local = sizes[0], sum(sizes), cfg.n_layers - n_sync
    achieved = dev.peak_flops * dev.efficiency
    qkv, rest = projection_flops(cfg, n)
    w_qkv, w_rest = block_weight_bytes(cfg, prec)
    kv_tok = kv_bytes_per_token(cfg, prec)
    pairs = n * (n + 1) // 2

    def arms(label: str, flops: float, nbytes: float) -> str:
        c, m = flops / achieved * 1e6, nbytes / dev.mem_bandwidth * 1e6
        return (f"  {label:<34} {flops:>13,.0f} FLOP -> {c:8.3f} us | {nbytes:>13,.0f} B -> {m:8.3f} us"
                f"  => {'memory' if m >= c else 'compute'}-bound")

    lines = [f"hand derivation (achieved {achieved:.4g} FLOP/s, memory {dev.mem_bandwidth:.4g} B/s):",
             f"  K/V per token per block 2 x {cfg.kv_dim} x {prec.kv_bytes:g} B = {kv_tok:g} B; per participant and "
             f"sync {n} x {kv_tok:g} = {n * kv_tok:,.0f} B; attention pairs of {n} own tokens {pairs}",
             arms("block pre (QKV)", qkv, w_qkv),
             arms("local block post", rest + attention_flops(cfg, pairs), w_rest + n * kv_tok)]
    for p in range(len(sizes)):
        lines.append(arms(f"sync block post P{p} ({n * p * n + pairs} pairs)",
                          rest + attention_flops(cfg, n * p * n + pairs), w_rest + total * kv_tok))
    lines.append(arms("LM head (first token)", lm_head_flops(cfg), cfg.vocab_size * cfg.d_model * prec.weight_bytes))
    keys = n_local * n + n_sync * total
    qkv1, rest1 = projection_flops(cfg, 1)
    weights = model_weight_bytes(cfg, prec)
    for s in (1, n_decode - 1):
        k = keys + cfg.n_layers * s
        lines.append(arms(f"decode token {s + 1} ({k} cached keys)",
                          cfg.n_layers * (qkv1 + rest1) + attention_flops(cfg, k) + lm_head_flops(cfg),
                          weights + k * kv_tok))
    lines.append(f"  all weights {weights:,.0f} B; publisher's prompt keys over the blocks {n_local} x {n} + "
                 f"{n_sync} x {total} = {keys}")
    kv = n * kv_tok
    for link in links:
        up_n, down_n = (len(sizes), len(sizes) * (len(sizes) - 1)) if link.shared_medium else (1, len(sizes) - 1)
        up, down = up_n * kv / link.uplink_Bps, down_n * kv / link.downlink_Bps
        lines.append(f"  exchange {link.name}: overhead {dev.msg_overhead_s * 1e3:g} ms + upload {up_n} x {kv:,.0f} B "
                     f"/ {link.uplink_Bps:,.0f} B/s = {up * 1e3:.5f} ms + latency {link.latency_s * 1e3:g} ms + "
                     f"download {down_n} x {kv:,.0f} B / {link.downlink_Bps:,.0f} B/s = {down * 1e3:.5f} ms + "
                     f"latency {link.latency_s * 1e3:g} ms = "
                     f"{(dev.msg_overhead_s + up + down + 2 * link.latency_s) * 1e3:.5f} ms")
    bits_up, bits_down = 8 * n_sync * kv, 8 * n_sync * (len(sizes) - 1) * kv
    for link in links:
        lines.append(f"  radio energy {link.name}: {bits_up:,.0f} bits sent x {link.uplink_j_per_bit * 1e9:g} nJ + "
                     f"{bits_down:,.0f} bits received x {link.downlink_j_per_bit * 1e9:g} nJ = "
                     f"{bits_up * link.uplink_j_per_bit * 1e3:.5f} + {bits_down * link.downlink_j_per_bit * 1e3:.5f}"
                     f" = {(bits_up * link.uplink_j_per_bit + bits_down * link.downlink_j_per_bit) * 1e3:.5f} mJ")
    lines.append(f"  device energy: {dev.active_power_w:g} W while computing, {dev.idle_power_w:g} W while waiting "
                 "(fedsim/sim/energy.py)")
    return lines


def main() -> None:
    torch.set_num_threads(2)
    base = load_scenario(SCENARIO)
    lm = load_model(base.model.name)
    setup, context = prepare(base), RunContext()
    sizes = setup.prompt.partition.sizes()
    prec = Precision(kv_bytes=base.model.kv_bytes_per_element)
    print(f"SmolLM2-135M-Instruct {lm.cfg.n_layers} blocks, d_model {lm.cfg.d_model}, d_ff {lm.cfg.d_ff}, "
          f"{lm.cfg.n_heads} heads x {lm.cfg.head_dim}, kv_dim {lm.cfg.kv_dim}, vocab {lm.cfg.vocab_size}; "
          f"prompt {sum(sizes)} tokens = {' + '.join(map(str, sizes))}; H={base.schedule.H}")
    ref = context.reference(lm, setup.tokens, base.decoding.max_new_tokens)
    dev = get_device(base.participants.device)
    print(f"device {dev.name}: {dev.peak_flops:.4g} FLOP/s x efficiency {dev.efficiency:g}, memory "
          f"{dev.mem_bandwidth:.4g} B/s, {dev.msg_overhead_s * 1e3:g} ms per message; "
          f"centralized answer {lm.tokenizer.decode(ref.continuation)!r} ({len(ref.continuation)} tokens)")
    points = expand_grid(base)
    n_sync = sum(setup.schedule.kind(layer) == "sync" for layer in range(lm.cfg.n_layers))
    print("\n".join(derivation(lm.cfg, dev, [get_link(p.network.link) for p in points], sizes, n_sync,
                               len(ref.continuation), prec)))
    for sc in points:
        point = prepare(sc)
        rec = run_scenario(sc, point, context)
        kinds = [point.schedule.kind(layer) for layer in range(lm.cfg.n_layers)]
        # The engine times as many decode steps as the centralized reference generated (an input, like H).
        n_decode = len(context.reference(lm, point.tokens, sc.decoding.max_new_tokens).continuation)
        hand = hand_numbers(lm.cfg, get_device(sc.participants.device), get_link(sc.network.link), sizes,
                            kinds.count("sync"), n_decode, prec)
        print()
        print("\n".join(report(sc, rec, hand, kinds)))


if __name__ == "__main__":
    main()
