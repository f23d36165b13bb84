"""Moving one block's K/V between participant processes over torch.distributed (gloo, CPU), along a topology.

The topologies are the simulator's (fedsim/sim/network.py), done for real:
- `star`: every sender uploads its K/V once to a relay process (rank N, the access point or edge server),
  which forwards a copy to each receiver;
- `mesh`: every sender sends one copy to each receiver directly;
- `ring`: the classic N-1 step ring all-gather; a broadcast (the publisher's extra sync) is passed along the
  ring from the publisher until it has reached everyone.

A message is one fp32 tensor [2, kv_heads, n_tokens, head_dim] (K and V of the sender's tokens); receivers
size their buffers from the senders' slices, which every rank learns once at start-up. Payload bytes are
counted per rank as they leave it, so the runtime's `bytes_sent` can be compared with the simulator's.

Every rank posts the receives of all its blocks (`expect`) at start-up, before it computes anything. This
matters: gloo's sender transmits only once the receiver has posted its receive. A receive posted late, by a
participant still computing when its peer was ready, made the peer's communication thread (on a core busy
with the peer's next block) wait for a scheduler tick, 3-12 ms on the 2-core sandbox; a receive posted at the
start of its block still held the relay's forward until the receiver reached that block. Posted at start-up,
a message leaves when its sender is ready and the relay forwards it while the receiver is still computing,
which is what the simulator models. The price is memory: every block's incoming buffers exist from the start
(the others' K/V of every exchanging block, about what a participant holds at the end). The relay forwards each
sender's K/V as soon as it has arrived, in arrival order (one waiting thread per sender); every message has a
tag of its own (block and origin), so receivers tell them apart whatever the order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

TOPOLOGIES = ("star", "mesh", "ring")


@dataclass
class Counters:
    """Payload bytes and messages this rank sent and received."""

    bytes_sent: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    per_block_sent: dict[int, int] = field(default_factory=dict)


class Transport:
    """One rank's end of the K/V exchange. `senders` of a block are the ranks whose K/V is shared there (all
    participants at a sync block, the publisher at a publisher block); every other participant receives it."""

    def __init__(self, rank: int, n_participants: int, topology: str, lengths: Sequence[int], kv_heads: int,
                 head_dim: int):
        if topology not in TOPOLOGIES:
            raise ValueError(f"topology must be one of {', '.join(TOPOLOGIES)}, got {topology!r}")
        self.rank, self.n, self.topology = rank, n_participants, topology
        self.lengths, self.kv_heads, self.head_dim = list(lengths), kv_heads, head_dim
        self.relay = n_participants  # the star's relay rank
        self.counters = Counters()
        self._posted: dict[int, dict[int, tuple[torch.Tensor, dist.Work]]] = {}  # by block, from `expect`
        self._pool: ThreadPoolExecutor | None = None  # the relay's waiting threads

    def _buffer(self, origin: int) -> torch.Tensor:
        return torch.empty(2, self.kv_heads, self.lengths[origin], self.head_dim)

    def _tag(self, block: int, origin: int) -> int:
        """Every message of a run has its own tag: receives of many blocks are posted at once."""
        return 1 + block * self.n + origin

    def _send(self, tensor: torch.Tensor, dst: int, block: int, origin: int) -> dist.Work:
        nbytes = tensor.numel() * tensor.element_size()
        c = self.counters
        c.bytes_sent += nbytes
        c.messages_sent += 1
        c.per_block_sent[block] = c.per_block_sent.get(block, 0) + nbytes
        return dist.isend(tensor, dst, tag=self._tag(block, origin))

    def _recv(self, block: int, origin: int, src: int) -> tuple[torch.Tensor, dist.Work]:
        buf = self._buffer(origin)
        self.counters.bytes_received += buf.numel() * buf.element_size()
        return buf, dist.irecv(buf, src, tag=self._tag(block, origin))

    def expect(self, block: int, senders: Sequence[int]) -> None:
        """Post this rank's receives of one block's exchange ahead of it (see the module's docstring for why);
        a rank posts those of all its blocks at start-up. `exchange` posts them itself when they were not."""
        self._posted[block] = self._receives(block, sorted(senders))

    def _receives(self, block: int, senders: list[int]) -> dict[int, tuple[torch.Tensor, dist.Work]]:
        """By origin: the buffer and the pending receive of every other sender's K/V, from the rank that
        hands it to this one (the relay, the sender itself, or the previous rank on the ring); the relay
        receives from each sender."""
        me = self.rank
        if me == self.relay or self.topology == "mesh":
            src = {s: s for s in senders}
        elif self.topology == "star":
            src = {s: self.relay for s in senders}
        else:  # the ring: everything arrives from the previous rank
            src = {s: (me - 1) % self.n for s in senders}
        return {s: self._recv(block, s, src[s]) for s in senders if s != me}

    def exchange(self, block: int, own: torch.Tensor | None, senders: Sequence[int]) -> dict[int, torch.Tensor]:
        """A participant's part of one block's exchange: send `own` (when this rank is a sender) and return
        the tensors of the other senders, by origin."""
        senders = sorted(senders)
        incoming = self._posted.pop(block, None) or self._receives(block, senders)
        waited: set[int] = set()  # a gloo receive may be waited for once only
        if self.topology == "star":
            works = [self._send(own, self.relay, block, self.rank)] if self.rank in senders else []
        elif self.topology == "mesh":
            works = [self._send(own, r, block, self.rank) for r in range(self.n)
                     if r != self.rank] if self.rank in senders else []
        else:
            works = self._ring(block, own, senders, incoming, waited)
        for s, (_, work) in incoming.items():
            if s not in waited:
                work.wait()
        for work in works:
            work.wait()
        return {s: buf for s, (buf, _) in incoming.items()}

    def _ring(self, block: int, own: torch.Tensor | None, senders: list[int],
              incoming: dict[int, tuple[torch.Tensor, dist.Work]], waited: set[int]) -> list[dist.Work]:
        """The classic ring: at step k a message that left its origin k-1 hops ago moves on to the next rank,
        unless that rank is its origin; a rank forwards a message once it has received it."""
        n, me = self.n, self.rank
        nxt = (me + 1) % n
        works = []
        for step in range(1, n):
            outgoing = (me - step + 1) % n
            if outgoing not in senders or nxt == outgoing:
                continue
            if outgoing == me:
                works.append(self._send(own, nxt, block, me))
            else:
                buf, work = incoming[outgoing]
                work.wait()
                waited.add(outgoing)
                works.append(self._send(buf, nxt, block, outgoing))
        return works

    def relay_block(self, block: int, senders: Sequence[int]) -> None:
        """The star's relay at one block: receive each sender's K/V and forward a copy to every other
        participant as soon as it has arrived, in the order the senders' messages arrive."""
        senders = sorted(senders)
        incoming = self._posted.pop(block, None) or self._receives(block, senders)

        def forward(s: int) -> list[dist.Work]:
            buf, work = incoming[s]
            work.wait()
            return [self._send(buf, r, block, s) for r in range(self.n) if r != s]

        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.n, thread_name_prefix="relay")
        for sends in list(self._pool.map(forward, incoming)):
            for work in sends:
                work.wait()


def take_relay_priority() -> None:
    """The relay stands for an access point or edge server, hardware of its own: on a machine shared with the
    participants it must not queue behind their compute for a core, so it takes a real-time priority (its
    threads, gloo's included, inherit it; it sleeps except to forward). Without the privilege it runs as is."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except (AttributeError, PermissionError, OSError):
        pass
