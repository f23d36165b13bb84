"""Quality of a run: the centralized reference (the oracle) and every participant's fidelity to it as a
responder, plus its task score."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class Reference:
    """Centralized inference on one prompt: the oracle every metric compares against."""

    continuation: list[int]
    logits: torch.Tensor  # [T, vocab] teacher-forced along `continuation`
    hidden: list[torch.Tensor]  # per block, [L, d]


def centralized_reference(lm: LoadedModel, tokens: tuple[int, ...], max_new_tokens: int) -> Reference:
    solo = Partition(np.zeros(len(tokens), dtype=np.int64), 1)
    pf = FedAttnPrefill(lm.model, tokens, solo, make_schedule(lm.cfg.n_layers, 1)).run()
    cont = generate(pf, [0], max_new_tokens, lm.tokenizer.eos_ids)[0]
    scored = cont if cont else [int(pf.last_logits().argmax())]
    logits = pf.continuation_logits([0], scored)[0]
    return Reference(cont, logits, [h[0] for h in pf.hidden])


def hidden_deviations(prefill: FedAttnPrefill, ref: Reference) -> list[list[float]]:
    """[layer][participant] relative L2 deviation of the block's output on the participant's tokens."""
    owner = torch.as_tensor(prefill.partition.owner)
    who = range(prefill.partition.n_participants)
    return [[hidden_deviation(ref.hidden[layer][owner == p], prefill.hidden[layer][0][owner == p]) for p in who]
            for layer in range(prefill.model.cfg.n_layers)]


def measure_quality(lm: LoadedModel, prefill: FedAttnPrefill, ref: Reference, setup: RunSetup,
                    hidden_last: list[float]) -> dict[str, list]:
    """Every participant as a responder: fidelity along the centralized continuation, its own generation
    (batched over participants) and the task score of that generation."""
    who = list(range(prefill.partition.n_participants))
    scored = ref.continuation if ref.continuation else [int(ref.logits[0].argmax())]
    logits = prefill.continuation_logits(who, scored)
    ref_logits = ref.logits[None].expand_as(logits)
    gens = generate(prefill, who, setup.max_new_tokens, lm.tokenizer.eos_ids, setup.sampling)
    texts = [lm.tokenizer.decode(g) for g in gens]
    return {
        "kl_mean": kl_per_position(ref_logits, logits).mean(-1).tolist(),
        "top1_agree": top1_agreement(ref_logits, logits).tolist(),
        "hidden_dev_last": hidden_last,
        "gen_exact_match": [float(g == ref.continuation) for g in gens],
        "gen_token_overlap": [token_overlap(ref.continuation, g) for g in gens],
        "task_correct": [score(setup.prompt.task_kind, t, setup.prompt.task.answer) for t in texts],
        "generated_text": texts,
        "n_generated": [len(g) for g in gens],
    }
