"""The Chrome trace follows the trace-event format's rules, and no two slices on one thread partially overlap
(Perfetto drops such slices), also where the star's hub relays several messages to one receiver at once."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import pytest

from fedsim.sim.engine import EngineOptions, simulate
from fedsim.sim.profiles import get_device, get_link
from fedsim.sim.trace import TraceEvent, chrome_trace


def format_errors(doc: dict[str, Any]) -> list[str]:
    """What breaks the trace-event format's rules for the events fedsim writes ("X" complete events and
    "M" metadata): required keys, times in microseconds as numbers >= 0, and complete events on one thread
    (pid, tid) that are disjoint or nested, never partially overlapping. Times are compared in whole
    nanoseconds, the resolution a viewer imports them at."""
    errors = []
    threads: dict[tuple[int, int], list[tuple[int, int, str]]] = defaultdict(list)
    for i, ev in enumerate(doc["traceEvents"]):
        missing = [k for k in ("name", "ph", "ts", "pid", "tid") if k not in ev]
        if missing:
            errors.append(f"event {i} lacks {missing}")
            continue
        if ev["ph"] not in ("X", "M"):
            errors.append(f"event {i}: phase {ev['ph']!r}")
        if not isinstance(ev["ts"], (int, float)) or ev["ts"] < 0:
            errors.append(f"event {i}: ts {ev['ts']!r}")
        if ev["ph"] == "X":
            if not isinstance(ev.get("dur"), (int, float)) or ev["dur"] < 0:
                errors.append(f"event {i}: dur {ev.get('dur')!r}")
                continue
            start = round(ev["ts"] * 1e3)
            threads[(ev["pid"], ev["tid"])].append((start, start + round(ev["dur"] * 1e3), ev["name"]))
        elif ev["name"] in ("process_name", "thread_name") and not ev.get("args", {}).get("name"):
            errors.append(f"event {i}: {ev['name']} without args.name")
    for thread, slices in threads.items():
        open_ends: list[tuple[int, str]] = []  # the stack of enclosing slices
        for start, end, name in sorted(slices, key=lambda s: (s[0], -s[1])):
            while open_ends and open_ends[-1][0] <= start:
                open_ends.pop()
            if open_ends and end > open_ends[-1][0]:
                errors.append(f"thread {thread}: {name!r} [{start}, {end}] ns partially overlaps "
                              f"{open_ends[-1][1]!r} ending at {open_ends[-1][0]} ns")
            open_ends.append((end, name))
    return errors


def test_the_checker_catches_a_partial_overlap_and_accepts_nesting() -> None:
    def doc(*spans: tuple[float, float]) -> dict[str, Any]:
        return {"traceEvents": [{"name": f"s{i}", "ph": "X", "ts": a, "dur": d, "pid": 0, "tid": 0}
                                for i, (a, d) in enumerate(spans)]}

    assert format_errors(doc((0, 10), (2, 3), (10, 5))) == []  # nested, then touching
    assert len(format_errors(doc((0, 10), (5, 10)))) == 1
    assert format_errors({"traceEvents": [{"name": "x", "ph": "X", "ts": 0, "pid": 0}]})


def test_overlapping_transfers_on_one_lane_get_numbered_lanes() -> None:
    spans = {"a": (0.0, 2e-3), "b": (1e-3, 2e-3), "c": (2e-3, 1e-3), "d": (2.5e-3, 1e-3)}
    events = [TraceEvent(name, "transfer", 2, "-> P1", *span) for name, span in spans.items()]
    events.append(TraceEvent("L0 pre", "compute", 0, "compute", 0.0, 1.5e-6))
    doc = json.loads(json.dumps(chrome_trace(events, {2: "hub"})))
    assert format_errors(doc) == []
    lanes = {(e["pid"], e["tid"]): e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "thread_name"}
    by_name = {e["name"]: lanes[(e["pid"], e["tid"])] for e in doc["traceEvents"] if e["ph"] == "X"}
    # a, then c once a is over; b next to them; d starts while b and c are both still in flight
    assert by_name == {"a": "-> P1", "b": "-> P1 #2", "c": "-> P1", "d": "-> P1 #3", "L0 pre": "compute"}
    assert lanes[(0, 0)] == "compute" and lanes[(2, 0)] == "-> P1"
    pre = next(e for e in doc["traceEvents"] if e["name"] == "L0 pre")
    assert (pre["ts"], pre["dur"]) == (0.0, 1.5)  # microseconds


@dataclass(frozen=True)
class _Cost:
    flops_pre: float
    flops_post: float
    flops_post_own: float
    bytes_pre: float
    bytes_post: float
    send_bytes: float


class _SyncEveryOther:
    """SmolLM2-like block costs (32 tokens a participant, memory-bound) with a K/V exchange every 2 blocks."""

    n_layers = 12

    def __init__(self, n: int) -> None:
        self.n_participants = n

    def layer_kind(self, layer: int) -> str:
        return "sync" if layer % 2 == 0 else "local"

    def layer_cost(self, layer: int, participant: int, included: frozenset[int]) -> _Cost:
        return _Cost(1.5e7, 6e7, 1e6, 1.1e6, 6e6, 24576.0 if layer % 2 == 0 else 0.0)

    def advance(self, layer: int, included: frozenset[int]) -> None:
        pass

    def decode_step_cost(self, step: int) -> _Cost:
        return _Cost(0.0, 2.7e8, 0.0, 0.0, 2.7e8, 0.0)


@pytest.mark.parametrize("n", [4, 8])
@pytest.mark.parametrize("seed", [0, 1])
def test_star_topology_trace_on_wifi6_has_no_partial_overlap(n: int, seed: int) -> None:
    """Jittered Wi-Fi 6 through one access point: the hub relays up to n-1 messages to a receiver at once."""
    result = simulate(_SyncEveryOther(n), [get_device("jetson-orin-nano")] * n, [get_link("wifi6")] * n,
                      EngineOptions(publisher=n - 1, responder=n - 1, n_decode=3, seed=seed, trace=True))
    doc = json.loads(json.dumps(result.trace, allow_nan=False))
    assert format_errors(doc) == []
    hub_lanes = {e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "thread_name" and e["pid"] == n}
    assert any("#" in lane for lane in hub_lanes)  # concurrent relays really happened, on lanes of their own
    transfers = [e for e in doc["traceEvents"] if e["ph"] == "X" and e["cat"] == "transfer"]
    assert len(transfers) == (n_sync := 6) * n * n  # every upload and every relayed copy is drawn
    assert n_sync * n * (n - 1) == sum(e["pid"] == n for e in transfers)
    compute = {(e.track, e.name): e for e in result.trace_events if e.cat == "compute"}
    for ev in doc["traceEvents"]:
        if ev["ph"] == "X" and ev["cat"] == "compute":  # microseconds, to the nanosecond
            src = compute[(ev["pid"], ev["name"])]
            assert ev["ts"] == pytest.approx(src.start_s * 1e6, abs=1e-3)
            assert ev["dur"] == pytest.approx(src.dur_s * 1e6, abs=2e-3)
