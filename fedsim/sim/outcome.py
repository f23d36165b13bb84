"""What a simulation returns: per-participant timings, traffic and work, per-block decisions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fedsim.sim.trace import TraceEvent, chrome_trace


@dataclass(frozen=True)
class ParticipantResult:
    """One participant's timings, traffic and work; NaN where that thing did not happen (dropout)."""

    participant: int
    ttft_s: float
    prefill_s: float
    prefill_compute_s: float
    prefill_wait_s: float
    prefill_comm_s: float
    decode_s_per_token: float  # mean over the full decode passes after the first token (responder only)
    decode_token_s: tuple[float, ...]
    bytes_sent: float
    bytes_received: float
    flops_prefill: float  # completed blocks
    flops_decode: float
    exposed_layers: tuple[int, ...]  # blocks whose K/V left the device
    exposed_bytes: float
    dropped: bool
    dropped_at_s: float


@dataclass(frozen=True)
class LayerResult:
    layer: int
    kind: str
    included: frozenset[int]
    decided_s: float  # simulated time at which `included` was decided
    exchange_s: float  # last sender ready to the last delivery of its K/V (NaN at a local block)


@dataclass(frozen=True)
class SimResult:
    participants: tuple[ParticipantResult, ...]
    layers: tuple[LayerResult, ...]
    hub_bytes_relayed: float
    events_processed: int
    trace_events: tuple[TraceEvent, ...]  # empty unless the run was traced
    track_names: Mapping[int, str]

    @property
    def trace(self) -> dict[str, Any] | None:
        """The Chrome trace-event document (JSON-ready), or None when the run was not traced."""
        return chrome_trace(self.trace_events, self.track_names) if self.trace_events else None
