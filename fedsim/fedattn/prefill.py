"""Federated Attention prefill, block by block, and the prompt state a responder decodes from.

Every participant runs every block on its own tokens; blocks differ only in which prompt keys a
participant's queries may see. With the authors' sparse semantics (fedsim.fedattn.sparsity) that is two
[L] masks per block, never an [N, L] or [L, L] one:

- `kept`: the tokens their owner keeps. A kept token attends causally to its owner's kept tokens; a token
  not kept attends only to itself, at every block, and no one attends to it;
- `common`: the keys everyone sees besides their own. At a sync block, the tokens each *included*
  participant shares there (their K/V are the ones the owners computed, in global order; `included` comes
  from the engine: a participant whose K/V missed the deadline, or who dropped out, is left out and the
  math really runs without it). At a publisher block, the publisher's kept tokens (one-way broadcast; the
  publisher holds the last tokens, so this only matters when a collaborator decodes). Nothing at a local block.

So participant p sees (kept tokens of p) + common; its queries see the causal part of that. The attention
(fedsim.fedattn.attention) costs the pairs attended, and `counts()` gives them in closed form.

Decoding continues at global position L. The first new token comes from the prefill's last position
(computed by its owner, the publisher); every later token is computed by the responder, whose prompt
K/V at each block is exactly what it holds: its own kept tokens plus that block's common keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fedsim.fedattn.attention import PromptView, block_attention, decode_attention
from fedsim.fedattn.costs import LayerCost, Precision, layer_cost
from fedsim.fedattn.partition import Partition
from fedsim.fedattn.prefix_cache import PrefixCache
from fedsim.fedattn.schedule import Schedule
from fedsim.fedattn.sparsity import draw_sparsity
from fedsim.models.transformer import Transformer

__all__ = ["FedAttnPrefill", "LayerCounts", "PrefixCache"]


@dataclass(frozen=True)
class LayerCounts:
    """What one participant computes at one block, from the same masks the attention runs with."""

    n_queries: int  # its tokens (every one goes through the projections and the FFN)
    attended_pairs: int  # (query, key) pairs its attention evaluates; a token not kept: 1 (itself)
    own_pairs: int  # of which over its own keys
    visible_keys: int  # prompt keys it holds at this block (its KV cache for decoding)
    sent_tokens: int  # tokens whose K/V it sends at this block
    kept_queries: int  # its kept tokens: the queries of the authors' cost convention


class FedAttnPrefill:
    """The prefill of one prompt under one schedule, advanced one block at a time.

    `observe(layer, x)` sees every block's output hidden states [1, L, d] as they are made, so that callers
    measure them without the prefill keeping all of them (fedsim.experiment.quality)."""

    def __init__(
        self,
        model: Transformer,
        tokens: Sequence[int] | torch.Tensor,
        partition: Partition,
        schedule: Schedule,
        seed: int = 0,
        precision: Precision = Precision(),
        cache: PrefixCache | None = None,
        observe: Callable[[int, torch.Tensor], None] | None = None,
    ):
        self.model = model
        self.tokens = torch.as_tensor(tokens, dtype=torch.long).reshape(-1)
        self.partition = partition
        self.schedule = schedule
        self.precision = precision
        self.cache = cache
        self.observe = observe
        L, N = len(self.tokens), partition.n_participants
        if L != partition.n_tokens:
            raise ValueError(f"partition covers {partition.n_tokens} tokens but the prompt has {L}")
        if schedule.n_layers != model.cfg.n_layers:
            raise ValueError(f"schedule is for {schedule.n_layers} layers, the model has {model.cfg.n_layers}")
        if np.any(np.diff(partition.owner) < 0):
            raise ValueError("participants must hold contiguous token ranges in participant order")
        self.owner = torch.as_tensor(partition.owner, dtype=torch.long)
        self.sizes = partition.sizes()
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).tolist()
        sparsity = draw_sparsity(partition, schedule, seed)
        self.kept, self.shared = sparsity.kept, sparsity.shared
        self._kept_n = np.bincount(partition.owner[self.kept.numpy()], minlength=N)
        self.rope = model.rope(torch.arange(L))
        self.layer = 0
        self.x = model.embed(self.tokens[None])
        self.kv: list[tuple[torch.Tensor, torch.Tensor]] = []  # [1, L, Hk, d] per finished block
        self.common: list[torch.Tensor] = []  # [L] per finished block
        self.included: list[frozenset[int]] = []
        self.everyone = frozenset(range(N))
        self._key = hashlib.sha256(repr(model.cfg).encode() + self.tokens.numpy().tobytes()
                                   + partition.owner.tobytes() + self.kept.numpy().tobytes()).hexdigest()
        self._counts: dict[tuple[int, frozenset[int]], list[LayerCounts]] = {}
        self._costs: dict[tuple[int, frozenset[int]], list[LayerCost]] = {}
        self._views: tuple[tuple[int, ...], list[PromptView]] = ((), [])

    # -- who sees what -------------------------------------------------------------------------------------
    def common_keys(self, layer: int, included: frozenset[int] | None = None) -> torch.Tensor:
        """[L] bool: the keys every participant sees at `layer` besides its own kept tokens."""
        included = self.everyone if included is None else included
        kind, pub = self.schedule.kind(layer), self.partition.publisher
        if kind == "sync":
            member = torch.zeros(self.partition.n_participants, dtype=torch.bool)
            member[list(included)] = True
            return self.shared[layer] & member[self.owner]
        if kind == "publisher" and pub in included:
            return self.kept & (self.owner == pub)
        return torch.zeros(len(self.tokens), dtype=torch.bool)

    def visible_keys(self, layer: int, included: frozenset[int] | None = None) -> torch.Tensor:
        """[N, L] bool: the prompt keys each participant holds at `layer` (small N x L; for inspection)."""
        own = self.owner[None] == torch.arange(self.partition.n_participants)[:, None]
        return (own & self.kept) | self.common_keys(layer, included)

    def counts(self, layer: int, included: frozenset[int] | None = None) -> list[LayerCounts]:
        """Per-participant counts at `layer`, in closed form. A kept query of p with k own kept tokens up to
        it attends those k plus the common keys before p's range; a token not kept attends itself."""
        included = self.everyone if included is None else frozenset(included)
        key = (layer, included)
        if key not in self._counts:
            part, kind = self.partition, self.schedule.kind(layer)
            common = self.common_keys(layer, included).numpy()
            common_n = np.bincount(part.owner[common], minlength=part.n_participants)
            ahead = np.concatenate([[0], np.cumsum(common_n)[:-1]])
            out = []
            for p, (n, k) in enumerate(zip(self.sizes, self._kept_n.tolist(), strict=True)):
                own_pairs = k * (k + 1) // 2 + (n - k)
                if kind == "sync":
                    sent = int(self.shared[layer][self.starts[p]:self.starts[p] + n].sum())
                elif kind == "publisher" and p == part.publisher:
                    sent = k
                else:
                    sent = 0
                visible = k + int(common_n.sum() - common_n[p])
                out.append(LayerCounts(n, own_pairs + k * int(ahead[p]), own_pairs, visible, sent, k))
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
    @torch.inference_mode()
    def step(self, included: frozenset[int] | None = None) -> list[LayerCounts]:
        """Run the next block for all participants; `included`: whose K/V the others received."""
        layer = self.layer
        if layer >= self.model.cfg.n_layers:
            raise RuntimeError("prefill already finished")
        included = self.everyone if included is None else frozenset(included)
        common = self.common_keys(layer, included)
        hit = None
        if self.cache is not None:
            self._key = hashlib.sha256(self._key.encode() + common.numpy().tobytes()).hexdigest()
            hit = self.cache.get(self._key)
        if hit is not None:
            self.x, k, v = hit
        else:
            q, k, v = self.model.qkv(layer, self.x, self.rope)
            attn = block_attention(q, k, v, self.kept, common, self.starts, self.sizes)
            self.x = self.model.finish(layer, self.x, attn)
            if self.cache is not None:
                self.cache.put(self._key, (self.x, k, v))
        self.kv.append((k, v))
        self.common.append(common)
        self.included.append(included)
        self.layer += 1
        if self.observe is not None:
            self.observe(layer, self.x)
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
    def _prompt_views(self, responders: tuple[int, ...]) -> list[PromptView]:
        """Per block, how these responders read the prompt K/V; built once per responder set."""
        if self._views[0] != responders:
            rows = torch.as_tensor(responders)
            own = (self.owner[None] == rows[:, None]) & self.kept
            views = [PromptView(k, v, own | common) for (k, v), common in zip(self.kv, self.common, strict=True)]
            self._views = (responders, views)
        return self._views[1]

    @torch.inference_mode()
    def extend(
        self,
        responders: Sequence[int],
        tokens: torch.Tensor,
        past: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Feed `tokens` [B, T] after the prompt, row b as seen by participant `responders[b]`.

        Returns logits [B, T, vocab] and the generated-token K/V per block (pass it back as `past`). The
        prompt K/V is read from the one copy every responder shares."""
        self._require_done()
        model, L = self.model, len(self.tokens)
        n_past = 0 if past is None else past[0][0].shape[1]
        views = self._prompt_views(tuple(responders))
        rope = model.rope(torch.arange(L + n_past, L + n_past + tokens.shape[1]))
        x = model.embed(tokens)
        new_past = []
        for layer in range(model.cfg.n_layers):
            q, k, v = model.qkv(layer, x, rope)
            if past is not None:
                k = torch.cat([past[layer][0], k], dim=1)
                v = torch.cat([past[layer][1], v], dim=1)
            new_past.append((k, v))
            x = model.finish(layer, x, decode_attention(q, views[layer], k, v))
        return model.logits(x), new_past

    def decode_cache_keys(self, responder: int, n_generated: int) -> int:
        """K/V entries one new token attends, summed over blocks: the prompt keys the responder holds
        at each block plus the tokens generated so far (including itself)."""
        self._require_done()
        own = int(self._kept_n[responder])
        a, b = self.starts[responder], self.starts[responder] + self.sizes[responder]
        held = sum(own + int(c.sum()) - int(c[a:b].sum()) for c in self.common)
        return held + self.model.cfg.n_layers * (n_generated + 1)

    @torch.inference_mode()
    def continuation_logits(self, responders: Sequence[int], continuation: Sequence[int]) -> torch.Tensor:
        """Teacher-forced next-token logits [B, T, vocab] along a fixed continuation, per responder."""
        first = self.last_logits()[None, None].expand(len(responders), 1, -1)
        if len(continuation) <= 1:
            return first[:, : len(continuation)]
        cont = torch.as_tensor(list(continuation)[:-1], dtype=torch.long)[None].expand(len(responders), -1)
        logits, _ = self.extend(responders, cont)
        return torch.cat([first, logits], dim=1)
