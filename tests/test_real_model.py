"""The real SmolLM2-135M-Instruct: plain torch equals transformers, FedAttn equals the oracle when it should,
and drifts from it as synchronisation gets sparser."""

import numpy as np
import pytest
import torch

from fedsim.fedattn.decode import generate
from fedsim.fedattn.metrics import kl_per_position
from fedsim.fedattn.partition import Partition, partition_pieces
from fedsim.fedattn.prefill import FedAttnPrefill
from fedsim.fedattn.schedule import make_schedule

TEXT = (
    "The lighthouse keeper counted 12 ships on Monday and 5 on Tuesday. On Wednesday he repaired the lamp "
    "and replaced 3 lenses. His sister, a clockmaker in the capital, sent a letter with the oil delivery. "
    "How many ships passed on Monday and Tuesday together?"
)


@pytest.fixture(scope="module")
def prompt(real_model):
    return real_model.tokenizer.encode(real_model.tokenizer.render_chat([{"role": "user", "content": TEXT}]))


def test_plain_torch_equals_transformers(real_model, prompt):
    transformers = pytest.importorskip("transformers")
    from fedsim.models.catalog import locate_model_file

    path = locate_model_file("smollm2-135m-instruct")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                           dtype=torch.float32)
    with torch.no_grad():
        ours = real_model.model(torch.tensor([prompt]))
        theirs = hf(torch.tensor([prompt])).logits
    assert (ours - theirs).abs().max() < 1e-4


def test_centralized_schedules_are_exact(real_model, prompt):
    L = len(prompt)
    ref = real_model.model(torch.tensor([prompt]), last_only=True)[0, -1]
    solo = Partition(np.zeros(L, dtype=np.int64), 1)
    four = partition_pieces([L], ["question"], 4, "contiguous")
    eos = real_model.tokenizer.eos_ids
    gens = []
    for part, H in ((solo, 7), (four, 1)):
        pf = FedAttnPrefill(real_model.model, prompt, part, make_schedule(30, H)).run()
        assert (pf.last_logits() - ref).abs().max() < 1e-4
        gens.append(generate(pf, [part.publisher], 12, eos)[0])
    seq = list(prompt)
    for _ in range(12):  # plain greedy decoding without any KV cache
        nxt = int(real_model.model(torch.tensor([seq]), last_only=True)[0, -1].argmax())
        if nxt in eos:
            break
        seq.append(nxt)
    assert gens[0] == gens[1] == seq[L:]


def test_divergence_appears_and_grows_with_H(real_model, prompt):
    L = len(prompt)
    four = partition_pieces([L], ["question"], 4, "contiguous")
    model = real_model.model
    central = model.logits(FedAttnPrefill(model, prompt, four, make_schedule(30, 1)).run().x)
    kl = {}
    for H in (1, 2, 30):
        pf = FedAttnPrefill(model, prompt, four, make_schedule(30, H)).run()
        kl[H] = float(kl_per_position(central, model.logits(pf.x)).mean())
    assert kl[1] < 1e-6
    assert kl[2] > 0.05
    assert kl[30] > kl[2]


def test_fedattn_equals_transformers_with_per_layer_masks(real_model, prompt):
    """An independent implementation, the authors' approach: Hugging Face's model with a custom mask per
    layer (tests/dense_fedattn.py: local = own kept tokens, causal; global = own kept + shared, causal; a
    token not kept sees only itself). FedAttn must agree with it, dense and sparse (with a publisher that
    keeps more than the collaborators and does not keep the last prompt token)."""
    transformers = pytest.importorskip("transformers")
    from dense_fedattn import block_masks
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from fedsim.models.catalog import locate_model_file

    masks: list[torch.Tensor] = []

    def per_layer_mask(module, query, key, value, attention_mask, **kwargs):
        return sdpa_attention_forward(module, query, key, value, masks[module.layer_idx][None, None], **kwargs)

    AttentionInterface.register("fedattn_reference", per_layer_mask)
    path = locate_model_file("smollm2-135m-instruct")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                           dtype=torch.float32)
    hf.config._attn_implementation = "fedattn_reference"
    part = partition_pieces([len(prompt)], ["question"], 4, "contiguous")
    central = real_model.model(torch.tensor([prompt]), last_only=True)[0, -1]
    sparse = make_schedule(30, 3, r_comp=0.5, r_comm=0.5, r_comp_publisher=0.8)
    seed = next(s for s in range(100) if not FedAttnPrefill(real_model.model, prompt, part, sparse, seed=s).kept[-1])
    for schedule, s in ((make_schedule(30, 3), 0), (sparse, seed)):
        pf = FedAttnPrefill(real_model.model, prompt, part, schedule, seed=s).run()
        masks[:] = block_masks(pf, [pf.everyone] * 30)
        with torch.no_grad():
            theirs = hf(torch.tensor([prompt])).logits[0, -1]
        assert (pf.last_logits() - theirs).abs().max() < 1e-4
        assert (pf.last_logits() - central).abs().max() > 0.1
