"""Quality of a run: the centralized reference (the oracle) and every participant's fidelity to it as a
responder, plus its task score."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from fedsim.experiment.setup import RunSetup
from fedsim.fedattn.decode import generate
from fedsim.fedattn.metrics import hidden_deviation, kl_per_position, token_overlap, top1_agreement
from fedsim.fedattn.partition import Partition
from fedsim.fedattn.prefill import FedAttnPrefill
from fedsim.fedattn.schedule import make_schedule
from fedsim.models.loading import LoadedModel
from fedsim.workloads.registry import score

LOGITS_PER_BATCH = 1 << 24  # teacher-forced logits held at once (64 MB of fp32): responders go in batches


@dataclass(frozen=True)
class Reference:
    """Centralized inference on one prompt: the oracle every metric compares against."""

    continuation: list[int]
    logits: torch.Tensor  # [T, vocab] teacher-forced along `continuation`
    hidden: list[torch.Tensor]  # per block, [L, d]


def centralized_reference(lm: LoadedModel, tokens: tuple[int, ...], max_new_tokens: int) -> Reference:
    hidden: list[torch.Tensor] = []
    solo = Partition(np.zeros(len(tokens), dtype=np.int64), 1)
    pf = FedAttnPrefill(lm.model, tokens, solo, make_schedule(lm.cfg.n_layers, 1),
                        observe=lambda layer, x: hidden.append(x[0])).run()
    cont = generate(pf, [0], max_new_tokens, lm.tokenizer.eos_ids)[0]
    scored = cont if cont else [int(pf.last_logits().argmax())]
    logits = pf.continuation_logits([0], scored)[0]
    return Reference(cont, logits, hidden)


@dataclass
class HiddenDeviations:
    """[layer][participant] relative L2 deviation of a block's output on the participant's tokens from the
    centralized one, taken as the prefill makes each block (pass it as the prefill's `observe`), so that no
    run keeps every block's hidden states."""

    ref: Reference
    partition: Partition
    table: list[list[float]] = field(default_factory=list)

    def __call__(self, layer: int, x: torch.Tensor) -> None:
        if layer != len(self.table):
            raise RuntimeError(f"block {layer} observed after {len(self.table)} blocks")
        bounds = np.concatenate([[0], np.cumsum(self.partition.sizes())]).tolist()
        ref = self.ref.hidden[layer]
        self.table.append([hidden_deviation(ref[a:b], x[0, a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)])


def _fidelity(prefill: FedAttnPrefill, ref: Reference, who: Sequence[int], scored: list[int]) -> tuple[list, list]:
    """KL and top-1 agreement along the centralized continuation, per responder, in batches of responders."""
    per_batch = max(1, LOGITS_PER_BATCH // (len(scored) * ref.logits.shape[-1]))
    kl: list[float] = []
    top1: list[float] = []
    for start in range(0, len(who), per_batch):
        logits = prefill.continuation_logits(who[start:start + per_batch], scored)
        kl += kl_per_position(ref.logits[None], logits).mean(-1).tolist()  # the reference broadcasts
        top1 += top1_agreement(ref.logits[None], logits).tolist()
    return kl, top1


def measure_quality(lm: LoadedModel, prefill: FedAttnPrefill, ref: Reference, setup: RunSetup,
                    hidden_last: list[float]) -> dict[str, list]:
    """Every participant as a responder: fidelity along the centralized continuation, its own generation
    (batched over participants) and the task score of that generation."""
    who = list(range(prefill.partition.n_participants))
    scored = ref.continuation if ref.continuation else [int(ref.logits[0].argmax())]
    kl, top1 = _fidelity(prefill, ref, who, scored)
    gens = generate(prefill, who, setup.max_new_tokens, lm.tokenizer.eos_ids, setup.sampling)
    texts = [lm.tokenizer.decode(g) for g in gens]
    return {
        "kl_mean": kl,
        "top1_agree": top1,
        "hidden_dev_last": hidden_last,
        "gen_exact_match": [float(g == ref.continuation) for g in gens],
        "gen_token_overlap": [token_overlap(ref.continuation, g) for g in gens],
        "task_correct": [score(setup.prompt.task_kind, t, setup.prompt.task.answer) for t in texts],
        "generated_text": texts,
        "n_generated": [len(g) for g in gens],
    }
