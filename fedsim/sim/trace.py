"""Chrome trace-event JSON of a simulated run, so a run can be inspected in Perfetto or chrome://tracing.

Each participant (and the star's hub) is one track ("process" in the format); inside a track, each lane
("thread") holds one kind of activity: `compute` first, then one lane per link direction. Transfers on one
link direction can be in flight at the same time (the hub relays several messages to P1 at once), and
Perfetto drops a complete ("X") slice that partially overlaps another on its thread, so a lane is split into
as many numbered lanes as it has slices in flight at once ("-> P1", "-> P1 #2", ...): on every thread the
slices are disjoint. Times are whole nanoseconds, written in the format's microseconds ("ts", "dur"), so
the lanes are computed on exactly the numbers a viewer reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TraceEvent:
    """One completed interval of work: a compute block or one hop of one message."""

    name: str
    cat: str  # "compute" | "transfer"
    track: int  # participant index; the hub is track n_participants
    lane: str  # activity within the track, e.g. "compute", "send -> hub"
    start_s: float
    dur_s: float
    args: Mapping[str, Any] = field(default_factory=dict)


def _ns(seconds: float) -> int:
    return round(seconds * 1e9)


def _lane_numbers(events: list[TraceEvent]) -> list[int]:
    """Which numbered lane (0, 1, ...) of its (track, lane) every event goes to, so that no two slices on
    one thread overlap: per (track, lane), slices are taken in start order and each goes to the first lane
    free at its start (greedy interval partitioning: as many lanes as the most slices in flight at once)."""
    span = [(_ns(ev.start_s), _ns(ev.start_s + ev.dur_s)) for ev in events]
    order = sorted(range(len(events)), key=lambda i: (events[i].track, events[i].lane, *span[i], i))
    numbers = [0] * len(events)
    busy_until: dict[tuple[int, str], list[int]] = {}  # (track, lane) -> end (ns) of each numbered lane
    for i in order:
        start, end = span[i]
        ends = busy_until.setdefault((events[i].track, events[i].lane), [])
        k = next((k for k, until in enumerate(ends) if until <= start), len(ends))
        if k == len(ends):
            ends.append(end)
        ends[k] = end
        numbers[i] = k
    return numbers


def chrome_trace(events: Iterable[TraceEvent], track_names: Mapping[int, str] | None = None) -> dict[str, Any]:
    """The {"traceEvents": [...]} document: one "X" event per TraceEvent plus "M" events naming tracks/lanes.

    Thread ids follow the lanes' first appearance within their track ("compute" first, the numbered copies
    of a lane right after it), so the numbering is stable for a deterministic simulation.
    """
    events = list(events)
    numbers = _lane_numbers(events)
    copies: dict[int, dict[str, int]] = {}  # track -> lane -> how many numbered lanes it needs
    for ev, k in zip(events, numbers, strict=True):
        track_lanes = copies.setdefault(ev.track, {})
        track_lanes[ev.lane] = max(track_lanes.get(ev.lane, 0), k + 1)
    tids: dict[tuple[int, str, int], int] = {}
    meta: list[dict[str, Any]] = []
    for track in sorted(copies):
        label = (track_names or {}).get(track, f"P{track}")
        meta.append({"name": "process_name", "ph": "M", "ts": 0, "pid": track, "tid": 0, "args": {"name": label}})
        meta.append({"name": "process_sort_index", "ph": "M", "ts": 0, "pid": track, "tid": 0,
                     "args": {"sort_index": track}})
        in_order = sorted(copies[track], key=lambda lane: lane != "compute")  # stable: first appearance
        lanes = [(lane, k) for lane in in_order for k in range(copies[track][lane])]
        for tid, (lane, k) in enumerate(lanes):
            tids[(track, lane, k)] = tid
            name = lane if k == 0 else f"{lane} #{k + 1}"
            meta.append({"name": "thread_name", "ph": "M", "ts": 0, "pid": track, "tid": tid,
                         "args": {"name": name}})
            meta.append({"name": "thread_sort_index", "ph": "M", "ts": 0, "pid": track, "tid": tid,
                         "args": {"sort_index": tid}})
    out = []
    for ev, k in zip(events, numbers, strict=True):
        start = _ns(ev.start_s)
        out.append({"name": ev.name, "cat": ev.cat, "ph": "X", "ts": start / 1e3,
                    "dur": (_ns(ev.start_s + ev.dur_s) - start) / 1e3, "pid": ev.track,
                    "tid": tids[(ev.track, ev.lane, k)], "args": dict(ev.args)})
    return {"traceEvents": meta + out, "displayTimeUnit": "ms"}
