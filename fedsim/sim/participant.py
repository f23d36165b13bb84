"""A participant as a SimPy entity: it owns its device, its clock accounts and its process, which computes
block by block and exchanges K/V at sync blocks (timing rules: fedsim.sim.engine's docstring)."""

from __future__ import annotations

from dataclasses import dataclass, field
from math import inf, isnan, nan
from typing import TYPE_CHECKING

import simpy

from fedsim.sim.devices import Device
from fedsim.sim.network import Network
from fedsim.sim.outcome import ParticipantResult

if TYPE_CHECKING:
    from fedsim.sim.engine import Simulation


@dataclass
class _Accounts:
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


class Participant:
    """One device running every block on its own tokens."""

    def __init__(self, sim: Simulation, index: int, device: Device):
        self.sim, self.index, self.device = sim, index, device
        self.alive = True
        self.acc = _Accounts()
        self.process: simpy.Process | None = None

    def start(self) -> simpy.Process:
        self.process = self.sim.env.process(self._run())
        return self.process

    def _run(self):
        try:
            for block in self.sim.blocks:
                yield from self._block(block)
            self.acc.prefill_end = self.sim.env.now
        except simpy.Interrupt:
            self._close_interval()

    def _block(self, block):
        sim, p, acc = self.sim, self.index, self.acc
        layer, kind, publisher = block.layer, block.kind, sim.options.publisher
        early_view = sim.alive()
        early = sim.math.layer_cost(layer, p, early_view)
        times = self.device.block_times(early)
        yield from self._compute(f"L{layer} pre", times.pre, early.flops_pre, early.bytes_pre)
        left_out = block.decided.triggered and p not in block.decided.value
        receivers = [q.index for q in sim.participants if q.alive and q.index != p]
        sends = kind == "sync" or (kind == "publisher" and p == publisher)
        if sends and receivers and not left_out:
            block.deliveries[p] = sim.net.send(p, early.send_bytes, receivers, label=f"L{layer}")
            acc.exposed_layers.append(layer)
            acc.exposed_bytes += early.send_bytes
        block.arrive(p)
        if kind == "local" or (kind == "publisher" and p == publisher):
            yield from self._compute(f"L{layer} post", times.post, early.flops_post, early.bytes_post)
            return
        exchange = sim.env.process(self._exchange(block))
        own_s = own_flops = own_bytes = 0.0
        if sim.options.overlap:  # the attention over its own keys runs while the others' K/V is on its way
            own_s, own_flops = times.post_own, min(early.flops_post_own, early.flops_post)
            own_bytes = early.bytes_post * own_flops / early.flops_post if own_flops > 0 else 0.0
            yield from self._compute(f"L{layer} post own", own_s, own_flops, own_bytes)
        view = yield from self._wait(exchange)
        cost = early if view == early_view else sim.math.layer_cost(layer, p, view)
        post_s = times.post if cost is early else self.device.block_times(cost).post
        yield from self._compute(f"L{layer} post" + (" rest" if sim.options.overlap else ""),
                                 max(0.0, post_s - own_s), max(0.0, cost.flops_post - own_flops),
                                 max(0.0, cost.bytes_post - own_bytes))

    def _exchange(self, block):
        """Wait until this participant may run the post part of a sync/publisher block; return the set of
        participants whose K/V it runs with."""
        sim, p = self.sim, self.index
        senders = [s for s in range(sim.n) if s != p] if block.kind == "sync" else [sim.options.publisher]
        if sim.options.deadline_s is not None:
            included = yield block.decided
            yield sim.env.all_of([block.deliveries[s][p] for s in senders if s in included])
            return included
        holds = {p}
        for s in senders:
            sent = yield block.reached[s]
            if sent and (yield block.deliveries[s][p]) is not None:
                holds.add(s)
        if block.kind == "sync":
            return frozenset(q for q in holds if sim.participants[q].alive)
        return frozenset(q for q in sim.alive() if q != sim.options.publisher or q in holds)

    def _compute(self, name: str, dt: float, flops: float, nbytes: float):
        env, acc = self.sim.env, self.acc
        start = env.now
        acc.busy = ("compute", start, name)
        yield env.timeout(dt)
        acc.busy = None
        acc.compute_s += dt
        acc.flops_prefill += flops
        self.sim.trace_compute(self.index, name, start, dt, {"flops": flops, "bytes": nbytes})

    def _wait(self, event: simpy.Event):
        env, acc = self.sim.env, self.acc
        start = env.now
        acc.busy = ("wait", start, "wait")
        value = yield event
        acc.busy = None
        acc.wait_s += env.now - start
        return value

    def _close_interval(self) -> None:
        """Book the interval a dropout cut short."""
        acc, now = self.acc, self.sim.env.now
        if acc.busy is None:
            return
        phase, start, name = acc.busy
        acc.busy = None
        if phase == "wait":
            acc.wait_s += now - start
        else:
            acc.compute_s += now - start
        self.sim.trace_compute(self.index, f"{name} (dropped)", start, now - start, {})

    def drop_at(self, at: float):
        """Process: the device stops at `at` (compute, transfers and relaying end; K/V not yet sent is lost)."""
        sim = self.sim
        try:
            yield sim.env.timeout(at)
        except simpy.Interrupt:
            return
        if not self.alive:
            return
        self.alive = False
        self.acc.dropped_at = sim.env.now
        for block in sim.blocks:
            if not block.reached[self.index].triggered:
                block.reached[self.index].succeed(False)
        sim.net.fail(self.index)
        if self.process is not None and self.process.is_alive:
            self.process.interrupt("dropout")

    def decode(self) -> None:
        """Time the responder's tokens back to back from its prefill end, up to its dropout if any."""
        sim, acc, p = self.sim, self.acc, self.index
        if isnan(acc.prefill_end):
            return
        stop = min((at for q, at in sim.options.dropout if q == p and at >= acc.prefill_end), default=inf)
        t = acc.prefill_end
        for step in range(sim.options.n_decode):
            cost = sim.math.decode_step_cost(step)
            flops = cost.flops_pre + cost.flops_post
            nbytes = cost.bytes_pre + cost.bytes_post
            dt = self.device.decode_time(cost)
            if t + dt > stop:  # the dropout interrupts this token
                sim.trace_compute(p, f"decode {step} (dropped)", t, stop - t, {})
                self.alive = False
                acc.dropped_at = stop
                return
            sim.trace_compute(p, f"decode {step}", t, dt, {"flops": flops, "bytes": nbytes})
            acc.decode_token_s.append(dt)
            acc.flops_decode += flops
            t += dt

    def result(self, net: Network) -> ParticipantResult:
        acc, p = self.acc, self.index
        tokens = acc.decode_token_s
        ttft = acc.prefill_end
        if p == self.sim.options.responder and self.sim.options.n_decode:
            ttft = ttft + tokens[0] if tokens else nan
        return ParticipantResult(
            participant=p, ttft_s=ttft, prefill_s=acc.prefill_end, prefill_compute_s=acc.compute_s,
            prefill_wait_s=acc.wait_s, prefill_comm_s=net.comm_s(p),
            # step 0 is only the LM head on the last prompt position (it is in the TTFT); the per-token
            # decode time is that of the full passes after it
            decode_s_per_token=sum(tokens[1:]) / (len(tokens) - 1) if len(tokens) > 1 else nan,
            decode_token_s=tuple(tokens),
            bytes_sent=net.bytes_sent[p], bytes_received=net.bytes_received[p],
            flops_prefill=acc.flops_prefill, flops_decode=acc.flops_decode,
            exposed_layers=tuple(acc.exposed_layers), exposed_bytes=acc.exposed_bytes,
            dropped=not self.alive, dropped_at_s=acc.dropped_at)
