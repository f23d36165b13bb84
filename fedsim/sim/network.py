"""Links and topologies in SimPy: when each participant's K/V reaches each other participant.

The model, in the order a byte meets it:

- **Direct links.** Where both ends' links are `direct` (ad-hoc radio, a shared bus, a shaped loopback), a
  device-to-device transfer (mesh, ring) is one hop on the sender's uplink, crossing the medium once; a
  star still goes through its relay (up, then down).
- **Attachment links.** Participant p reaches the network through its own LinkProfile: an uplink
  (device -> network, `uplink_Bps`) and a downlink (network -> device, `downlink_Bps`), each traversal
  costing `latency_s` (+ seeded jitter, one draw per traversal and message). A device-to-device transfer
  always crosses two links: the sender's uplink to the access point / switch / base station, then the
  receiver's downlink. It pays both latencies, as `fedsim/sim/data/links.yaml` says. The hub / network
  core itself has no capacity limit (a non-blocking switch or AP backplane); only the links do.
- **Channels share by processor sharing** (fedsim/sim/channel.py), equally unless a link has a
  `share_spread`: then each transmission (one message on one hop) draws a weight exp(share_spread * Z) from
  its message's seeded stream, and the channel serves it in proportion (the receiver's link decides a
  downlink's weight, the sender's an uplink's).
- **Shared medium (Wi-Fi).** All participants whose link has `shared_medium` share ONE half-duplex air
  channel: their uplinks and downlinks are all that channel. A relayed byte therefore crosses the air
  twice (station -> AP, AP -> station).
- **Rate traces.** A link's `rate_trace` multiplies its rates piecewise-constantly; channels re-plan at
  every breakpoint, so bytes integrate exactly across rate changes.
- **Per-message overhead.** Before each message (an own send, or a ring forward) leaves a device, the
  device pays its `msg_overhead_s` of software time (serialisation, syscall, driver). It is serial per
  device: a mesh sender with k copies pays k overheads, one after the other. It does not occupy the wire.
- **Messages are forwarded in chunks.** A message is split into `chunk_bytes` chunks; every relay point
  (the hub, the network core between two links, a ring participant) forwards a chunk as soon as it has
  it (store-and-forward per chunk), so a relayed message is within one chunk time of ideal cut-through.
  Chunks of one message keep their order on each hop (one latency draw per hop and message).
- **Topologies** decide where copies are made:
  `star`: the hub (AP / edge server) receives the sender's single upload and replicates it to each
  receiver; replicated bytes are counted as hub relay bytes, not as the sender's. A relayed chunk reaches
  its receiver the receiver link's `relay_s` later (the relay's own forwarding time, measured for the
  runtime's relay process by `fedsim calibrate`; 0 for the shipped links, whose latency includes it). With
  `NetworkOptions.multicast`, the AP sends each relayed chunk ONCE on the air to all its Wi-Fi receivers,
  at the slowest of their downlink rates; the default is one unicast per receiver, because 802.11
  multicast frames are unacknowledged and go out at the basic rate, so reliable K/V delivery uses
  unicast (or multicast-to-unicast conversion in the AP).
  `mesh`: a full logical mesh of unicast connections; the sender uploads one copy per receiver, so its
  uplink is shared by its outgoing transfers; the network core forwards each copy transparently.
  `ring`: ring all-gather over the participants in index order (a broadcast goes round the same ring);
  each participant forwards what it received to its successor, so a message makes N-1 device-to-device
  hops. With chunking, forwarding is pipelined; with `chunk_bytes` >= message size it is exactly the
  classic N-1 step algorithm, each step starting as soon as its input arrived. Caution: processor
  sharing turns a delay of d before a transfer into up to k*d after it competes with k flows; along the
  ring's chains of forwards this makes ring timings under jitter sensitive to float-level perturbations
  (deterministic per seed, but treat one seed as one sample and average over seeds).
- **Jitter is keyed, not sequential.** Each message's latency and weight draws come from a stream keyed by (the
  rng passed in, sender, the sender's message number), so they do not depend on the order in which
  simultaneous events happen to be processed, and two scenarios run with the same seed see the same
  jitter on corresponding messages (common random numbers for paired comparisons).
- **Failures.** `fail(p)` models a dropout seen at once by everyone (a perfect failure detector): p stops
  sending and forwarding, transfers to p stop, and every delivery that can no longer complete (sender
  gone before its bytes left, or a ring relay gone) resolves as lost. Bytes already past p still arrive.

Delivery events succeed with the arrival time (s) or with None when the delivery was lost; they never
fail, so a waiting process cannot crash the simulation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import simpy

from fedsim.sim.channel import Channel, Flow, Rate
from fedsim.sim.profiles import LinkProfile
from fedsim.sim.trace import TraceEvent

TOPOLOGIES = ("star", "mesh", "ring")
JITTER_DISTRIBUTIONS = ("normal", "exponential")
Node = int | str  # a participant index, or a relay point named within its message ("hub", "net2")


@dataclass(frozen=True)
class NetworkOptions:
    """Network-model knobs that are not properties of a link."""

    chunk_bytes: float = 64 * 1024  # forwarding unit at relay points; smaller = closer to cut-through
    multicast: bool = False  # star: the AP sends each relayed chunk once to all its Wi-Fi receivers
    jitter: str = "normal"  # "normal": latency ~ N(latency_s, jitter_s) clipped at 0;
    # "exponential": latency_s + Exp(mean jitter_s)

    def __post_init__(self) -> None:
        if not self.chunk_bytes > 0:
            raise ValueError(f"chunk_bytes must be > 0, got {self.chunk_bytes!r}")
        if self.jitter not in JITTER_DISTRIBUTIONS:
            raise ValueError(f"jitter must be one of {', '.join(JITTER_DISTRIBUTIONS)}, got {self.jitter!r}")


@dataclass(eq=False)
class _Hop:
    """One transmission leg of a message: src node -> dsts over one channel, chunk by chunk."""

    src: Node
    dsts: tuple[Node, ...]
    channel: Channel
    rate: Rate
    latencies: tuple[float, ...]  # per dst
    weight: float  # its share against the channel's other transmissions (1: equal)
    sender: int | None  # participant whose uplink this is (pays overhead, counts bytes_sent)
    relay: bool  # hub replication: counted as hub relay bytes
    touches: tuple[int, ...]  # participants whose wire time this leg counts
    track: int
    lane: str
    cancel_ev: simpy.Event
    flow: Flow | None = None
    chunks_done: int = 0
    bytes: float = 0.0
    t_start: float | None = None


@dataclass(eq=False)
class _Message:
    origin: int
    label: str
    chunks: list[float]
    rng: np.random.Generator | None  # this message's jitter stream
    hops: list[_Hop] = field(default_factory=list)  # topological order: the leg into a node comes first
    avail: dict[Node, list[simpy.Event]] = field(default_factory=dict)  # node -> chunk k is there
    deliveries: dict[int, simpy.Event] = field(default_factory=dict)

    def resolved(self) -> bool:
        return all(ev.triggered for ev in self.deliveries.values())


class Network:
    """The participants' links wired into one topology; `send` starts a message and returns its deliveries.

    Counters (bytes, wire time) cover every transfer so far; `bytes_sent[p]` counts what left p's uplink
    (own K/V copies and ring forwards), `hub_bytes_relayed` what the star's hub replicated.
    """

    def __init__(
        self,
        env: simpy.Environment,
        links: Sequence[LinkProfile],
        topology: str,
        *,
        overheads_s: Sequence[float] | None = None,
        options: NetworkOptions | None = None,
        rng: np.random.Generator | None = None,
        trace: list[TraceEvent] | None = None,
    ):
        if topology not in TOPOLOGIES:
            raise ValueError(f"topology must be one of {', '.join(TOPOLOGIES)}, got {topology!r}")
        n = len(links)
        overheads = list(overheads_s) if overheads_s is not None else [0.0] * n
        if len(overheads) != n:
            raise ValueError(f"{len(overheads)} message overheads for {n} links")
        self._random = any(link.jitter_s > 0 or link.share_spread > 0 for link in links)  # draws per message
        if rng is None and self._random:
            raise ValueError("links have jitter_s > 0 or share_spread > 0: pass a seeded numpy Generator as rng")
        self.env = env
        self.links = list(links)
        self.topology = topology
        self.options = options or NetworkOptions()
        self.hub_track = n
        # Root of the per-message jitter streams (drawn once, so the caller's Generator decides it).
        self._jitter_key = int(rng.integers(2**63)) if rng is not None else 0
        self._messages_sent = [0] * n
        self._trace = trace
        self._overheads = overheads
        air = Channel(env)
        self._up = [air if link.shared_medium else Channel(env) for link in links]
        self._down = [air if link.shared_medium else Channel(env) for link in links]
        self._software_free = [0.0] * n  # when each device's send path is free for the next message
        self._dead: set[int] = set()
        self._active: list[_Message] = []
        self.bytes_sent = [0.0] * n
        self.bytes_received = [0.0] * n
        self.hub_bytes_relayed = 0.0
        self._busy = [0] * n
        self._busy_since = [0.0] * n
        self._busy_total = [0.0] * n

    # ---- public API ------------------------------------------------------------------------------

    def send(self, origin: int, nbytes: float, receivers: Iterable[int], label: str = "") -> dict[int, simpy.Event]:
        """Start sending `nbytes` from `origin` to every receiver now; {receiver: delivery event}."""
        wanted = sorted(set(receivers) - {origin})
        deliveries = {r: self.env.event() for r in wanted}
        live = [r for r in wanted if r not in self._dead]
        for r in wanted:
            if r not in live:
                deliveries[r].succeed(None)
        if not live or origin in self._dead:
            for r in live:
                deliveries[r].succeed(None)
            return deliveries
        n_chunks = max(1, math.ceil(nbytes / self.options.chunk_bytes))
        chunk = nbytes / n_chunks
        rng = None
        if self._random:
            rng = np.random.default_rng([self._jitter_key, origin, self._messages_sent[origin]])
        self._messages_sent[origin] += 1
        msg = _Message(origin, label, [chunk] * n_chunks, rng, deliveries=deliveries)
        {"star": self._route_star, "mesh": self._route_mesh, "ring": self._route_ring}[self.topology](msg, live)
        for hop in msg.hops:
            for dst in hop.dsts:
                msg.avail[dst] = [self.env.event() for _ in msg.chunks]
        for r in live:
            msg.avail[r][-1].callbacks.append(lambda _ev, r=r: self._arrived(msg, r))
        for hop in msg.hops:
            self.env.process(self._run_hop(msg, hop))
        self._active.append(msg)
        return deliveries

    def fail(self, p: int) -> None:
        """Participant p vanished now: stop what depends on it and resolve unreachable deliveries as lost."""
        if p in self._dead:
            return
        self._dead.add(p)
        for msg in list(self._active):
            cut = self._cut_off(msg, p)
            for hop in msg.hops:
                if all(d in cut for d in hop.dsts) and not hop.cancel_ev.triggered:
                    if hop.flow is not None:
                        hop.channel.cancel(hop.flow)
                    hop.cancel_ev.succeed()
            for r, ev in msg.deliveries.items():
                if r in cut and not ev.triggered:
                    ev.succeed(None)
            if msg.resolved():
                self._active.remove(msg)

    def comm_s(self, p: int) -> float:
        """Time during which at least one transfer sent or received by p was being transmitted (the
        union of those intervals; propagation latency and software overhead excluded)."""
        ongoing = self.env.now - self._busy_since[p] if self._busy[p] else 0.0
        return self._busy_total[p] + ongoing

    # ---- routes ----------------------------------------------------------------------------------

    def _latency(self, msg: _Message, link: LinkProfile) -> float:
        if link.jitter_s <= 0:
            return link.latency_s
        assert msg.rng is not None  # every message gets a stream when any link has jitter
        if self.options.jitter == "normal":
            return max(0.0, link.latency_s + msg.rng.normal(0.0, link.jitter_s))
        return link.latency_s + msg.rng.exponential(link.jitter_s)

    def _weight(self, msg: _Message, link: LinkProfile) -> float:
        if link.share_spread <= 0:
            return 1.0
        assert msg.rng is not None  # every message gets a stream when any link has a share spread
        return math.exp(link.share_spread * msg.rng.standard_normal())

    def _uplink_hop(self, msg: _Message, src: int, dst: Node, lane: str) -> None:
        link = self.links[src]
        touches = (src, dst) if isinstance(dst, int) else (src,)  # a direct hop reaches the receiver itself
        msg.hops.append(_Hop(src, (dst,), self._up[src], Rate([(link.uplink_Bps, link)]),
                             (self._latency(msg, link),), self._weight(msg, link), sender=src, relay=False,
                             touches=touches, track=src,
                             lane=lane, cancel_ev=self.env.event()))

    def _device_to_device(self, msg: _Message, a: int, b: int) -> None:
        """a -> b: once on a's uplink when both links are direct (no access point in between), else a's uplink
        to the network core, then b's downlink."""
        if self.links[a].direct and self.links[b].direct:
            self._uplink_hop(msg, a, b, f"send -> P{b}")
            return
        self._uplink_hop(msg, a, f"net{b}", f"send -> P{b}")
        self._downlink_hop(msg, f"net{b}", [b], relay=False, track=b, lane=f"recv <- P{a}")

    def _downlink_hop(self, msg: _Message, src: Node, dsts: Sequence[int], *, relay: bool, track: int,
                      lane: str) -> None:
        rate = Rate([(self.links[r].downlink_Bps, self.links[r]) for r in dsts])
        latencies = tuple(self._latency(msg, self.links[r]) + (self.links[r].relay_s if relay else 0.0)
                          for r in dsts)
        weight = self._weight(msg, self.links[dsts[0]])
        msg.hops.append(_Hop(src, tuple(dsts), self._down[dsts[0]], rate, latencies, weight, sender=None,
                             relay=relay, touches=tuple(dsts), track=track, lane=lane, cancel_ev=self.env.event()))

    def _route_star(self, msg: _Message, receivers: list[int]) -> None:
        self._uplink_hop(msg, msg.origin, "hub", "send -> hub")
        air = [r for r in receivers if self.links[r].shared_medium] if self.options.multicast else []
        if len(air) > 1:
            self._downlink_hop(msg, "hub", air, relay=True, track=self.hub_track, lane="-> Wi-Fi multicast")
        for r in receivers:
            if r not in air or len(air) == 1:
                self._downlink_hop(msg, "hub", [r], relay=True, track=self.hub_track, lane=f"-> P{r}")

    def _route_mesh(self, msg: _Message, receivers: list[int]) -> None:
        for r in receivers:
            self._device_to_device(msg, msg.origin, r)

    def _route_ring(self, msg: _Message, receivers: list[int]) -> None:
        ring = sorted([msg.origin, *receivers])
        start = ring.index(msg.origin)
        path = ring[start:] + ring[:start]
        for a, b in zip(path[:-1], path[1:], strict=True):
            self._device_to_device(msg, a, b)

    # ---- running ---------------------------------------------------------------------------------

    def _run_hop(self, msg: _Message, hop: _Hop):
        """Transmit the message's chunks in order, each once it is at hop.src and the channel serves it."""
        for k, size in enumerate(msg.chunks):
            if hop.src != msg.origin:
                yield msg.avail[hop.src][k] | hop.cancel_ev
            if hop.cancel_ev.triggered:
                break
            if k == 0:
                if hop.sender is not None:
                    yield self.env.timeout(self._software_delay(hop.sender)) | hop.cancel_ev
                    if hop.cancel_ev.triggered:
                        break
                hop.t_start = self.env.now
            self._mark_busy(hop.touches, +1)
            hop.flow = flow = hop.channel.transmit(size, hop.rate, hop.weight)
            yield flow.done | hop.cancel_ev
            hop.flow = None
            self._mark_busy(hop.touches, -1)
            self._count(hop, flow.served)
            if hop.cancel_ev.triggered:
                break
            hop.chunks_done += 1
            for dst, latency in zip(hop.dsts, hop.latencies, strict=True):
                self._after(latency, msg.avail[dst][k])
        if self._trace is not None and hop.t_start is not None:
            self._trace.append(TraceEvent(
                name=f"{msg.label} kv P{msg.origin}".strip(), cat="transfer", track=hop.track, lane=hop.lane,
                start_s=hop.t_start, dur_s=self.env.now - hop.t_start,
                args={"bytes": hop.bytes, "chunks": hop.chunks_done, "lost": hop.cancel_ev.triggered}))

    def _software_delay(self, p: int) -> float:
        start = max(self.env.now, self._software_free[p]) + self._overheads[p]
        self._software_free[p] = start
        return start - self.env.now

    def _after(self, delay: float, event: simpy.Event) -> None:
        self.env.timeout(delay).callbacks.append(lambda _ev: event.succeed())

    def _arrived(self, msg: _Message, r: int) -> None:
        if not msg.deliveries[r].triggered:
            msg.deliveries[r].succeed(self.env.now)
        if msg.resolved() and msg in self._active:
            self._active.remove(msg)

    def _count(self, hop: _Hop, nbytes: float) -> None:
        hop.bytes += nbytes
        if hop.sender is not None:
            self.bytes_sent[hop.sender] += nbytes
        if hop.relay:
            self.hub_bytes_relayed += nbytes
        for dst in hop.dsts:
            if isinstance(dst, int) and dst not in self._dead:
                self.bytes_received[dst] += nbytes

    def _mark_busy(self, participants: tuple[int, ...], delta: int) -> None:
        now = self.env.now
        for p in participants:
            if delta > 0 and self._busy[p] == 0:
                self._busy_since[p] = now
            self._busy[p] += delta
            if delta < 0 and self._busy[p] == 0:
                self._busy_total[p] += now - self._busy_since[p]

    def _cut_off(self, msg: _Message, p: int) -> set[Node]:
        """Nodes of msg that can no longer get the whole message once p is gone: p itself, nodes fed by a
        cut-off node that had not yet sent them every chunk, and relay points that lead only to cut-off
        nodes (so nobody keeps sending into a dead end)."""
        cut: set[Node] = {p}
        for hop in msg.hops:
            if hop.src in cut and hop.chunks_done < len(msg.chunks):
                cut.update(hop.dsts)
        for hop in reversed(msg.hops):
            if isinstance(hop.src, str):
                onward = [d for h in msg.hops if h.src == hop.src for d in h.dsts]
                if all(d in cut for d in onward):
                    cut.add(hop.src)
        return cut
