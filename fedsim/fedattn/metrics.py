"""How far a federated run is from centralized inference (the paper's error-propagation quantity).

All metrics are zero / perfect when the federated run *is* the centralized one:
- `kl_mean`: mean KL(centralized || federated) of next-token distributions along the centralized greedy
  continuation, teacher-forced (so every position compares the same context);
- `top1_agree`: fraction of those positions where both argmaxes agree;
- `hidden_dev`: relative L2 deviation of a block's output hidden states from the centralized ones;
- `gen_exact_match` and `gen_token_overlap` (LCS F1 over token ids) compare free-running greedy
  generations with the centralized one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def kl_per_position(reference_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(ref || other) in nats for every position of [..., vocab] logits."""
    ref = torch.log_softmax(reference_logits.double(), -1)
    other = torch.log_softmax(logits.double(), -1)
    return (ref.exp() * (ref - other)).sum(-1).clamp_min(0.0)


def top1_agreement(reference_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per-row fraction of positions whose argmax agrees; logits are [B, T, vocab]."""
    return (reference_logits.argmax(-1) == logits.argmax(-1)).double().mean(-1)


def hidden_deviation(reference: torch.Tensor, hidden: torch.Tensor) -> float:
    """||h - h_ref|| / ||h_ref|| over a set of token rows."""
    return float((hidden - reference).norm() / reference.norm().clamp_min(1e-12))


def lcs_length(a: Sequence[int], b: Sequence[int]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def token_overlap(reference: Sequence[int], generated: Sequence[int]) -> float:
    """LCS-based F1 between two token sequences (1.0 when identical, also when both are empty)."""
    if not reference and not generated:
        return 1.0
    lcs = lcs_length(reference, generated)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(generated), lcs / len(reference)
    return 2 * precision * recall / (precision + recall)
