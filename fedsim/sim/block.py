"""A transformer block as a SimPy entity: who reached it, whose K/V went where, and the `included` set
decided for it (the rules are in fedsim.sim.engine's docstring)."""

from __future__ import annotations

from math import inf, nan
from typing import TYPE_CHECKING

import simpy

if TYPE_CHECKING:
    from fedsim.sim.engine import Simulation


class Block:
    """One block's shared state; its `decide` process fires `decided` with the block's included set."""

    def __init__(self, sim: Simulation, layer: int, kind: str):
        env, n = sim.env, sim.n
        self.sim, self.layer, self.kind = sim, layer, kind
        # reached[p] succeeds True when p finished the pre part (and sent), False if p dropped first
        self.reached = [env.event() for _ in range(n)]
        self.reach_time = [inf] * n
        self.first_reach = env.event()
        self.deliveries: dict[int, dict[int, simpy.Event]] = {}  # sender -> {receiver: delivery}
        self.decided = env.event()  # value: the block's included set
        self.decided_s = nan  # simulated time of the decision

    def arrive(self, p: int) -> None:
        """p finished the pre part of this block (and started sending, if it sends here)."""
        self.reach_time[p] = self.sim.env.now
        self.reached[p].succeed(True)
        if not self.first_reach.triggered:
            self.first_reach.succeed()

    def decide(self):
        sim = self.sim
        if self.kind == "local":
            yield sim.env.all_of(self.reached)
            included = {p for p in sim.alive() if self.reached[p].value}
        else:
            resolved = sim.env.process(self._resolved())
            if sim.options.deadline_s is not None:
                yield self.first_reach | resolved
                if not resolved.triggered:
                    yield sim.env.timeout(sim.options.deadline_s) | resolved
            else:
                yield resolved
            included = self._included()
        self.decided_s = sim.env.now
        self.decided.succeed(frozenset(included))

    def _resolved(self):
        """Ends when every sender has sent (or dropped) and each of its deliveries arrived or was lost."""
        senders = range(self.sim.n) if self.kind == "sync" else [self.sim.options.publisher]
        for s in senders:
            if (yield self.reached[s]):
                yield self.sim.env.all_of(list(self.deliveries.get(s, {}).values()))

    def exchange_span(self) -> float:
        """Seconds from the moment the last sender of this block's K/V had it ready to its last delivery: the
        communication proper (a sender waiting for a slower one before that is straggling, seen in the wait
        and prefill times). NaN at a local block or when nothing was delivered."""
        arrivals = [ev.value for sent in self.deliveries.values() for ev in sent.values()
                    if ev.triggered and ev.value is not None]
        if not arrivals:
            return nan
        return max(arrivals) - max(self.reach_time[s] for s in self.deliveries)

    def _delivered(self, s: int, r: int) -> bool:
        ev = self.deliveries.get(s, {}).get(r)
        return ev is not None and ev.triggered and ev.value is not None

    def _included(self) -> set[int]:
        """The block's included set at decision time."""
        reached, alive = self.reached, set(self.sim.alive())
        if self.kind == "publisher":
            pub = self.sim.options.publisher
            on_time = reached[pub].triggered and reached[pub].value and all(
                self._delivered(pub, r) for r in alive - {pub})
            return alive if on_time else alive - {pub}
        members = {p for p in alive if reached[p].triggered and reached[p].value}
        while True:
            missing = dict.fromkeys(members, 0)
            for s in members:
                for r in members:
                    if s != r and not self._delivered(s, r):
                        missing[s] += 1
                        missing[r] += 1
            worst = max(members, key=lambda q: (missing[q], self.reach_time[q], q), default=None)
            if worst is None or missing[worst] == 0:
                return members
            members.discard(worst)
