"""Decoding after a FedAttn prefill: greedy or seeded sampling, batched over responders.

Each responder decodes from the prompt K/V it holds (fedsim.fedattn.prefill: its own at local blocks, the
gathered K/V at sync blocks); no K/V moves during decoding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fedsim.fedattn.prefill import FedAttnPrefill
from fedsim.fedattn.sampling import Sampling, sample


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
