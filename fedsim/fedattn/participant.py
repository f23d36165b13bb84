"""FedAttn as one participant computes it: its own tokens at their global positions, and the K/V it receives.

This is what a deployment runs on each device (fedsim's real runtime does, one OS process per participant):
the participant never sees another participant's tokens, only their K/V at the blocks where they share it.
A block is `start_block` (norm, Q/K/V projections and RoPE on its own tokens: the K/V it would send) then
`finish_block(received)` (attention over its own K/V plus the received K/V, concatenated in global order and
causal by global position; then the output projection and the FFN). The batched simulator
(fedsim.fedattn.prefill) computes the same numbers for all participants at once; tests hold the two together.

Decoding continues at global position L (the whole prompt's length): a generated token attends the prompt
K/V this participant held at each block (its own at local blocks, everyone's at sync blocks) and the tokens
generated so far.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from fedsim.fedattn.schedule import Schedule
from fedsim.models.transformer import Transformer


@dataclass(frozen=True)
class Slice:
    """Where a participant's tokens sit in the global order: what the others know of them."""

    offset: int
    length: int

    @property
    def positions(self) -> torch.Tensor:
        return torch.arange(self.offset, self.offset + self.length)


def senders_at(kind: str, me: int, n_participants: int, publisher: int) -> list[int]:
    """Whose K/V participant `me` needs at a block of this kind: everyone else at a sync block, the publisher
    at a publisher block (unless `me` is the publisher), nobody at a local block."""
    if kind == "sync":
        return [p for p in range(n_participants) if p != me]
    if kind == "publisher" and me != publisher:
        return [publisher]
    return []


class ParticipantPrefill:
    """One participant's prefill, block by block, then its decoding."""

    def __init__(self, model: Transformer, tokens: Sequence[int] | torch.Tensor, me: int,
                 slices: Sequence[Slice], schedule: Schedule):
        self.model, self.me, self.slices, self.schedule = model, me, list(slices), schedule
        self.tokens = torch.as_tensor(tokens, dtype=torch.long).reshape(-1)
        mine = self.slices[me]
        if mine.length != len(self.tokens):
            raise ValueError(f"participant {me} holds {len(self.tokens)} tokens, its slice says {mine.length}")
        self.n_prompt = sum(s.length for s in self.slices)
        self.layer = 0
        self.x = model.embed(self.tokens[None])  # [1, n, d]
        self._rope = model.rope(mine.positions)
        self._pending: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        # per finished block: the prompt K/V this participant holds (keys in global order) and their positions
        self.held: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    @property
    def done(self) -> bool:
        return self.layer == self.model.cfg.n_layers

    def kind(self) -> str:
        return self.schedule.kind(self.layer)

    @torch.inference_mode()
    def start_block(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Q/K/V of the next block on this participant's tokens; returns its K and V ([1, kv_heads, n, dim])."""
        if self.done or self._pending is not None:
            raise RuntimeError(f"participant {self.me}: start_block out of order at block {self.layer}")
        self._pending = self.model.qkv(self.layer, self.x, self._rope)  # token-major [1, n, heads, dim]
        return self._pending[1].transpose(1, 2), self._pending[2].transpose(1, 2)

    @torch.inference_mode()
    def finish_block(self, received: Mapping[int, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Attention over own K/V and the `received` K/V (sender -> (K, V)), then the rest of the block."""
        if self._pending is None:
            raise RuntimeError(f"participant {self.me}: finish_block before start_block at block {self.layer}")
        q, k, v = self._pending
        parts = {self.me: (k.transpose(1, 2), v.transpose(1, 2)), **received}
        order = sorted(parts, key=lambda p: self.slices[p].offset)
        keys = torch.cat([parts[p][0] for p in order], dim=2)
        values = torch.cat([parts[p][1] for p in order], dim=2)
        key_pos = torch.cat([self.slices[p].positions for p in order])
        # causal: the keys after this participant's last token are held for decoding but never attended here,
        # so they are left out of the product rather than computed and masked
        mine = self.slices[self.me].positions
        upto = int((key_pos <= mine[-1]).sum()) if len(mine) else 0
        mask = key_pos[None, :upto] <= mine[:, None]  # causal by global position
        attn = self.model.attend(q, keys[:, :, :upto].transpose(1, 2), values[:, :, :upto].transpose(1, 2), mask)
        self.x = self.model.finish(self.layer, self.x, attn)
        self.held.append((keys, values, key_pos))
        self._pending = None
        self.layer += 1

    @torch.inference_mode()
    def last_logits(self) -> torch.Tensor:
        """Next-token logits at this participant's last position ([vocab]); the first generated token comes
        from the participant holding the prompt's last token."""
        if not self.done:
            raise RuntimeError(f"participant {self.me}: prefill stopped at block {self.layer}")
        return self.model.logits(self.x[:, -1])[0]


class Decoder:
    """Generated tokens of one responder: each attends the prompt K/V the responder held at every block and
    the tokens generated before it (their K/V stay on the responder: nothing moves during decoding)."""

    def __init__(self, prefill: ParticipantPrefill):
        if not prefill.done:
            raise RuntimeError("decode after the prefill has run every block")
        self.prefill = prefill
        self.generated: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * prefill.model.cfg.n_layers
        self.n_generated = 0

    @torch.inference_mode()
    def step(self, token: int) -> torch.Tensor:
        """Feed one generated token (at global position L + its index); returns the next-token logits."""
        model, pf = self.prefill.model, self.prefill
        pos = pf.n_prompt + self.n_generated
        rope = model.rope(torch.tensor([pos]))
        x = model.embed(torch.tensor([[token]]))
        for layer in range(model.cfg.n_layers):
            q, k, v = model.qkv(layer, x, rope)  # token-major [1, 1, heads, dim]
            past = self.generated[layer]
            if past is not None:
                k, v = torch.cat([past[0], k], dim=1), torch.cat([past[1], v], dim=1)
            self.generated[layer] = (k, v)
            pk, pv, _ = pf.held[layer]  # heads-major, as received
            keys, values = torch.cat([pk.transpose(1, 2), k], dim=1), torch.cat([pv.transpose(1, 2), v], dim=1)
            mask = torch.ones(1, keys.shape[1], dtype=torch.bool)  # every held prompt key and every earlier token
            x = model.finish(layer, x, model.attend(q, keys, values, mask))
        self.n_generated += 1
        return model.logits(x)[0, -1]
