"""SimPy engine: participants as processes that compute layer by layer and exchange K/V over the network.

Timing model, in plain words (what each number in a SimResult means):

- **Time starts at 0 for everyone.** Each participant runs blocks 0..n_layers-1 of its own prompt slice,
  one after another, on its own device. A block has a *pre* part (norm + Q/K/V projections: flops_pre,
  bytes_pre) and a *post* part (attention + output projection + FFN: flops_post, bytes_post). Each part
  takes `device.compute_time(flops, bytes)`, the roofline max(flops / achieved FLOP/s, bytes / memory
  bandwidth). A device computes one thing at a time; the network card works in parallel.
- **Local block**: pre, then post, no waiting.
- **Sync block**: after pre, the participant sends its K/V (`send_bytes`) to every other live participant
  over the topology (fedsim/network.py), then waits until the K/V it needs has arrived, then runs post.
  **Publisher block**: only the publisher (participant N-1) sends; it does not wait; the collaborators
  wait for its K/V. Sending never blocks the sender's compute.
- **Overlap** (`overlap=True`): while waiting, the participant already computes the attention over its own
  keys (`flops_post_own` of the cost, 0 if the cost has no such field; its share of bytes_post is
  proportional, which keeps the roofline time of the split block equal to the unsplit one); the rest of
  post runs once the K/V is in. Without overlap: send, wait, then all of post.
- **What "waits for" means.** Without a deadline, a participant continues as soon as every other
  participant's K/V has either arrived at it or is known lost (a dropout is seen at once by everyone).
  With `deadline_s`, the cutoff of a sync/publisher block is `deadline_s` seconds after the FIRST
  participant finished the pre part of that block; the block's `included` set is decided at
  min(cutoff, moment every K/V has arrived everywhere), and every participant waits for that decision
  (so all of them run the same `included`, as the math assumes) and then for the K/V of the included
  senders. A participant that reaches a block already decided without it does not send its K/V.
- **included** (one set per block, passed once to `math.advance(layer, included)`, in layer order, when it
  is known; participants that dropped before the decision are never in it):
  local block: the participants that reached it (finished its pre part) alive; decided when every live
  participant has reached it. Sync block: the participants that sent their K/V and are alive, minus
  those whose K/V did not reach every other member by the decision time; if deliveries are missing, the
  member involved in the most missing deliveries (as sender or receiver) is removed first (ties: the
  one that reached the block last, then the higher index) until none are missing. With no deadline and
  no dropout, that is everyone. Publisher block: every live participant, minus the publisher if its K/V
  did not reach every live collaborator by the decision.
- **Post cost** is `math.layer_cost(layer, p, S)` with S what p knows when it starts post: the decided
  `included` when it waited for a decision (deadline); otherwise, at a sync block, itself and the live
  senders whose K/V it holds; at a collaborator's publisher block, the live participants (without the
  publisher if its K/V was lost); at local blocks and the publisher's own publisher blocks, the live
  participants at the start of the block. Unless someone drops mid-block, S equals the block's `included`.
  The pre part (and send_bytes) use `layer_cost(layer, p, live participants at the start of the block)`.
- **Dropout** (participant, time): at that time the device stops: its compute ends, its transfers and
  relaying stop, the K/V it had not finished sending is lost, and it is left out of every later decision.
- **Decode**: after its prefill, the responder generates n_decode tokens alone; token i takes
  `compute_time(decode_step_cost(i))` (memory-bound: every weight is read once per token). Nothing but
  its own dropout can affect it (no network, its own device), so the tokens are timed after the event
  loop, once the math has run every block (decode costs depend on the final K/V caches); a responder
  dropout inside its decode window keeps only the tokens finished before it.
- **Metrics.** prefill_s = end of the participant's last block; prefill_compute_s + prefill_wait_s =
  prefill_s exactly (compute and idle waiting alternate); prefill_comm_s = time at least one of its own
  sends or receives was being transmitted (may overlap compute). ttft_s = prefill end, plus the first
  decoded token for the responder. Byte counters are wire bytes (copies and ring forwards included);
  exposed_layers lists the blocks whose K/V left the device, exposed_bytes sums its own K/V sent there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from math import inf, isnan, nan
from typing import Any, Protocol

import numpy as np
import simpy

from fedsim.network import Network, NetworkOptions
from fedsim.profiles import DeviceProfile, LinkProfile
from fedsim.trace import TraceEvent, chrome_trace

LAYER_KINDS = ("local", "sync", "publisher")


class LayerCostLike(Protocol):
    """What the engine reads from a fedsim.costs.LayerCost (duck-typed: the engine never imports torch)."""

    flops_pre: float
    flops_post: float
    bytes_pre: float
    bytes_post: float
    send_bytes: float


class LayerMath(Protocol):
    """The engine <-> math protocol of docs/ARCHITECTURE.md."""

    n_layers: int
    n_participants: int

    def layer_kind(self, layer: int) -> str: ...

    def layer_cost(self, layer: int, participant: int, included: frozenset[int]) -> LayerCostLike: ...

    def advance(self, layer: int, included: frozenset[int]) -> None: ...

    def decode_step_cost(self, step: int) -> LayerCostLike: ...


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


@dataclass(frozen=True)
class SimResult:
    participants: tuple[ParticipantResult, ...]
    layers: tuple[LayerResult, ...]
    hub_bytes_relayed: float
    events_processed: int
    trace_events: tuple[TraceEvent, ...]  # empty unless simulate(trace=True); see fedsim.trace.write_trace
    track_names: Mapping[int, str]

    @property
    def trace(self) -> dict[str, Any] | None:
        """The Chrome trace-event document (JSON-ready), or None when the run was not traced."""
        return chrome_trace(self.trace_events, self.track_names) if self.trace_events else None


class _CountingEnvironment(simpy.Environment):
    """Counts processed events: a cheap, deterministic measure of simulation work."""

    events_processed = 0

    def step(self) -> None:
        self.events_processed += 1
        super().step()


@dataclass
class _Stats:
    compute_s: float = 0.0
    wait_s: float = 0.0
    flops_prefill: float = 0.0
    flops_decode: float = 0.0
    prefill_end: float = nan
    decode_token_s: list[float] = field(default_factory=list)
    exposed_layers: list[int] = field(default_factory=list)
    exposed_bytes: float = 0.0
    dropped_at: float = nan
    busy: tuple[str, float, str] | None = None  # (phase, start, name) of the interval in progress


def simulate(
    math: LayerMath,
    devices: Sequence[DeviceProfile],
    links: Sequence[LinkProfile],
    topology: str,
    *,
    overlap: bool = False,
    deadline_s: float | None = None,
    dropout: Sequence[tuple[int, float]] = (),
    responder: int,
    n_decode: int,
    seed: int,
    trace: bool = False,
    network: NetworkOptions | None = None,
) -> SimResult:
    """Simulate one FedAttn prefill + decode; see the module docstring for the timing model.

    `dropout` lists (participant, time_s) pairs decided by the caller; `seed` drives latency jitter only.
    """
    return _Simulation(math, devices, links, topology, overlap=overlap, deadline_s=deadline_s, dropout=dropout,
                       responder=responder, n_decode=n_decode, seed=seed, trace=trace,
                       network=network or NetworkOptions()).run()


class _Simulation:
    def __init__(
        self,
        math: LayerMath,
        devices: Sequence[DeviceProfile],
        links: Sequence[LinkProfile],
        topology: str,
        *,
        overlap: bool,
        deadline_s: float | None,
        dropout: Sequence[tuple[int, float]],
        responder: int,
        n_decode: int,
        seed: int,
        trace: bool,
        network: NetworkOptions,
    ):
        n, n_layers = math.n_participants, math.n_layers
        if n < 1 or len(devices) != n or len(links) != n:
            raise ValueError(f"{n} participants need as many devices and links, got {len(devices)} and {len(links)}")
        if not 0 <= responder < n:
            raise ValueError(f"responder must be a participant 0..{n - 1}, got {responder}")
        if n_decode < 0:
            raise ValueError(f"n_decode must be >= 0, got {n_decode}")
        if deadline_s is not None and not deadline_s > 0:
            raise ValueError(f"deadline_s must be > 0 or None, got {deadline_s}")
        for p, at in dropout:
            if not (0 <= p < n and 0 <= at < inf):
                raise ValueError(f"bad dropout ({p}, {at}): need a participant 0..{n - 1} and a time >= 0")
        self.kinds = tuple(math.layer_kind(layer) for layer in range(n_layers))
        for layer, kind in enumerate(self.kinds):
            if kind not in LAYER_KINDS:
                raise ValueError(f"layer {layer}: kind must be one of {', '.join(LAYER_KINDS)}, got {kind!r}")
        self.math, self.devices, self.n, self.n_layers = math, list(devices), n, n_layers
        self.overlap, self.deadline_s, self.dropout = overlap, deadline_s, list(dropout)
        self.responder, self.n_decode, self.topology = responder, n_decode, topology
        self.publisher = n - 1
        self.env = env = _CountingEnvironment()
        self.trace: list[TraceEvent] | None = [] if trace else None
        self.net = Network(env, links, topology, overheads_s=[d.msg_overhead_s for d in devices], options=network,
                           rng=np.random.default_rng(seed), trace=self.trace)
        self.alive = [True] * n
        self.stats = [_Stats() for _ in range(n)]
        # Per block: reached[l][p] succeeds True when p finished pre (and sent), False if p dropped first.
        self.reached = [[env.event() for _ in range(n)] for _ in range(n_layers)]
        self.reach_time = [[inf] * n for _ in range(n_layers)]
        self.first_reach = [env.event() for _ in range(n_layers)]
        self.deliveries: list[dict[int, dict[int, simpy.Event]]] = [{} for _ in range(n_layers)]
        self.decided = [env.event() for _ in range(n_layers)]  # value: the block's included set
        self.decided_s = [nan] * n_layers
        self.procs: list[simpy.Process] = []

    def run(self) -> SimResult:
        env = self.env
        for layer in range(self.n_layers):
            env.process(self._decide(layer))
        self.procs = [env.process(self._participant(p)) for p in range(self.n)]
        coordinator = env.process(self._coordinate())
        droppers = [env.process(self._drop(p, at)) for p, at in self.dropout]
        env.run(until=env.all_of([*self.procs, coordinator]))
        for dropper in droppers:  # dropouts after the end never happen
            if dropper.is_alive:
                dropper.interrupt()
        env.run()  # drain transfers still in flight (e.g. a late K/V) so byte counts are complete
        self._decode()
        return self._result()

    # ---- participants ----------------------------------------------------------------------------

    def _participant(self, p: int):
        try:
            for layer in range(self.n_layers):
                yield from self._layer(p, layer)
            self.stats[p].prefill_end = self.env.now
        except simpy.Interrupt:
            self._close_interval(p)

    def _decode(self) -> None:
        """Time the responder's tokens back to back from its prefill end, up to its dropout if any."""
        p = self.responder
        st = self.stats[p]
        if isnan(st.prefill_end):
            return
        stop = min((at for q, at in self.dropout if q == p and at >= st.prefill_end), default=inf)
        t = st.prefill_end
        for step in range(self.n_decode):
            cost = self.math.decode_step_cost(step)
            flops = cost.flops_pre + cost.flops_post
            nbytes = cost.bytes_pre + cost.bytes_post
            dt = self.devices[p].compute_time(flops, nbytes)
            if t + dt > stop:  # the dropout interrupts this token
                self._trace_compute(p, f"decode {step} (dropped)", t, stop - t, {})
                self.alive[p] = False
                st.dropped_at = stop
                return
            self._trace_compute(p, f"decode {step}", t, dt, {"flops": flops, "bytes": nbytes})
            st.decode_token_s.append(dt)
            st.flops_decode += flops
            t += dt

    def _layer(self, p: int, layer: int):
        kind, st = self.kinds[layer], self.stats[p]
        early_view = self._alive_set()
        early = self.math.layer_cost(layer, p, early_view)
        yield from self._compute(p, f"L{layer} pre", early.flops_pre, early.bytes_pre)
        decided = self.decided[layer]
        left_out = decided.triggered and p not in decided.value
        receivers = [r for r in range(self.n) if self.alive[r] and r != p]
        sends = kind == "sync" or (kind == "publisher" and p == self.publisher)
        if sends and receivers and not left_out:
            self.deliveries[layer][p] = self.net.send(p, early.send_bytes, receivers, label=f"L{layer}")
            st.exposed_layers.append(layer)
            st.exposed_bytes += early.send_bytes
        self.reach_time[layer][p] = self.env.now
        self.reached[layer][p].succeed(True)
        if not self.first_reach[layer].triggered:
            self.first_reach[layer].succeed()
        if kind == "local" or (kind == "publisher" and p == self.publisher):
            yield from self._compute(p, f"L{layer} post", early.flops_post, early.bytes_post)
        else:
            exchange = self.env.process(self._exchange(p, layer))
            own_flops = own_bytes = 0.0
            if self.overlap:
                own_flops = min(getattr(early, "flops_post_own", 0.0), early.flops_post)
                own_bytes = early.bytes_post * own_flops / early.flops_post if own_flops > 0 else 0.0
                yield from self._compute(p, f"L{layer} post own", own_flops, own_bytes)
            view = yield from self._wait(p, exchange)
            cost = early if view == early_view else self.math.layer_cost(layer, p, view)
            yield from self._compute(p, f"L{layer} post" + (" rest" if self.overlap else ""),
                                     max(0.0, cost.flops_post - own_flops), max(0.0, cost.bytes_post - own_bytes))

    def _exchange(self, p: int, layer: int):
        """Wait until p may run the post part of a sync/publisher block; return the set it runs with."""
        kind = self.kinds[layer]
        senders = [s for s in range(self.n) if s != p] if kind == "sync" else [self.publisher]
        if self.deadline_s is not None:
            included = yield self.decided[layer]
            yield self.env.all_of([self.deliveries[layer][s][p] for s in senders if s in included])
            return included
        holds = {p}
        for s in senders:
            sent = yield self.reached[layer][s]
            if sent and (yield self.deliveries[layer][s][p]) is not None:
                holds.add(s)
        if kind == "sync":
            return frozenset(q for q in holds if self.alive[q])
        return frozenset(q for q in self._alive_set() if q != self.publisher or q in holds)

    def _compute(self, p: int, name: str, flops: float, nbytes: float):
        dt = self.devices[p].compute_time(flops, nbytes)
        st, start = self.stats[p], self.env.now
        st.busy = ("compute", start, name)
        yield self.env.timeout(dt)
        st.busy = None
        st.compute_s += dt
        st.flops_prefill += flops
        self._trace_compute(p, name, start, dt, {"flops": flops, "bytes": nbytes})

    def _wait(self, p: int, event: simpy.Event):
        st, start = self.stats[p], self.env.now
        st.busy = ("wait", start, "wait")
        value = yield event
        st.busy = None
        st.wait_s += self.env.now - start
        return value

    def _close_interval(self, p: int) -> None:
        """Book the interval a dropout cut short."""
        st = self.stats[p]
        if st.busy is None:
            return
        phase, start, name = st.busy
        st.busy = None
        if phase == "wait":
            st.wait_s += self.env.now - start
        else:
            st.compute_s += self.env.now - start
        self._trace_compute(p, f"{name} (dropped)", start, self.env.now - start, {})

    def _trace_compute(self, p: int, name: str, start: float, dur: float, args: dict[str, float]) -> None:
        if self.trace is not None:
            self.trace.append(TraceEvent(name, "compute", p, "compute", start, dur, args))

    # ---- faults and decisions --------------------------------------------------------------------

    def _drop(self, p: int, at: float):
        try:
            yield self.env.timeout(at)
        except simpy.Interrupt:
            return
        if not self.alive[p]:
            return
        self.alive[p] = False
        self.stats[p].dropped_at = self.env.now
        for per_layer in self.reached:
            if not per_layer[p].triggered:
                per_layer[p].succeed(False)
        self.net.fail(p)
        if self.procs[p].is_alive:
            self.procs[p].interrupt("dropout")

    def _alive_set(self) -> frozenset[int]:
        return frozenset(p for p in range(self.n) if self.alive[p])

    def _decide(self, layer: int):
        kind = self.kinds[layer]
        if kind == "local":
            yield self.env.all_of(self.reached[layer])
            included = {p for p in self._alive_set() if self.reached[layer][p].value}
        else:
            resolved = self.env.process(self._resolved(layer, kind))
            if self.deadline_s is not None:
                yield self.first_reach[layer] | resolved
                if not resolved.triggered:
                    yield self.env.timeout(self.deadline_s) | resolved
            else:
                yield resolved
            included = self._included(layer, kind)
        self.decided_s[layer] = self.env.now
        self.decided[layer].succeed(frozenset(included))

    def _resolved(self, layer: int, kind: str):
        """Ends when every sender has sent (or dropped) and each of its deliveries arrived or was lost."""
        for s in range(self.n) if kind == "sync" else [self.publisher]:
            if (yield self.reached[layer][s]):
                yield self.env.all_of(list(self.deliveries[layer].get(s, {}).values()))

    def _included(self, layer: int, kind: str) -> set[int]:
        """The block's included set at decision time (rules in the module docstring)."""
        reached, sent = self.reached[layer], self.deliveries[layer]

        def delivered(s: int, r: int) -> bool:
            ev = sent.get(s, {}).get(r)
            return ev is not None and ev.triggered and ev.value is not None

        alive = set(self._alive_set())
        if kind == "publisher":
            pub = self.publisher
            on_time = reached[pub].triggered and reached[pub].value and all(delivered(pub, r) for r in alive - {pub})
            return alive if on_time else alive - {pub}
        members = {p for p in alive if reached[p].triggered and reached[p].value}
        while True:
            missing = dict.fromkeys(members, 0)
            for s in members:
                for r in members:
                    if s != r and not delivered(s, r):
                        missing[s] += 1
                        missing[r] += 1
            worst = max(members, key=lambda q: (missing[q], self.reach_time[layer][q], q), default=None)
            if worst is None or missing[worst] == 0:
                return members
            members.discard(worst)

    def _coordinate(self):
        """Run the real math block by block, in order, each once its included set is decided."""
        for layer in range(self.n_layers):
            included = yield self.decided[layer]
            self.math.advance(layer, included)

    # ---- results ---------------------------------------------------------------------------------

    def _result(self) -> SimResult:
        participants = []
        for p, st in enumerate(self.stats):
            tokens = st.decode_token_s
            ttft = st.prefill_end
            if p == self.responder and self.n_decode:
                ttft = ttft + tokens[0] if tokens else nan
            participants.append(ParticipantResult(
                participant=p, ttft_s=ttft, prefill_s=st.prefill_end, prefill_compute_s=st.compute_s,
                prefill_wait_s=st.wait_s, prefill_comm_s=self.net.comm_s(p),
                # step 0 is only the LM head on the last prompt position (it is in the TTFT); the per-token
                # decode time is that of the full passes after it
                decode_s_per_token=sum(tokens[1:]) / (len(tokens) - 1) if len(tokens) > 1 else nan,
                decode_token_s=tuple(tokens),
                bytes_sent=self.net.bytes_sent[p], bytes_received=self.net.bytes_received[p],
                flops_prefill=st.flops_prefill, flops_decode=st.flops_decode,
                exposed_layers=tuple(st.exposed_layers), exposed_bytes=st.exposed_bytes,
                dropped=not self.alive[p], dropped_at_s=st.dropped_at))
        layers = tuple(LayerResult(layer, kind, self.decided[layer].value, self.decided_s[layer])
                       for layer, kind in enumerate(self.kinds))
        names = {p: f"P{p} {d.name}" for p, d in enumerate(self.devices)}
        if self.topology == "star":
            names[self.net.hub_track] = "hub"
        return SimResult(tuple(participants), layers, self.net.hub_bytes_relayed, self.env.events_processed,
                         tuple(self.trace or ()), names)
