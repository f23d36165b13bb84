"""FedAttn math on a tiny random model: exactness against the centralized oracle, masks, decoding."""

import numpy as np
import pytest
import torch
from closed_form import dense_prefill_flops

from fedsim.fedattn.costs import layer_cost
from fedsim.fedattn.decode import Sampling, generate
from fedsim.fedattn.partition import Partition, partition_pieces
from fedsim.fedattn.prefill import FedAttnPrefill, PrefixCache
from fedsim.fedattn.schedule import make_schedule

L = 40


@pytest.fixture(scope="module")
def tokens(tiny_model):
    return torch.randint(0, tiny_model.cfg.vocab_size, (L,), generator=torch.Generator().manual_seed(1))


def four_way():
    return partition_pieces([10, 12, 8, 10], ["context"] * 3 + ["question"], 4, "contiguous")


def greedy_reference(model, tokens, n):
    seq = tokens.tolist()
    for _ in range(n):
        seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
    return seq[len(tokens):]


def test_every_layer_global_equals_centralized(tiny_model, tokens):
    ref = tiny_model(tokens[None])[0, -1]
    pf = FedAttnPrefill(tiny_model, tokens, four_way(), make_schedule(8, H=1)).run()
    assert (pf.last_logits() - ref).abs().max() < 1e-4
    assert generate(pf, [3], 8)[0] == greedy_reference(tiny_model, tokens, 8)


def test_single_participant_equals_centralized_for_any_schedule(tiny_model, tokens):
    ref = tiny_model(tokens[None])[0, -1]
    solo = Partition(np.zeros(L, dtype=np.int64), 1)
    pf = FedAttnPrefill(tiny_model, tokens, solo, make_schedule(8, H=5)).run()
    assert (pf.last_logits() - ref).abs().max() < 1e-4


def test_local_attention_differs_and_grows_with_H(tiny_model, tokens):
    ref = torch.log_softmax(tiny_model(tokens[None])[0, -1], -1)
    kls = []
    for H in (1, 2, 4, 8):
        pf = FedAttnPrefill(tiny_model, tokens, four_way(), make_schedule(8, H=H)).run()
        logp = torch.log_softmax(pf.last_logits(), -1)
        kls.append(float((ref.exp() * (ref - logp)).sum()))
    assert kls[0] < 1e-6 and kls[-1] > 1e-3
    assert kls[-1] >= kls[1]


def test_excluded_participant_is_invisible_to_others(tiny_model, tokens):
    part = four_way()
    pf = FedAttnPrefill(tiny_model, tokens, part, make_schedule(8, H=2))
    vis = pf.visible_keys(0, frozenset({0, 2, 3}))
    late = torch.as_tensor(part.owner == 1)
    assert not vis[0][late].any() and not vis[3][late].any()
    assert vis[1][late].all()  # a late participant still sees its own tokens and what arrived
    assert vis[1][torch.as_tensor(part.owner == 0)].all()


def test_exclusion_changes_the_math(tiny_model, tokens):
    a = FedAttnPrefill(tiny_model, tokens, four_way(), make_schedule(8, H=2)).run().last_logits()
    pf = FedAttnPrefill(tiny_model, tokens, four_way(), make_schedule(8, H=2))
    while not pf.done:
        pf.step(frozenset({1, 2, 3}))
    assert (pf.last_logits() - a).abs().max() > 1e-4


def test_counts_match_closed_form_dense(tiny_model, tokens):
    part = four_way()
    sched = make_schedule(8, H=3)
    pf = FedAttnPrefill(tiny_model, tokens, part, sched)
    totals = np.zeros(4)
    cfg = tiny_model.cfg
    for _ in range(8):
        for p, c in enumerate(pf.step()):
            cost = layer_cost(cfg, c.n_queries, c.attended_pairs, c.own_pairs, c.visible_keys, c.sent_tokens)
            totals[p] += cost.flops
    totals[3] += 2 * cfg.d_model * cfg.vocab_size  # the publisher's LM head on the last prompt token
    assert np.allclose(totals, dense_prefill_flops(cfg, part.sizes(), sched.sync_layers))


def test_bytes_sent_are_k_and_v_of_shared_tokens(tiny_model, tokens):
    part = four_way()
    pf = FedAttnPrefill(tiny_model, tokens, part, make_schedule(8, H=4, r_comm=0.5))
    counts = pf.counts(0)
    assert [c.sent_tokens for c in counts] == [max(1, int(0.5 * n)) for n in part.sizes()]
    assert all(c.sent_tokens == 0 for c in pf.counts(1))
    k, v = pf.model.qkv(0, pf.x, pf.rope)[1:]
    per_token = (k.shape[2] * k.shape[3] + v.shape[2] * v.shape[3]) * 2  # fp16 on the wire
    assert pf.layer_costs(0)[0].send_bytes == counts[0].sent_tokens * per_token


def test_sparsity_is_seeded_and_publisher_dense(tiny_model, tokens):
    part = four_way()
    sched = make_schedule(8, H=2, r_comp=0.5, r_comm=0.5, publisher_dense=True)
    a = FedAttnPrefill(tiny_model, tokens, part, sched, seed=7)
    b = FedAttnPrefill(tiny_model, tokens, part, sched, seed=7)
    c = FedAttnPrefill(tiny_model, tokens, part, sched, seed=8)
    assert torch.equal(a.kept, b.kept) and not torch.equal(a.kept, c.kept)
    owner = torch.as_tensor(part.owner)
    assert a.kept[owner == 3].sum() == part.sizes()[3]  # publisher keeps everything
    assert a.kept[owner == 0].sum() == part.sizes()[0] // 2
    assert a.shared[0][owner == 3].sum() == part.sizes()[3]


def test_publisher_layer_broadcasts_publisher_kv_only(tiny_model, tokens):
    part = four_way()
    pf = FedAttnPrefill(tiny_model, tokens, part, make_schedule(8, H=4, publisher_H=2))
    assert pf.schedule.kind(2) == "publisher"
    vis = pf.visible_keys(2)
    pub = torch.as_tensor(part.owner == 3)
    assert vis[0][pub].all() and not vis[0][torch.as_tensor(part.owner == 1)].any()
    assert [c.sent_tokens for c in pf.counts(2)] == [0, 0, 0, part.sizes()[3]]


def test_decode_uses_responder_view(tiny_model, tokens):
    pf = FedAttnPrefill(tiny_model, tokens, four_way(), make_schedule(8, H=4)).run()
    cont = [5, 6, 7, 8]
    tf = pf.continuation_logits([0, 3], cont)
    assert tf.shape == (2, 4, tiny_model.cfg.vocab_size)
    assert torch.equal(tf[0, 0], tf[1, 0])  # the first token comes from the shared prefill
    assert (tf[0, 1:] - tf[1, 1:]).abs().max() > 1e-4
    # teacher forcing equals step-by-step decoding of the same tokens
    _, past = pf.extend([0], torch.tensor([[5]]))
    step_logits, _ = pf.extend([0], torch.tensor([[6]]), past)
    assert (step_logits[0, -1] - tf[0, 2]).abs().max() < 1e-4


def test_sampling_is_seeded_and_stops_at_eos(tiny_model, tokens):
    pf = FedAttnPrefill(tiny_model, tokens, four_way(), make_schedule(8, H=2)).run()
    s = Sampling(greedy=False, temperature=1.5, top_k=20, seed=3)
    a, b = generate(pf, [3], 12, sampling=s), generate(pf, [3], 12, sampling=s)
    assert a == b
    c = generate(pf, [3], 12, sampling=Sampling(greedy=False, temperature=1.5, top_k=20, seed=4))
    assert a != c
    first = generate(pf, [3], 1)[0][0]
    assert generate(pf, [3], 12, eos_ids=[first]) == [[]]


def test_prefix_cache_reuses_shared_blocks_exactly(tiny_model, tokens):
    cache = PrefixCache()
    part = four_way()
    a = FedAttnPrefill(tiny_model, tokens, part, make_schedule(8, H=4), cache=cache).run()
    misses = cache.misses
    b = FedAttnPrefill(tiny_model, tokens, part, make_schedule(8, H=8), cache=cache).run()
    assert cache.hits == 4  # blocks 0-3 are identical under H=4 and H=8
    assert cache.misses == misses + 4
    c = FedAttnPrefill(tiny_model, tokens, part, make_schedule(8, H=8)).run()
    assert torch.equal(b.last_logits(), c.last_logits())
    assert not torch.equal(a.last_logits(), b.last_logits())




def test_prefix_cache_skips_entries_too_large_to_share():
    cache = PrefixCache(max_bytes=8_000)
    cache.put("small", (torch.zeros(200),))  # 800 bytes: at most max_bytes / 8
    cache.put("large", (torch.zeros(300),))  # 1,200 bytes would crowd out everything else
    assert list(cache.entries) == ["small"] and cache.nbytes == 800


LONG_PROMPT = """
import resource, torch
from fedsim.fedattn.partition import partition_pieces
from fedsim.fedattn.prefill import FedAttnPrefill
from fedsim.fedattn.schedule import make_schedule
from fedsim.models.loading import load_model
torch.set_num_threads(1)
model = load_model("tiny-random").model
L = 40_000
part = partition_pieces([L], ["question"], 60, "contiguous")
tokens = torch.randint(0, model.cfg.vocab_size, (L,), generator=torch.Generator().manual_seed(0))
pf = FedAttnPrefill(model, tokens, part, make_schedule(8, H=4, r_comm=0.01, r_comp=0.9)).run()
assert torch.isfinite(pf.last_logits()).all()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def test_a_long_prompt_needs_memory_linear_in_its_length():
    """40,000 tokens: one [L, L] bool tensor alone would be 1.6 GB; the whole run stays far below that."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", LONG_PROMPT], capture_output=True, text=True, check=True,
                         cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    assert int(out.stdout.split()[-1]) < 1.0e9
