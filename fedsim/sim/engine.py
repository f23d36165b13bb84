"""SimPy engine: participants as processes that compute layer by layer and exchange K/V over the network.

Timing model, in plain words (what each number in a SimResult means):

- **Time starts at 0 for everyone.** Each participant runs blocks 0..n_layers-1 of its own prompt slice,
  one after another, on its own device. A block has a *pre* part (norm + Q/K/V projections: flops_pre,
  bytes_pre) and a *post* part (attention + output projection + FFN: flops_post, bytes_post). The device
  says how long each part takes (`device.block_times(cost)`): a roofline device takes max(flops / achieved
  FLOP/s, bytes / memory bandwidth); a measured device (`fedsim calibrate`) interpolates tables of the
  part's queries and keys. A device computes one thing at a time; the network card works in parallel.
- **Local block**: pre, then post, no waiting.
- **Sync block**: after pre, the participant sends its K/V (`send_bytes`) to every other live participant
  over the topology (fedsim/network.py), then waits until the K/V it needs has arrived, then runs post.
  **Publisher block**: only the publisher (`EngineOptions.publisher`) sends; it does not wait; the collaborators
  wait for its K/V. Sending never blocks the sender's compute.
- **Overlap** (`overlap=True`): while waiting, the participant already computes the attention over its own
  keys (`BlockTimes.post_own`: on a roofline the time of `flops_post_own` with a proportional share of
  bytes_post); the rest of post (its time minus that part) runs once the K/V is in. Without overlap: send,
  wait, then all of post.
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
  `device.decode_time(decode_step_cost(i))` (memory-bound on a roofline: every weight is read once per token).
  Nothing but
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

from collections.abc import Sequence
from dataclasses import dataclass
from math import inf
from typing import Protocol

import numpy as np
import simpy

from fedsim.sim.block import Block
from fedsim.sim.devices import Device
from fedsim.sim.network import TOPOLOGIES, Network
from fedsim.sim.outcome import LayerResult, SimResult
from fedsim.sim.participant import Participant
from fedsim.sim.profiles import LinkProfile
from fedsim.sim.trace import TraceEvent

LAYER_KINDS = ("local", "sync", "publisher")


class LayerCostLike(Protocol):
    """Everything the engine reads from a cost (fedsim.fedattn.costs.LayerCost; duck-typed, so the engine
    never imports torch)."""

    flops_pre: float
    flops_post: float
    flops_post_own: float  # the part of flops_post over the participant's own keys (overlappable)
    bytes_pre: float
    bytes_post: float
    send_bytes: float
    n_queries: int  # the work in its own units, which measured devices time
    attended_pairs: int
    own_pairs: int
    cache_keys: int


class LayerMath(Protocol):
    """The engine <-> math protocol of docs/ARCHITECTURE.md."""

    n_layers: int
    n_participants: int

    def layer_kind(self, layer: int) -> str: ...

    def layer_cost(self, layer: int, participant: int, included: frozenset[int]) -> LayerCostLike: ...

    def advance(self, layer: int, included: frozenset[int]) -> None: ...

    def decode_step_cost(self, step: int) -> LayerCostLike: ...


@dataclass(frozen=True)
class EngineOptions:
    """Everything a simulation needs besides the math, the devices and the links; passed once."""

    publisher: int  # the participant that holds the question (it alone sends at publisher blocks)
    responder: int  # the participant that decodes
    n_decode: int  # tokens the responder generates
    seed: int = 0  # drives latency jitter only
    topology: str = "star"
    overlap: bool = False
    deadline_s: float | None = None
    dropout: tuple[tuple[int, float], ...] = ()  # (participant, time_s), decided by the caller
    trace: bool = False


class _CountingEnvironment(simpy.Environment):
    """Counts processed events: a cheap, deterministic measure of simulation work."""

    events_processed = 0

    def step(self) -> None:
        self.events_processed += 1
        super().step()


def simulate(math: LayerMath, devices: Sequence[Device], links: Sequence[LinkProfile],
             options: EngineOptions) -> SimResult:
    """Simulate one FedAttn prefill + decode; see the module docstring for the timing model."""
    return Simulation(math, devices, links, options).run()


class Simulation:
    """The world the participants and blocks live in: clock, network, and the math they drive."""

    def __init__(self, math: LayerMath, devices: Sequence[Device], links: Sequence[LinkProfile],
                 options: EngineOptions):
        n, n_layers = math.n_participants, math.n_layers
        _check(n, devices, links, options)
        kinds = tuple(math.layer_kind(layer) for layer in range(n_layers))
        for layer, kind in enumerate(kinds):
            if kind not in LAYER_KINDS:
                raise ValueError(f"layer {layer}: kind must be one of {', '.join(LAYER_KINDS)}, got {kind!r}")
        self.math, self.options, self.n, self.n_layers = math, options, n, n_layers
        self.env = env = _CountingEnvironment()
        self.trace: list[TraceEvent] | None = [] if options.trace else None
        self.net = Network(env, links, options.topology, overheads_s=[d.msg_overhead_s for d in devices],
                           rng=np.random.default_rng(options.seed), trace=self.trace)
        self.participants = [Participant(self, p, device) for p, device in enumerate(devices)]
        self.blocks = [Block(self, layer, kind) for layer, kind in enumerate(kinds)]

    def alive(self) -> frozenset[int]:
        return frozenset(p.index for p in self.participants if p.alive)

    def run(self) -> SimResult:
        env = self.env
        for block in self.blocks:
            env.process(block.decide())
        procs = [p.start() for p in self.participants]
        coordinator = env.process(self._coordinate())
        droppers = [env.process(self.participants[p].drop_at(at)) for p, at in self.options.dropout]
        env.run(until=env.all_of([*procs, coordinator]))
        for dropper in droppers:  # dropouts after the end never happen
            if dropper.is_alive:
                dropper.interrupt()
        env.run()  # drain transfers still in flight (e.g. a late K/V) so byte counts are complete
        self.participants[self.options.responder].decode()
        return self._result()

    def _coordinate(self):
        """Run the real math block by block, in order, each once its included set is decided."""
        for block in self.blocks:
            included = yield block.decided
            self.math.advance(block.layer, included)

    def trace_compute(self, p: int, name: str, start: float, dur: float, args: dict[str, float]) -> None:
        if self.trace is not None:
            self.trace.append(TraceEvent(name, "compute", p, "compute", start, dur, args))

    def _result(self) -> SimResult:
        participants = tuple(p.result(self.net) for p in self.participants)
        layers = tuple(LayerResult(b.layer, b.kind, b.decided.value, b.decided_s, b.exchange_span())
                       for b in self.blocks)
        names = {p.index: f"P{p.index} {p.device.name}" for p in self.participants}
        if self.options.topology == "star":
            names[self.net.hub_track] = "hub"
        return SimResult(participants, layers, self.net.hub_bytes_relayed, self.env.events_processed,
                         tuple(self.trace or ()), names)


def _check(n: int, devices: Sequence[Device], links: Sequence[LinkProfile], o: EngineOptions) -> None:
    if n < 1 or len(devices) != n or len(links) != n:
        raise ValueError(f"{n} participants need as many devices and links, got {len(devices)} and {len(links)}")
    if o.topology not in TOPOLOGIES:
        raise ValueError(f"topology must be one of {', '.join(TOPOLOGIES)}, got {o.topology!r}")
    for role, p in (("responder", o.responder), ("publisher", o.publisher)):
        if not 0 <= p < n:
            raise ValueError(f"{role} must be a participant 0..{n - 1}, got {p}")
    if o.n_decode < 0:
        raise ValueError(f"n_decode must be >= 0, got {o.n_decode}")
    if o.deadline_s is not None and not o.deadline_s > 0:
        raise ValueError(f"deadline_s must be > 0 or None, got {o.deadline_s}")
    for p, at in o.dropout:
        if not (0 <= p < n and 0 <= at < inf):
            raise ValueError(f"bad dropout ({p}, {at}): need a participant 0..{n - 1} and a time >= 0")

