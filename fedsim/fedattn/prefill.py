"""Federated Attention prefill, block by block, and the prompt state a responder decodes from.

Every participant runs every block on its own tokens; blocks differ only in which prompt keys a
participant's queries may see. That is one boolean row per participant, `visible[p]` over the L prompt
tokens, so all N participants run in one batched pass under the mask

    mask[t, s] = visible[owner(t)][s] and s <= t      (and always s == t)

which equals per-participant attention exactly, because a masked-out key contributes nothing.

- local block: a participant sees its own (kept) tokens;
- sync block: it also sees every *included* participant's shared tokens; their K/V are the ones the
  owners computed, in global order. `included` comes from the engine: a participant whose K/V missed
  the deadline, or who dropped out, is left out and the math really runs without it;
- publisher block: collaborators also see the publisher's tokens (one-way broadcast).

Sparsity (seeded, drawn once per run like the authors' code): `r_comp` keeps a random fraction of a
participant's own tokens as keys; `r_comm` shares a random fraction of the kept tokens at each sync;
`publisher_dense` exempts the publisher from both.

Decoding continues at global position L. The first new token comes from the prefill's last position
(computed by its owner, the publisher); every later token is computed by the responder, whose prompt
K/V at each block is exactly what it holds: its own at local blocks, the gathered K/V at sync blocks.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fedsim.fedattn.costs import LayerCost, Precision, layer_cost
from fedsim.fedattn.partition import Partition
from fedsim.fedattn.schedule import Schedule
from fedsim.models.transformer import Transformer


@dataclass(frozen=True)
class LayerCounts:
    """What one participant computes at one block, read off the mask actually used."""

    n_queries: int
    attended_pairs: int  # (query, key) pairs its attention evaluates
    own_pairs: int  # of which over its own keys
    visible_keys: int  # prompt keys it holds at this block (its KV cache for decoding)
    sent_tokens: int  # tokens whose K/V it sends at this block


class PrefixCache:
    """Block outputs keyed by (tokens, masks of every block so far): two schedules that agree on their
    first blocks share that work. Bounded in bytes, least recently used first out."""

    def __init__(self, max_bytes: float = 2e9):
        self.max_bytes = max_bytes
        self.entries: OrderedDict[str, tuple[torch.Tensor, ...]] = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> tuple[torch.Tensor, ...] | None:
        hit = self.entries.get(key)
        if hit is None:
            self.misses += 1
            return None
        self.hits += 1
        self.entries.move_to_end(key)
        return hit

    def clear(self) -> None:
        self.entries.clear()
        self.nbytes = 0

    def put(self, key: str, value: tuple[torch.Tensor, ...]) -> None:
        size = sum(t.numel() * t.element_size() for t in value)
        if key in self.entries or size > self.max_bytes:
            return
        self.entries[key] = value
        self.nbytes += size
        while self.nbytes > self.max_bytes:
            _, old = self.entries.popitem(last=False)
            self.nbytes -= sum(t.numel() * t.element_size() for t in old)


class FedAttnPrefill:
    """The prefill of one prompt under one schedule, advanced one block at a time."""

    def __init__(
        self,
        model: Transformer,
        tokens: Sequence[int] | torch.Tensor,
        partition: Partition,
        schedule: Schedule,
        seed: int = 0,
        precision: Precision = Precision(),
        cache: PrefixCache | None = None,
    ):
        self.model = model
        self.tokens = torch.as_tensor(tokens, dtype=torch.long).reshape(-1)
        self.partition = partition
        self.schedule = schedule
        self.precision = precision
        self.cache = cache
        L, N = len(self.tokens), partition.n_participants
        if L != partition.n_tokens:
            raise ValueError(f"partition covers {partition.n_tokens} tokens but the prompt has {L}")
        if schedule.n_layers != model.cfg.n_layers:
            raise ValueError(f"schedule is for {schedule.n_layers} layers, the model has {model.cfg.n_layers}")
        self.owner = torch.as_tensor(partition.owner, dtype=torch.long)
        self.causal = torch.ones(L, L, dtype=torch.bool).tril()
        self.eye = torch.eye(L, dtype=torch.bool)
        self.same_owner = self.owner[:, None] == self.owner[None, :]
        self.kept, self.shared = self._draw_sparsity(np.random.default_rng(seed))
        self.rope = model.rope(torch.arange(L))
        self.layer = 0
        self.x = model.embed(self.tokens[None])
        self.kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.hidden: list[torch.Tensor] = []  # [1, L, d] output of every finished block
        self.visible: list[torch.Tensor] = []  # [N, L] per finished block
        self.included: list[frozenset[int]] = []
        self._key = hashlib.sha256(self.tokens.numpy().tobytes()).hexdigest()
        self._counts: dict[tuple[int, frozenset[int]], list[LayerCounts]] = {}
        self._costs: dict[tuple[int, frozenset[int]], list[LayerCost]] = {}
        self._masks: dict[bytes, torch.Tensor] = {}
        self.everyone = frozenset(range(N))

    # -- who sees what -------------------------------------------------------------------------------------
    def _draw_sparsity(self, rng: np.random.Generator) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Kept tokens per participant ([N, L]) and, per sync block, the shared subset of them."""
        s, part = self.schedule, self.partition
        N, L = part.n_participants, part.n_tokens
        kept = torch.zeros(N, L, dtype=torch.bool)
        for p in range(N):
            idx = part.tokens_of(p)
            dense = s.publisher_dense and p == part.publisher
            keep = idx if dense or s.r_comp >= 1.0 else rng.choice(idx, max(1, int(s.r_comp * len(idx))), False)
            kept[p, keep] = True
        shared = {}
        for layer in sorted(s.sync_layers):
            mask = torch.zeros(N, L, dtype=torch.bool)
            for p in range(N):
                idx = np.flatnonzero(kept[p].numpy())
                dense = s.publisher_dense and p == part.publisher
                send = idx if dense or s.r_comm >= 1.0 else rng.choice(idx, max(1, int(s.r_comm * len(idx))), False)
                mask[p, send] = True
            shared[layer] = mask
        return kept, shared

    def visible_keys(self, layer: int, included: frozenset[int] | None = None) -> torch.Tensor:
        """[N, L] bool: the prompt keys each participant's queries may see at `layer`."""
        included = self.everyone if included is None else included
        kind = self.schedule.kind(layer)
        vis = self.kept.clone()
        if kind == "sync":
            for q in included:
                vis |= self.shared[layer][q]
        elif kind == "publisher" and self.partition.publisher in included:
            vis |= self.kept[self.partition.publisher]
        return vis

    def _mask(self, vis: torch.Tensor) -> torch.Tensor:
        """[L, L] mask of one block; blocks with the same visibility (all local blocks) share one tensor."""
        key = vis.numpy().tobytes()
        if key not in self._masks:
            self._masks[key] = (vis[self.owner] & self.causal) | self.eye
        return self._masks[key]

    def counts(self, layer: int, included: frozenset[int] | None = None) -> list[LayerCounts]:
        """Per-participant counts at `layer`: the row sums of the mask the math uses, by prefix sums.

        A query at position t of participant p attends the keys s <= t with visible[p][s], plus itself."""
        included = self.everyone if included is None else frozenset(included)
        key = (layer, included)
        if key not in self._counts:
            vis = self.visible_keys(layer, included)
            kind = self.schedule.kind(layer)
            part = self.partition
            out = []
            for p in range(part.n_participants):
                rows = torch.as_tensor(part.tokens_of(p))
                own = vis[p] & (self.owner == p)
                self_extra = int((~vis[p][rows]).sum())  # a hidden query still attends itself
                pairs = int(vis[p].cumsum(0)[rows].sum()) + self_extra
                own_pairs = int(own.cumsum(0)[rows].sum()) + self_extra
                if kind == "sync":
                    sent = int(self.shared[layer][p].sum())
                elif kind == "publisher" and p == part.publisher:
                    sent = int(self.kept[p].sum())
                else:
                    sent = 0
                out.append(LayerCounts(len(rows), pairs, own_pairs, int(vis[p].sum()), sent))
            self._counts[key] = out
        return self._counts[key]

    def layer_costs(self, layer: int, included: frozenset[int] | None = None) -> list[LayerCost]:
        """Closed-form cost per participant at `layer`; memoized, as the engine asks once per participant."""
        included = self.everyone if included is None else frozenset(included)
        key = (layer, included)
        if key not in self._costs:
            cfg, prec = self.model.cfg, self.precision
            self._costs[key] = [
                layer_cost(cfg, c.n_queries, c.attended_pairs, c.own_pairs, c.visible_keys, c.sent_tokens, prec)
                for c in self.counts(layer, included)
            ]
        return self._costs[key]

    # -- running -------------------------------------------------------------------------------------------
    def _chain_key(self, vis: torch.Tensor) -> str:
        prev = self._key
        self._key = hashlib.sha256(prev.encode() + vis.numpy().tobytes()).hexdigest()
        return self._key

    @torch.inference_mode()
    def step(self, included: frozenset[int] | None = None) -> list[LayerCounts]:
        """Run the next block for all participants; `included`: whose K/V the others received."""
        layer = self.layer
        if layer >= self.model.cfg.n_layers:
            raise RuntimeError("prefill already finished")
        included = self.everyone if included is None else frozenset(included)
        vis = self.visible_keys(layer, included)
        key = self._chain_key(vis) if self.cache is not None else None
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is not None:
            self.x, k, v = hit
        else:
            q, k, v = self.model.qkv(layer, self.x, self.rope)
            self.x = self.model.finish(layer, self.x, self.model.attend(q, k, v, self._mask(vis)))
            if self.cache is not None:
                self.cache.put(key, (self.x, k, v))
        self.kv.append((k, v))
        self.hidden.append(self.x)
        self.visible.append(vis)
        self.included.append(included)
        self.layer += 1
        return self.counts(layer, included)

    def run(self) -> FedAttnPrefill:
        """All remaining blocks with everyone included."""
        while self.layer < self.model.cfg.n_layers:
            self.step()
        return self

    @property
    def done(self) -> bool:
        return self.layer == self.model.cfg.n_layers

    @torch.inference_mode()
    def last_logits(self) -> torch.Tensor:
        """Next-token logits at the last prompt position, [vocab]."""
        self._require_done()
        return self.model.logits(self.x[:, -1])[0]

    def _require_done(self) -> None:
        if not self.done:
            raise RuntimeError(f"prefill stopped at block {self.layer} of {self.model.cfg.n_layers}")

    # -- decoding ------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def extend(
        self,
        responders: Sequence[int],
        tokens: torch.Tensor,
        past: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Feed `tokens` [B, T] after the prompt, row b as seen by participant `responders[b]`.

        Returns logits [B, T, vocab] and the generated-token K/V per block (pass it back as `past`).
        """
        self._require_done()
        model, L = self.model, len(self.tokens)
        B, T = tokens.shape
        n_past = 0 if past is None else past[0][0].shape[2]
        rope = model.rope(torch.arange(L + n_past, L + n_past + T))
        rows = torch.as_tensor(list(responders))
        causal_new = torch.ones(T, T, dtype=torch.bool).tril()
        x = model.embed(tokens)
        new_past = []
        for layer in range(model.cfg.n_layers):
            q, k, v = model.qkv(layer, x, rope)
            if past is not None:
                k = torch.cat([past[layer][0], k], dim=2)
                v = torch.cat([past[layer][1], v], dim=2)
            new_past.append((k, v))
            pk, pv = self.kv[layer]
            keys = torch.cat([pk.expand(B, -1, -1, -1), k], dim=2)
            values = torch.cat([pv.expand(B, -1, -1, -1), v], dim=2)
            prompt_mask = self.visible[layer][rows][:, None, :].expand(B, T, L)
            gen_mask = torch.cat([torch.ones(T, n_past, dtype=torch.bool), causal_new], dim=1).expand(B, T, -1)
            mask = torch.cat([prompt_mask, gen_mask], dim=2)[:, None]
            x = model.finish(layer, x, model.attend(q, keys, values, mask))
        return model.logits(x), new_past

    def decode_cache_keys(self, responder: int, n_generated: int) -> int:
        """K/V entries one new token attends, summed over blocks: the prompt keys the responder holds
        at each block plus the tokens generated so far (including itself)."""
        self._require_done()
        return sum(int(v[responder].sum()) for v in self.visible) + self.model.cfg.n_layers * (n_generated + 1)

    @torch.inference_mode()
    def continuation_logits(self, responders: Sequence[int], continuation: Sequence[int]) -> torch.Tensor:
        """Teacher-forced next-token logits [B, T, vocab] along a fixed continuation, per responder."""
        first = self.last_logits()[None, None].expand(len(responders), 1, -1)
        if len(continuation) <= 1:
            return first[:, : len(continuation)]
        cont = torch.as_tensor(list(continuation)[:-1], dtype=torch.long)[None].expand(len(responders), -1)
        logits, _ = self.extend(responders, cont)
        return torch.cat([first, logits], dim=1)
