"""`fedsim calibrate`: measure this machine as a device and its transport as links, and write them as a
profile file the simulator can use next to the shipped roofline profiles.

The device is a `MeasuredDevice` (fedsim.sim.profiles): tables of block parts and decode steps timed on the
runtime's own code, at the torch thread count a participant uses, with as many participant processes
computing at once as a run will have. Each link is the shaped (or unshaped) loopback the real runtime runs
on: one shared medium (every transmission crosses it once: `shared_medium` and `direct`), whose payload rate
and per-message latency come from K/V exchanges of several sizes, timed as a run exchanges (`measure_link`).
Calibration runs only micro-measurements: it never sees a FedAttn run, so nothing is fitted to a grid.
On a Jetson or a phone it is the same command.
"""

from __future__ import annotations

import platform
import statistics
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from fedsim.common.machine import physical_memory_bytes
from fedsim.models.loading import load_model
from fedsim.real.launch import free_port, launch
from fedsim.real.netns import shape_loopback


@dataclass(frozen=True)
class Grid:
    queries: tuple[int, ...] = (8, 32, 64, 128, 256, 512, 768, 1024)
    keys_before: tuple[int, ...] = (0, 128, 256, 512, 768, 1024, 1536)
    decode_prompt_keys: tuple[int, ...] = (16, 128, 512, 1024, 1536)
    link_sizes: tuple[int, ...] = (1536, 65536, 262144, 1048576)
    repeats: int = 7
    link_repeats: int = 30  # message delays are heavy-tailed: their mean needs more samples than a median
    exchange_repeats: tuple[int, int] = (5, 60)  # at least, at most: as many as fit in `exchange_budget_s`
    exchange_budget_s: float = 8.0  # per size and path; an exchange waits out a skew of three message times


QUICK = Grid(queries=(16, 64, 256, 768), keys_before=(0, 256, 768), decode_prompt_keys=(64, 512, 1024),
             link_sizes=(1536, 131072, 524288), repeats=3, link_repeats=15, exchange_repeats=(3, 30),
             exchange_budget_s=3.0)


def measure_device(model: str, threads: int, processes: int, grid: Grid, timeout_s: float) -> dict[str, Any]:
    """A MeasuredDevice entry: each table is the median over the `processes` ranks, measured in lockstep."""
    spec = {"kind": "device", "model": model, "threads": threads, "repeats": grid.repeats,
            "queries": list(grid.queries), "keys_before": list(grid.keys_before),
            "decode_prompt_keys": list(grid.decode_prompt_keys), "world_size": processes, "timeout_s": timeout_s}
    records = launch([{**spec, "rank": r} for r in range(processes)], master_port=free_port(),
                     timeout_s=timeout_s, threads=threads, module="fedsim.real.probe")

    def med(key: str) -> Any:
        values = [r[key] for r in records]
        if isinstance(values[0], list) and isinstance(values[0][0], list):
            return [[statistics.median(v[i][j] for v in values) for j in range(len(values[0][0]))]
                    for i in range(len(values[0]))]
        if isinstance(values[0], list):
            return [statistics.median(v[i] for v in values) for i in range(len(values[0]))]
        return statistics.median(values)

    return {"kind": "measured", "description": f"{platform.node()} ({platform.machine()}), {threads} torch "
            f"thread(s) per participant, {processes} participant(s) computing at once",
            "source": f"measured by `fedsim calibrate` on {platform.node()} on {date.today().isoformat()}",
            "model": model, "threads": threads, "processes": processes, "msg_overhead_s": 0.0,
            "mem_bytes": physical_memory_bytes(), "queries": list(grid.queries), "keys_before": list(grid.keys_before),
            "pre_s": med("pre_s"), "post_s": med("post_s"), "decode_keys": records[0]["decode_keys"],
            "decode_s": med("decode_s"), "lm_head_s": med("lm_head_s")}


def measure_link(model: str, rate_mbit: float | None, burst_kb: float, grid: Grid, timeout_s: float) -> dict[str, Any]:
    """A link entry for the loopback as shaped now (the times it was fitted to are in its note).

    The link is timed as a run uses it, in whole K/V exchanges (fedsim.real.probe.link): on a loopback every
    byte costs CPU copies, which contend with the other ranks' work, so a message timed alone would leave out
    what an exchange pays. The per-message latency and the rate come from a line through direct exchanges (one
    traversal after the later sender is ready); what an exchange through the star's relay takes beyond two
    such traversals is `relay_ms`. The times of messages alone are kept in the note."""
    shape_loopback(rate_mbit, burst_kb)
    cfg = load_model(model).cfg
    spec = {"kind": "link", "threads": 1, "repeats": grid.link_repeats, "sizes": list(grid.link_sizes),
            "exchange_repeats": list(grid.exchange_repeats), "budget_s": grid.exchange_budget_s,
            "kv_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim, "gap_s": 0.05, "world_size": 3,
            "timeout_s": timeout_s}
    records = launch([{**spec, "rank": r} for r in range(3)], master_port=free_port(), timeout_s=timeout_s,
                     threads=1, module="fedsim.real.probe")
    measured = records[0]

    def by_size(ts: dict[str, float]) -> dict[int, float]:
        return {int(size): t for size, t in ts.items()}

    alone = by_size(measured["one_way_s"])
    direct, relayed = by_size(measured["exchange_s"]["direct"]), by_size(measured["exchange_s"]["relayed"])
    rate, latency = fit_line(direct)
    relay = max(0.0, statistics.fmean(t - 2 * (latency + size / rate) for size, t in relayed.items()))
    first = measured["first_of_two"]
    spread = share_spread(first)
    what = f"loopback shaped by tbf at {rate_mbit:g} Mbit/s (burst {burst_kb:g} KB)" if rate_mbit else \
        "unshaped loopback"

    def listed(ts: dict[int, float]) -> str:
        return ", ".join(f"{size} B {t * 1e3:.3f} ms" for size, t in sorted(ts.items()))

    entry = {"description": f"{what}: one shared medium, every transmission crosses it once",
             "uplink_mbps": rate * 8 / 1e6, "downlink_mbps": rate * 8 / 1e6, "latency_ms": latency * 1e3,
             "jitter_ms": 0.0, "relay_ms": relay * 1e3, "shared_medium": True,
             "share_spread": spread, "direct": True,
             "source": f"measured by `fedsim calibrate` on {platform.node()} on {date.today().isoformat()}: "
                       "K/V exchanges through fedsim's Transport (gloo)",
             "note": "payload rate and per-message latency from a least-squares line through direct exchanges "
                     f"(the later sender ready to the last receipt): {listed(direct)}; relay_ms: the mean excess "
                     f"over two traversals of exchanges through the star's relay: {listed(relayed)}; share_spread: "
                     f"of two equal messages sent at once into one receiver, the first arrived at {first:.2f} of the "
                     f"time both took (1/2: one after the other, 1: equal shares); messages alone, one way: "
                     f"{listed(alone)}"}
    return entry


def share_spread(first_of_two: float) -> float:
    """The link's `share_spread` (sigma) under which the simulator expects `first_of_two`: two equal messages
    started together on a link that gives each a share proportional to its weight exp(sigma * N(0, 1)) finish
    at T (1 + w_min / w_max) and 2T, so the first takes E[(1 + exp(-sqrt(2) sigma |Z|)) / 2] of the time both
    take; 1 (equal shares) gives 0. Solved by bisection (the expectation falls with sigma)."""
    z = np.linspace(0.0, 8.0, 4001)
    density = np.exp(-z * z / 2)  # |Z|'s, up to a constant

    def expected(sigma: float) -> float:
        return float(np.sum((1 + np.exp(-np.sqrt(2) * sigma * z)) / 2 * density) / np.sum(density))

    low, high = 0.0, 8.0
    if first_of_two >= expected(low):
        return 0.0
    if first_of_two <= expected(high):
        return high
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if expected(mid) > first_of_two else (low, mid)
    return (low + high) / 2


def fit_line(times: dict[int, float]) -> tuple[float, float]:
    """(payload bytes/s, seconds per message) of t = latency + size / rate, least squares over the sizes."""
    xs, ys = zip(*sorted(times.items()), strict=True)
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    slope = max(slope, 1e-12)  # an unshaped loopback can be faster than the timer can tell
    return 1.0 / slope, max(0.0, my - slope * mx)


def link_name(rate_mbit: float | None) -> str:
    return f"loopback-{rate_mbit:g}mbit" if rate_mbit is not None else "loopback"

