"""Decoding after a FedAttn prefill: greedy or seeded sampling, batched over responders.

Each responder decodes from the prompt K/V it holds (fedsim.fedattn.prefill: its own at local blocks, the
gathered K/V at sync blocks); no K/V moves during decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from fedsim.fedattn.prefill import FedAttnPrefill


@dataclass(frozen=True)
class Sampling:
    greedy: bool = True
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0


def sample(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator) -> torch.Tensor:
    """Next token per row of logits [B, vocab]: argmax, or seeded temperature/top-k/top-p sampling."""
    if sampling.greedy:
        return logits.argmax(-1)
    probs = torch.softmax(logits / sampling.temperature, dim=-1)
    if sampling.top_k > 0:
        kth = probs.topk(sampling.top_k, dim=-1).values[:, -1:]
        probs = torch.where(probs < kth, 0.0, probs)
    if sampling.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        drop = sorted_p.cumsum(-1) - sorted_p > sampling.top_p
        probs = probs.scatter(-1, order, torch.where(drop, 0.0, sorted_p))
    return torch.multinomial(probs / probs.sum(-1, keepdim=True), 1, generator=generator)[:, 0]


@torch.inference_mode()
def generate(
    prefill: FedAttnPrefill,
    responders: Sequence[int],
    max_new_tokens: int,
    eos_ids: Sequence[int] = (),
    sampling: Sampling = Sampling(),
) -> list[list[int]]:
    """Generate up to `max_new_tokens` per responder (batched), each stopping at its first EOS."""
    generator = torch.Generator().manual_seed(sampling.seed)
    B = len(responders)
    logits = prefill.last_logits()[None].expand(B, -1)
    out: list[list[int]] = [[] for _ in range(B)]
    finished = [False] * B
    past = None
    eos = set(eos_ids)
    for step in range(max_new_tokens):
        nxt = sample(logits, sampling, generator)
        for b, tok in enumerate(nxt.tolist()):
            if not finished[b]:
                finished[b] = tok in eos
                if not finished[b]:
                    out[b].append(tok)
        if all(finished) or step == max_new_tokens - 1:
            break
        new_logits, past = prefill.extend(responders, nxt[:, None], past)
        logits = new_logits[:, -1]
    return out
