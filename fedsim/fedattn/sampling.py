"""Choosing the next token from logits: greedy, or seeded sampling under one of two named filter rules.

`authors` (the default) is FedAttn's `Wrapper.sample_next_token`: temperature, softmax, keep exactly the
top-k tokens and renormalise, then keep the longest run of the most likely tokens whose running total stays
<= top_p (at least one): the token whose running total crosses p is dropped. `transformers` is the Hugging
Face warpers' rule: top-k keeps ties with the k-th token, and top-p keeps the smallest set whose mass
reaches p, crossing token included. The draw uses a seeded torch.Generator, so a run is reproducible (the
authors' draw is unseeded). Only tensor methods are used, so the scenario schema can list SAMPLERS without
loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

SAMPLERS = ("authors", "transformers")


@dataclass(frozen=True)
class Sampling:
    greedy: bool = True
    temperature: float = 0.2  # the authors' sampling settings (main_evaluate_gsm8k)
    top_k: int = 20
    top_p: float = 0.9
    seed: int = 0
    sampler: str = "authors"  # one of SAMPLERS

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"Sampling.sampler: {self.sampler!r} is not one of {', '.join(SAMPLERS)}")


def sample(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator) -> torch.Tensor:
    """Next token per row of logits [B, vocab]: argmax, or a seeded draw from `filtered_probs`."""
    if sampling.greedy:
        return logits.argmax(-1)
    return filtered_probs(logits, sampling).multinomial(1, generator=generator)[:, 0]


def filtered_probs(logits: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """The distribution a sampling step draws from: temperature, top-k, top-p, renormalised (rows sum to 1)."""
    probs = (logits.float() / sampling.temperature).softmax(-1)
    authors = sampling.sampler == "authors"
    if 0 < sampling.top_k < probs.shape[-1]:
        top = probs.topk(sampling.top_k, dim=-1)
        if authors:  # exactly k tokens
            probs = probs.new_zeros(probs.shape).scatter(-1, top.indices, top.values)
        else:  # every token tied with the k-th stays
            probs = probs.masked_fill(probs < top.values[:, -1:], 0.0)
        probs = probs / probs.sum(-1, keepdim=True)
    if sampling.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        running = sorted_p.cumsum(-1)  # mass of this token and the more likely ones
        drop = running > sampling.top_p if authors else running - sorted_p > sampling.top_p
        drop[:, 0] = False
        probs = probs.new_zeros(probs.shape).scatter(-1, order, sorted_p.masked_fill(drop, 0.0))
        probs = probs / probs.sum(-1, keepdim=True)
    return probs
