"""Attention that costs only the (query, key) pairs FedAttn attends; no L x L tensor is ever built.

Every call goes to torch's CPU flash kernel, which does grouped-query attention natively, honours strides,
and returns the log-sum-exp (LSE) of each query row; attention over a union of disjoint key sets is then the
exact LSE-merge of the attention over each set. FedAttn's structure keeps the sets simple. A block's
visibility is two [L] masks (see fedsim.fedattn.prefill): `kept`, the tokens that attend and are attended
at all (a token not kept attends only to itself), and `common`, the keys every participant sees besides
its own (the shared K/V at a sync block, the publisher's at a publisher block, none at a local block).
Participants own contiguous, increasing token ranges, so a kept query of participant p attends

    its own kept keys up to itself (a causal chunk)  +  the common keys before p's range (a rectangle).

Tensors here are token-major, [batch, tokens, heads, head_dim]; the kernel reads them as [batch, heads,
tokens, head_dim] views, so slicing and batching participants costs no copy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fedsim.models.transformer import attention as flash


def merge(o1: torch.Tensor, l1: torch.Tensor, o2: torch.Tensor, l2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention over two disjoint key sets combined: o [..., d], l [...] (natural-log LSE of scaled scores)."""
    m = torch.maximum(l1, l2)
    w1, w2 = (l1 - m).exp(), (l2 - m).exp()
    s = w1 + w2
    return o1 * (w1 / s)[..., None] + o2 * (w2 / s)[..., None], m + s.log()


def _runs(parts: Sequence[int], starts: Sequence[int], sizes: Sequence[int]) -> list[tuple[int, int, int]]:
    """(first token, participants, size) of maximal runs of adjacent participants with equal sizes: each run
    is one batched call through a [participants, size, heads, d] view."""
    runs: list[tuple[int, int, int]] = []
    for p in parts:
        if sizes[p] == 0:
            continue
        a, g, n = runs[-1] if runs else (0, 0, -1)
        if n == sizes[p] and a + g * n == starts[p]:
            runs[-1] = (a, g + 1, n)
        else:
            runs.append((starts[p], 1, sizes[p]))
    return runs


def _own_causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, parts: Sequence[int], starts: Sequence[int],
                sizes: Sequence[int], out: torch.Tensor, lse: torch.Tensor | None) -> None:
    """Each participant's queries over its own keys, causal; written into out [1, T, H, d] (and lse)."""
    H, d = q.shape[2], q.shape[3]
    for a, g, n in _runs(parts, starts, sizes):
        o, lb = flash(*(x[0, a:a + g * n].reshape(g, n, x.shape[2], d) for x in (q, k, v)), causal=True)
        out[0, a:a + g * n] = o.reshape(g * n, H, d)
        if lse is not None:
            lse[0, a:a + g * n] = lb.reshape(g * n, H)


def _kept_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, common: torch.Tensor,
                    starts: Sequence[int], sizes: Sequence[int]) -> torch.Tensor:
    """Attention among kept tokens only (every token here attends its own causal chunk + the common keys
    before its chunk). Three cases, cheapest first: no common key before anyone (a local block): own chunks
    only; every common key belongs to a participant all of whose tokens are common (a dense sync, or whole
    participants left out): one causal call over the common keys serves those participants; otherwise (a
    sparse sync) every own chunk is merged with its rectangle."""
    T, H, d = q.shape[1], q.shape[2], q.shape[3]
    before = [0, *common.cumsum(0).tolist()]  # common keys before each position
    ahead = [before[a] for a in starts]  # common keys before each participant's chunk
    shares = [before[a + n] - before[a] for a, n in zip(starts, sizes, strict=True)]
    parts = range(len(sizes))
    out = torch.empty(1, T, H, d, dtype=q.dtype)
    if not any(ahead):
        _own_causal(q, k, v, parts, starts, sizes, out, None)
        return out
    sel = None if before[-1] == T else common.nonzero()[:, 0]
    kc, vc = (k, v) if sel is None else (k[:, sel], v[:, sel])
    partial = [p for p in parts if shares[p] < sizes[p]]
    if all(shares[p] == 0 for p in partial):
        o = flash(q if sel is None else q[:, sel], kc, vc, causal=True)[0]
        if sel is None:
            return o  # every key is common: plain causal attention, the centralized kernel
        out[0, sel] = o[0]
    else:
        partial = list(parts)
    lse = torch.empty(1, T, H, dtype=q.dtype)
    _own_causal(q, k, v, partial, starts, sizes, out, lse)
    for p in partial:
        if ahead[p]:
            a, e = starts[p], starts[p] + sizes[p]
            o, lr = flash(q[:, a:e], kc[:, :ahead[p]], vc[:, :ahead[p]])
            out[:, a:e] = merge(out[:, a:e], lse[:, a:e], o, lr)[0]
    return out


def block_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kept: torch.Tensor, common: torch.Tensor,
                    starts: Sequence[int], sizes: Sequence[int]) -> torch.Tensor:
    """FedAttn attention of one block for every participant: q [1, L, H, d], k/v [1, L, Hk, d], kept/common
    [L] bool (common within kept), participant p at tokens [starts[p], starts[p] + sizes[p]). -> [1, L, H, d].
    Kept tokens attend among themselves (compacted, `_kept_attention`); a token not kept attends only to
    itself, so its output is its own value."""
    common = common.clone()  # the last participant's keys are nobody else's concern: count them all common
    common[starts[-1]:] = kept[starts[-1]:]
    if bool(kept.all()):
        return _kept_attention(q, k, v, common, starts, sizes)
    ends = kept.cumsum(0)[torch.as_tensor([a + n - 1 for a, n in zip(starts, sizes, strict=True)])].tolist()
    kept_starts = [0, *ends[:-1]]
    kept_sizes = [e - a for a, e in zip(kept_starts, ends, strict=True)]
    out = torch.empty_like(q)
    out[:, kept] = _kept_attention(q[:, kept], k[:, kept], v[:, kept], common[kept], kept_starts, kept_sizes)
    out[:, ~kept] = v[:, ~kept].repeat_interleave(q.shape[2] // v.shape[2], dim=2)
    return out


class PromptView:
    """How B responders read one block's prompt K/V, which is stored once ([1, L, Hk, d]), never per responder.

    `visible` [B, L]: the prompt keys each responder holds at this block. Where the responders hold few keys
    each (local blocks: about L/N), each one's keys are gathered once per generation into [B, K, Hk, d]
    (K = the largest set; shorter rows masked), as long as that is at most `gather_limit` prompt caches in
    all. Otherwise every responder reads the one shared cache: folded into the rows of a single call (no
    mask when every key is visible, else an additive [B, L] mask), or batched over a stride-0 view."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor, visible: torch.Tensor, gather_limit: float = 3.0):
        B, L = visible.shape
        counts = visible.sum(1)
        widest = int(counts.max())
        self.gathered = widest < L and B * widest <= gather_limit * L
        if self.gathered:
            valid = torch.arange(widest)[None] < counts[:, None]
            idx = torch.zeros(B, widest, dtype=torch.long)
            idx[valid] = visible.nonzero()[:, 1]
            self.k, self.v = k[0, idx], v[0, idx]  # [B, K, Hk, d]
            self.mask = None if bool(valid.all()) else _additive(valid, k.dtype)[:, None, None]
        else:
            self.k, self.v = k, v
            self.mask = None if bool(visible.all()) else _additive(visible, k.dtype)  # [B, L]

    def attend(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q [B, T, H, d] -> (out, lse) over each responder's prompt keys."""
        B, T, H, d = q.shape
        if self.gathered:
            return flash(q, self.k, self.v, mask=self.mask)
        if self.mask is not None and T > 1:
            wide = self.k.expand(B, -1, -1, -1), self.v.expand(B, -1, -1, -1)
            return flash(q, *wide, mask=self.mask[:, None, None])
        o, lse = flash(q.reshape(1, B * T, H, d), self.k, self.v, mask=self.mask)  # T == 1 if masked
        return o.reshape(B, T, H, d), lse.reshape(B, T, H)


def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, float("-inf"))


def decode_attention(q: torch.Tensor, prompt: PromptView, k_gen: torch.Tensor, v_gen: torch.Tensor) -> torch.Tensor:
    """Generated tokens' attention: q [B, T, H, d] over the responder's prompt keys and every generated key up
    to itself, k_gen/v_gen [B, n_past + T, Hk, d] (the T new ones last). -> [B, T, H, d]."""
    T, n_past = q.shape[1], k_gen.shape[1] - q.shape[1]
    o, lse = prompt.attend(q)
    if T == 1 or n_past == 0:
        o2, l2 = flash(q, k_gen, v_gen, causal=T > 1)
    else:  # the past in full, the new tokens causally
        o2, l2 = merge(*flash(q, k_gen[:, :n_past], v_gen[:, :n_past]),
                       *flash(q, k_gen[:, n_past:], v_gen[:, n_past:], causal=True))
    return merge(o, lse, o2, l2)[0]
