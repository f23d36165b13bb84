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
"""

from __future__ import annotations

from collections.abc import Sequence
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

    def _buffer(self, origin: int) -> torch.Tensor:
        return torch.empty(2, self.kv_heads, self.lengths[origin], self.head_dim)

    def _send(self, tensor: torch.Tensor, dst: int, block: int) -> dist.Work:
        nbytes = tensor.numel() * tensor.element_size()
        c = self.counters
        c.bytes_sent += nbytes
        c.messages_sent += 1
        c.per_block_sent[block] = c.per_block_sent.get(block, 0) + nbytes
        return dist.isend(tensor, dst)

    def _recv(self, origin: int, src: int) -> tuple[torch.Tensor, dist.Work]:
        buf = self._buffer(origin)
        self.counters.bytes_received += buf.numel() * buf.element_size()
        return buf, dist.irecv(buf, src)

    def exchange(self, block: int, own: torch.Tensor | None, senders: Sequence[int]) -> dict[int, torch.Tensor]:
        """A participant's part of one block's exchange: send `own` (when this rank is a sender) and return
        the tensors of the other senders, by origin."""
        senders = sorted(senders)
        if self.topology == "star":
            return self._star(block, own, senders)
        if self.topology == "mesh":
            return self._mesh(block, own, senders)
        return self._ring(block, own, senders)

    def _mesh(self, block: int, own: torch.Tensor | None, senders: list[int]) -> dict[int, torch.Tensor]:
        works = []
        if self.rank in senders:
            works += [self._send(own, r, block) for r in range(self.n) if r != self.rank]
        received = {}
        for s in senders:
            if s != self.rank:
                received[s], work = self._recv(s, s)
                works.append(work)
        for work in works:
            work.wait()
        return received

    def _star(self, block: int, own: torch.Tensor | None, senders: list[int]) -> dict[int, torch.Tensor]:
        works = [self._send(own, self.relay, block)] if self.rank in senders else []
        received = {}
        for s in senders:  # the relay forwards in sender order, so each receiver posts in that order
            if s != self.rank:
                received[s], work = self._recv(s, self.relay)
                works.append(work)
        for work in works:
            work.wait()
        return received

    def _ring(self, block: int, own: torch.Tensor | None, senders: list[int]) -> dict[int, torch.Tensor]:
        n, me = self.n, self.rank
        nxt, prev = (me + 1) % n, (me - 1) % n
        held = {me: own} if me in senders else {}
        received = {}
        for step in range(1, n):
            # at step k a message that left its origin k-1 hops ago moves on, unless its next hop is its origin
            outgoing = (me - step + 1) % n
            incoming = (me - step) % n
            works = []
            if outgoing in senders and outgoing in held and nxt != outgoing:
                works.append(self._send(held[outgoing], nxt, block))
            if incoming in senders and incoming != me:
                buf, work = self._recv(incoming, prev)
                works.append(work)
                held[incoming] = received[incoming] = buf
            for work in works:
                work.wait()
        return received

    def relay_block(self, block: int, senders: Sequence[int]) -> None:
        """The star's relay at one block: receive each sender's K/V and forward a copy to every other
        participant as soon as it has arrived."""
        incoming = [(s, *self._recv(s, s)) for s in sorted(senders)]
        works = []
        for s, buf, work in incoming:
            work.wait()
            works += [self._send(buf, r, block) for r in range(self.n) if r != s]
        for work in works:
            work.wait()
