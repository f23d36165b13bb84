"""Chrome trace-event JSON of a simulated run, so a run can be inspected in Perfetto or chrome://tracing.

Each participant (and the star's hub) is one track ("process" in the format); inside a track, each lane
("thread") holds one kind of activity: `compute` first, then one lane per link direction, so transfers that
overlap computation or each other stay readable instead of being drawn on top of each other.
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


def chrome_trace(events: Iterable[TraceEvent], track_names: Mapping[int, str] | None = None) -> dict[str, Any]:
    """The {"traceEvents": [...]} document: one "X" event per TraceEvent plus "M" events naming tracks/lanes.

    Lanes get thread ids in order of first appearance within their track, with "compute" always 0, so the
    numbering is stable for a deterministic simulation.
    """
    names = dict(track_names or {})
    lanes: dict[int, dict[str, int]] = {}
    out: list[dict[str, Any]] = []
    for ev in events:
        track_lanes = lanes.setdefault(ev.track, {"compute": 0})
        tid = track_lanes.setdefault(ev.lane, len(track_lanes))
        out.append({"name": ev.name, "cat": ev.cat, "ph": "X", "ts": ev.start_s * 1e6, "dur": ev.dur_s * 1e6,
                    "pid": ev.track, "tid": tid, "args": dict(ev.args)})
    meta: list[dict[str, Any]] = []
    for track in sorted(lanes):
        label = names.get(track, f"P{track}")
        meta.append({"name": "process_name", "ph": "M", "pid": track, "tid": 0, "args": {"name": label}})
        meta.append({"name": "process_sort_index", "ph": "M", "pid": track, "tid": 0,
                     "args": {"sort_index": track}})
        for lane, tid in lanes[track].items():
            meta.append({"name": "thread_name", "ph": "M", "pid": track, "tid": tid, "args": {"name": lane}})
    return {"traceEvents": meta + out, "displayTimeUnit": "ms"}
