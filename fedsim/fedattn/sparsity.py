"""Sparse FedAttn, the authors' semantics (github Activate1996/FedAttn, `utils.build_prefill_and_decode_mask_sample`,
ratios from `main_evaluate_gsm8k.main`): which tokens each participant keeps and which it shares.

- **Kept (r_comp).** Each participant keeps `max(int(r_comp * n), 1)` of its n tokens, drawn once per prompt.
  A token it does not keep attends only to itself, at every block, and no one attends to it: it never
  leaves its own hidden state.
- **Shared (r_comm).** At every sync block each participant shares a fresh draw of
  `max(int(r_comm * kept), 1)` of its kept tokens; the others see only those.
- **The publisher's own ratios.** `r_comp_publisher` and `r_comm_publisher` (the authors' `ratio_last_comp`
  and `ratio_last_comm`) default to the collaborators' ratios; either side may be the sparser one.

The draws are seeded (numpy), participants in order, then the sync blocks in order; a dense ratio draws
nothing. Everything is an [L] mask over global token positions: a token belongs to one participant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fedsim.fedattn.partition import Partition
from fedsim.fedattn.schedule import Schedule


@dataclass(frozen=True)
class Sparsity:
    kept: torch.Tensor  # [L] bool: tokens their owner keeps (they attend and are attended)
    shared: dict[int, torch.Tensor]  # sync layer -> [L] bool: tokens their owner shares there (within kept)


def _subset(rng: np.random.Generator, idx: np.ndarray, ratio: float) -> np.ndarray:
    return idx if ratio >= 1.0 else rng.choice(idx, max(1, int(ratio * len(idx))), replace=False)


def draw_sparsity(partition: Partition, schedule: Schedule, seed: int) -> Sparsity:
    """The kept tokens of every participant and, per sync block, the shared subset of them."""
    rng = np.random.default_rng(seed)
    L, N = partition.n_tokens, partition.n_participants
    per_part = [schedule.ratios(publisher=p == partition.publisher) for p in range(N)]
    kept = np.zeros(L, dtype=bool)
    for p, (r_comp, _) in enumerate(per_part):
        kept[_subset(rng, partition.tokens_of(p), r_comp)] = True
    shared = {}
    for layer in sorted(x for x in schedule.sync_layers if 0 <= x < schedule.n_layers):
        mask = np.zeros(L, dtype=bool)
        for p, (_, r_comm) in enumerate(per_part):
            own = partition.tokens_of(p)
            mask[_subset(rng, own[kept[own]], r_comm)] = True
        shared[layer] = torch.from_numpy(mask)
    return Sparsity(torch.from_numpy(kept), shared)
