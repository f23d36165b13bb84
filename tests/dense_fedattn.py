"""An independent dense-mask formulation of FedAttn, for tests only: the authors' per-layer [L, L] masks
(github Activate1996/FedAttn, utils.build_prefill_and_decode_mask_sample and build_*_masks_customized),
built participant by participant from index sets, and a model run under them with plain masked softmax
attention. It shares nothing with fedsim's attention but the model's projections; the random draws (which
tokens are kept and shared) are its inputs.

Rules (R_c: tokens client c keeps; C_j: the union of the tokens the included clients share at sync j):
- prefill, query t of client c: t not kept -> only itself; local block -> s <= t in R_c; sync block ->
  s <= t in R_c or C_j; publisher block -> s <= t in R_c or R_publisher (if the publisher is included);
- decode, responder c, every generated token: prompt keys R_c (local), R_c + C_j (sync), R_c + R_publisher
  (publisher block), and every generated token up to itself.
"""

import math

import torch


def masked_attention(q, k, v, mask):
    """q [1, T, H, d], k/v [1, S, Hk, d] token-major, mask [T, S] bool -> [1, T, H, d] (float64 inside)."""
    rep = q.shape[2] // k.shape[2]
    k, v = k.repeat_interleave(rep, dim=2).double(), v.repeat_interleave(rep, dim=2).double()
    scores = torch.einsum("bthd,bshd->bhts", q.double(), k) / math.sqrt(q.shape[-1])
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    return torch.einsum("bhts,bshd->bthd", weights, v).float()


def prompt_keys(owner, kept, shared, kind, included, publisher, client):
    """Index set of the prompt keys `client` may use at a block of `kind` (before causality)."""
    keys = {s for s in range(len(owner)) if owner[s] == client and kept[s]}
    if kind == "sync":
        keys |= {s for s in range(len(owner)) if shared[s] and owner[s] in included}
    elif kind == "publisher" and publisher in included:
        keys |= {s for s in range(len(owner)) if owner[s] == publisher and kept[s]}
    return keys


def prefill_mask(owner, kept, shared, kind, included, publisher):
    L = len(owner)
    mask = torch.zeros(L, L, dtype=torch.bool)
    for c in sorted(set(owner)):
        rows = [t for t in range(L) if owner[t] == c and kept[t]]
        cols = sorted(prompt_keys(owner, kept, shared, kind, included, publisher, c))
        if rows and cols:
            mask[torch.tensor(rows)[:, None], torch.tensor(cols)[None, :]] = True
    mask &= torch.ones(L, L, dtype=torch.bool).tril()
    for t in range(L):
        if not kept[t]:
            mask[t, t] = True
    return mask


def block_masks(pf, included_per_layer):
    """The prefill mask of every block, from the prefill's draws (pf.kept, pf.shared) and included sets."""
    owner, kept = pf.partition.owner.tolist(), pf.kept.tolist()
    masks = []
    for layer, included in enumerate(included_per_layer):
        kind = pf.schedule.kind(layer)
        shared = pf.shared[layer].tolist() if kind == "sync" else [False] * len(owner)
        masks.append(prefill_mask(owner, kept, shared, kind, included, pf.partition.publisher))
    return masks


def dense_run(model, tokens, masks):
    """Hidden states [1, T, d] after the last block, attention under masks[layer] ([T, T] bool)."""
    T = len(tokens)
    x = model.embed(torch.as_tensor(tokens)[None])
    rope = model.rope(torch.arange(T))
    for layer, mask in enumerate(masks):
        q, k, v = model.qkv(layer, x, rope)
        x = model.finish(layer, x, masked_attention(q, k, v, mask))
    return x


def decode_masks(pf, included_per_layer, responder, n_new):
    """Masks over prompt + n_new generated tokens as `responder` decodes them (teacher forcing)."""
    owner, kept = pf.partition.owner.tolist(), pf.kept.tolist()
    L, masks = len(owner), []
    prompts = block_masks(pf, included_per_layer)
    for layer, (prompt, included) in enumerate(zip(prompts, included_per_layer, strict=True)):
        kind = pf.schedule.kind(layer)
        shared = pf.shared[layer].tolist() if kind == "sync" else [False] * L
        keys = sorted(prompt_keys(owner, kept, shared, kind, included, pf.partition.publisher, responder))
        mask = torch.zeros(L + n_new, L + n_new, dtype=torch.bool)
        mask[:L, :L] = prompt
        mask[L:, torch.tensor(keys)] = True
        mask[L:, L:] = torch.ones(n_new, n_new, dtype=torch.bool).tril()
        masks.append(mask)
    return masks
