"""Processor-sharing transmitters: the channels every network hop is served by.

Every transmitter (a dedicated uplink or downlink, or the one
Wi-Fi air channel) serves all its active transmissions at once, each at the same byte rate x, with x
chosen so the channel is fully used: sum over transmissions of x / rate_f = 1. On a dedicated link
that is an equal split (k flows get rate/k each, like TCP fair share). On a shared medium each
transmission occupies the air at its own station's PHY-level rate, so equal throughput means a slow
station takes more airtime (802.11's well-known "performance anomaly"), which is what DCF's per-frame
fairness does. We chose fluid processor sharing over a FIFO Resource served in chunks because it is
work-conserving and chunk-size free: two equal simultaneous senders finish exactly together at twice
the single-sender time, instead of one finishing early depending on the chunk order.

Shares can be uneven: a transmission of weight w gets w times the byte rate of one of weight 1 (weighted
processor sharing, still work-conserving). A link's `share_spread` draws each transmission's weight at random
(fedsim/sim/network.py): TCP flows through one queue, as on a token-bucket-shaped loopback, do not split it
evenly, and which one gets ahead changes from message to message. Equal weights are the fair share above.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Sequence

import simpy

from fedsim.sim.profiles import LinkProfile

# A transmission with less than this fraction of its bytes left is complete: absorbs float rounding of
# rate x time, far below any timing resolution that matters (1e-9 of a transfer time).
_DONE_TOL = 1e-9


class Rate:
    """Byte rate of one transmission over time: nominal rate x the link's rate trace (the slowest link's,
    for a multicast frame that every receiver must decode)."""

    __slots__ = ("_parts",)

    def __init__(self, parts: Sequence[tuple[float, LinkProfile]]):
        self._parts = tuple(parts)

    def at(self, t: float) -> float:
        return min(bps * link.rate_factor(t) for bps, link in self._parts)

    def next_change(self, t: float) -> float:
        """First trace breakpoint strictly after t (inf if none): the rate is constant until then."""
        nxt = math.inf
        for _, link in self._parts:
            i = bisect.bisect_right(link.rate_trace, t, key=lambda point: point[0])
            if i < len(link.rate_trace):
                nxt = min(nxt, link.rate_trace[i][0])
        return nxt


class Flow:
    """One chunk being transmitted on a channel."""

    __slots__ = ("size", "rate", "weight", "inv", "tag", "served", "done")

    def __init__(self, env: simpy.Environment, size: float, rate: Rate, weight: float = 1.0):
        self.size = size
        self.rate = rate
        self.weight = weight  # its share relative to the others' (1: an equal share)
        self.inv = 0.0  # seconds of channel time per unit of the service clock at the current rate
        self.tag = 0.0  # value of the channel's service clock at which this flow is complete
        self.served = 0.0  # bytes that left, once done or cancelled
        self.done = env.event()  # succeeds with the size once every byte is on the wire


class Channel:
    """A processor-sharing transmitter (see the module docstring): every active flow progresses at its weight
    times one common rate x = 1 / sum_f w_f/rate_f(t). Because the rate is common, one service clock `v`
    (bytes served to a flow of weight 1 since the channel was last idle) tracks every flow: a flow of weight w
    added at clock v0 with b bytes completes when v reaches v0 + b/w. Re-planned at every arrival, completion and rate
    breakpoint, so completion times are exact for piecewise-constant rates; each event costs O(log flows)."""

    def __init__(self, env: simpy.Environment):
        self._env = env
        self._active: dict[Flow, None] = {}  # insertion-ordered set
        self._heap: list[tuple[float, int, Flow]] = []  # (tag, sequence, flow); cancelled flows skipped
        self._seq = 0
        self._v = 0.0
        self._t = 0.0  # time up to which `_v` is accounted
        self._speed = 0.0  # current common byte rate
        self._inv_sum = 0.0  # sum of the active flows' `inv`
        self._next_change = math.inf  # first rate breakpoint among the active flows
        self._plan = 0  # id of the current wake-up; older wake-ups are stale

    def transmit(self, nbytes: float, rate: Rate, weight: float = 1.0) -> Flow:
        """Start sending `nbytes` now; `weight` scales this transmission's share against the others'."""
        flow = Flow(self._env, nbytes, rate, weight)
        now = self._env.now
        if nbytes <= 0 or math.isinf(rate.at(now)):
            flow.served = nbytes
            flow.done.succeed(nbytes)
            return flow
        self._settle()
        flow.inv = weight / rate.at(now)
        flow.tag = self._v + nbytes / weight
        heapq.heappush(self._heap, (flow.tag, self._seq, flow))
        self._seq += 1
        self._active[flow] = None
        self._inv_sum += flow.inv
        self._next_change = min(self._next_change, rate.next_change(now))
        self._replan()
        return flow

    def cancel(self, flow: Flow) -> None:
        """Stop a flow mid-way; `flow.served` then tells how much left."""
        if flow in self._active:
            self._settle()
            del self._active[flow]
            self._inv_sum -= flow.inv
            flow.served = flow.size - (flow.tag - self._v) * flow.weight
            self._replan()

    def _settle(self) -> None:
        now = self._env.now
        self._v += self._speed * (now - self._t)
        self._t = now
        if now >= self._next_change:  # a rate breakpoint passed: re-read every flow's rate
            self._inv_sum, self._next_change = 0.0, math.inf
            for flow in self._active:
                flow.inv = flow.weight / flow.rate.at(now)
                self._inv_sum += flow.inv
                self._next_change = min(self._next_change, flow.rate.next_change(now))

    def _wake(self, plan: int) -> None:
        if plan == self._plan:
            self._settle()
            self._replan()

    def _replan(self) -> None:
        heap = self._heap
        while heap:
            tag, _, flow = heap[0]
            if flow in self._active and (tag - self._v) * flow.weight > _DONE_TOL * flow.size:
                break
            heapq.heappop(heap)
            if flow in self._active:
                del self._active[flow]
                self._inv_sum -= flow.inv
                flow.served = flow.size
                flow.done.succeed(flow.size)
        self._plan += 1
        if not self._active:  # idle: restart the clock so it never grows without bound
            self._v = self._speed = self._inv_sum = 0.0
            self._next_change = math.inf
            heap.clear()
            return
        self._speed = 1.0 / self._inv_sum
        now = self._env.now
        horizon = min((heap[0][0] - self._v) / self._speed, self._next_change - now)
        # At least one tick of the clock: late in a long simulation a fast link's last bytes can take less
        # than the float spacing of `now`, and a zero step would wake the channel forever without progress.
        horizon = max(horizon, math.ulp(now))
        plan = self._plan
        self._env.timeout(horizon).callbacks.append(lambda _ev: self._wake(plan))
