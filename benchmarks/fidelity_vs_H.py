"""Print how far FedAttn drifts from centralized inference as the sync interval H grows (real model).

N participants hold contiguous slices of a real chat prompt; for each H we report
- prompt KL: mean KL(centralized || federated) of the next-token distributions at every prompt position;
- hidden dev: relative L2 deviation of the last block's hidden states;
- cont. KL / top-1: the publisher's next-token distributions along the centralized greedy continuation.

    python benchmarks/fidelity_vs_H.py [--n 4] [--tokens 32]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from fedsim.fedattn.decode import generate
from fedsim.fedattn.metrics import hidden_deviation, kl_per_position, top1_agreement
from fedsim.fedattn.partition import Partition, partition_pieces
from fedsim.fedattn.prefill import FedAttnPrefill
from fedsim.fedattn.schedule import make_schedule
from fedsim.models.loading import load_model

PROMPT = (
    "The lighthouse keeper kept a logbook. On Monday the keeper counted 12 ships passing the northern rocks. "
    "On Tuesday fog rolled in and only 5 ships passed, all of them fishing boats returning to the harbour. "
    "On Wednesday the keeper repaired the lamp, replacing 3 broken lenses, and noted that the oil supply was low. "
    "On Thursday a supply boat delivered 40 litres of oil and a letter from the keeper's sister, who lives in "
    "the capital and works as a clockmaker. On Friday storms kept every ship in port. "
    "Question: How many ships passed the lighthouse on Monday and Tuesday together, and what does the "
    "keeper's sister do for a living?"
)


def fidelity_table(n: int = 4, new_tokens: int = 32, hs: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 15, 30)) -> list[dict]:
    lm = load_model("smollm2-135m-instruct")
    tokens = lm.tokenizer.encode(lm.tokenizer.render_chat([{"role": "user", "content": PROMPT}]))
    L, n_layers = len(tokens), lm.cfg.n_layers
    solo = Partition(np.zeros(L, dtype=np.int64), 1)
    ref_pf = FedAttnPrefill(lm.model, tokens, solo, make_schedule(n_layers, 1)).run()
    cont = generate(ref_pf, [0], new_tokens, lm.tokenizer.eos_ids)[0]
    ref = ref_pf.continuation_logits([0], cont)
    part = partition_pieces([L], ["question"], n, "contiguous")
    ref_prompt = lm.model.logits(ref_pf.x)
    rows = []
    for H in hs:
        pf = FedAttnPrefill(lm.model, tokens, part, make_schedule(n_layers, H)).run()
        logits = pf.continuation_logits([part.publisher], cont)
        rows.append({"H": H, "syncs": len(pf.schedule.sync_layers),
                     "prompt_kl": float(kl_per_position(ref_prompt, lm.model.logits(pf.x)).mean()),
                     "hidden_dev": hidden_deviation(ref_pf.x, pf.x),
                     "kl": float(kl_per_position(ref, logits).mean()),
                     "top1": float(top1_agreement(ref, logits)[0])})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(2)
    print(f"SmolLM2-135M-Instruct, N={args.n}, chat prompt, contiguous split, "
          f"publisher's view, {args.tokens} teacher-forced tokens")
    print(f"{'H':>3} {'syncs':>5} {'prompt KL':>10} {'hidden dev':>10} {'cont. KL':>9} {'top-1':>6}")
    for r in fidelity_table(args.n, args.tokens):
        print(f"{r['H']:>3} {r['syncs']:>5} {r['prompt_kl']:>10.4f} {r['hidden_dev']:>10.4f} {r['kl']:>9.4f} "
              f"{r['top1']:>6.3f}")


if __name__ == "__main__":
    main()
