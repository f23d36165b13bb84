"""FedAttn against an independent dense-mask formulation of the authors' policies (tests/dense_fedattn.py):
sparse local attention (r_comp), sparse sync (r_comm), asymmetric publisher ratios on either side,
publisher blocks (also at an interval >= H), deadline exclusions; prefill, decoding and counts."""

import numpy as np
import pytest
import torch
from dense_fedattn import block_masks, decode_masks, dense_run

from fedsim.fedattn.partition import Partition, partition_pieces
from fedsim.fedattn.prefill import FedAttnPrefill
from fedsim.fedattn.schedule import make_schedule
from fedsim.fedattn.sparsity import draw_sparsity


def prompt(model, n, seed=1):
    return torch.randint(0, model.cfg.vocab_size, (n,), generator=torch.Generator().manual_seed(seed))


def sized(lengths):
    return Partition(np.repeat(np.arange(len(lengths)), lengths), len(lengths))


SIZES = {"even": [10, 12, 8, 10], "long": [260, 250, 199, 241, 151]}
CASES = {
    "dense": ("even", dict(H=2), {}),
    "r_comp": ("even", dict(H=2, r_comp=0.5), {}),
    "r_comp_r_comm": ("even", dict(H=2, r_comp=0.5, r_comm=0.3), {}),
    "publisher_sparser": ("even", dict(H=2, r_comp=0.8, r_comm=0.8, r_comp_publisher=0.3, r_comm_publisher=0.5), {}),
    "collaborators_sparser": ("even", dict(H=2, r_comp=0.4, r_comm=0.5, publisher_dense=True), {}),
    "publisher_blocks": ("even", dict(H=4, publisher_H=2, r_comp=0.6, r_comm_publisher=0.5), {}),
    "publisher_interval_beyond_H": ("even", dict(H=4, publisher_H=5, r_comp=0.7), {}),  # extra block at 5
    "exclusion": ("even", dict(H=2), {0: {0, 2, 3}, 4: {1, 2, 3}}),
    "exclusion_sparse": ("even", dict(H=2, r_comp=0.7, r_comm=0.5), {2: {0, 1, 3}}),
    "long_sparse_exclusion": ("long", dict(H=3, r_comm=0.5), {3: {0, 2, 3, 4}}),
    "long_dense": ("long", dict(H=3), {}),
}


def run_case(model, name):
    sizes, kwargs, excluded = CASES[name]
    lengths = SIZES[sizes]
    part = sized(lengths)
    schedule = make_schedule(8, **kwargs)
    assert "publisher_H" not in kwargs or schedule.publisher_layers
    pf = FedAttnPrefill(model, prompt(model, sum(lengths)), part, schedule, seed=3)
    included = [frozenset(excluded.get(layer, range(len(lengths)))) for layer in range(8)]
    for inc in included:
        pf.step(inc)
    return pf, included


@pytest.mark.parametrize("name", CASES)
def test_prefill_and_counts_equal_dense_masks(tiny_model, name):
    pf, included = run_case(tiny_model, name)
    masks = block_masks(pf, included)
    dense = dense_run(tiny_model, pf.tokens.tolist(), masks)
    assert (pf.x - dense).abs().max() < 1e-4
    owner = torch.as_tensor(pf.partition.owner)
    for layer, mask in enumerate(masks):
        for p, c in enumerate(pf.counts(layer, included[layer])):
            rows = mask[owner == p]
            assert c.attended_pairs == int(rows.sum())
            assert c.own_pairs == int(rows[:, owner == p].sum())
            assert c.kept_queries == int(pf.kept[owner == p].sum())
            assert c.visible_keys == int(pf.visible_keys(layer, included[layer])[p].sum())


@pytest.mark.parametrize("name", ["r_comp_r_comm", "publisher_sparser", "publisher_blocks",
                                  "publisher_interval_beyond_H", "exclusion", "long_sparse_exclusion"])
def test_decoding_equals_dense_masks(tiny_model, name):
    pf, included = run_case(tiny_model, name)
    cont = [5, 6, 7, 8]
    who = list(range(pf.partition.n_participants))
    teacher = pf.continuation_logits(who, cont)
    for r in who:
        masks = decode_masks(pf, included, r, len(cont) - 1)
        dense = tiny_model.logits(dense_run(tiny_model, pf.tokens.tolist() + cont[:-1], masks))[0, -len(cont):]
        assert (teacher[r] - dense).abs().max() < 1e-4
    _, past = pf.extend(who, torch.tensor([[5]] * len(who)))  # step by step: one token at a time
    step, _ = pf.extend(who, torch.tensor([[6]] * len(who)), past)
    assert (step[:, -1] - teacher[:, 2]).abs().max() < 1e-4


def test_token_not_kept_attends_only_itself_and_no_one_attends_it(tiny_model):
    part = partition_pieces([10, 12, 8, 10], ["context"] * 3 + ["question"], 4, "contiguous")
    sched = make_schedule(8, H=2, r_comp=0.5)
    seed = next(s for s in range(50) if not draw_sparsity(part, sched, s).kept[-1])
    tokens = prompt(tiny_model, 40)
    pf = FedAttnPrefill(tiny_model, tokens, part, sched, seed=seed).run()
    dropped = int((~pf.kept[:-1]).nonzero()[0, 0])
    other = tokens.clone()
    other[:-1] = (other[:-1] + 1) % tiny_model.cfg.vocab_size  # everything the last token could have seen
    other[dropped] = tokens[dropped]
    moved = FedAttnPrefill(tiny_model, other, part, sched, seed=seed).run()
    assert torch.equal(pf.last_logits(), moved.last_logits())  # the last token saw only itself
    changed = tokens.clone()
    changed[dropped] = (changed[dropped] + 1) % tiny_model.cfg.vocab_size
    poked = FedAttnPrefill(tiny_model, changed, part, sched, seed=seed).run()
    keep = torch.arange(40) != dropped
    assert torch.equal(pf.x[0, keep], poked.x[0, keep])  # nobody read the dropped token


def test_sparsity_draws_follow_the_authors_counts_and_ratios():
    part = sized([37, 40, 23])
    owner = torch.as_tensor(part.owner)
    for kwargs, comp, comm in (
        (dict(r_comp=0.5, r_comm=0.3), [18, 20, 11], [5, 6, 3]),
        (dict(r_comp=0.5, r_comm=0.3, r_comp_publisher=0.2, r_comm_publisher=1.0), [18, 20, 4], [5, 6, 4]),
        (dict(r_comp=0.5, r_comm=0.3, publisher_dense=True), [18, 20, 23], [5, 6, 23]),
        (dict(r_comp=0.01), [1, 1, 1], [1, 1, 1]),
    ):
        sp = draw_sparsity(part, make_schedule(8, H=4, **kwargs), seed=0)
        assert [int(sp.kept[owner == p].sum()) for p in range(3)] == comp
        assert sorted(sp.shared) == [0, 4]
        for shared in sp.shared.values():
            assert not (shared & ~sp.kept).any()
            assert [int(shared[owner == p].sum()) for p in range(3)] == comm
    sp = draw_sparsity(part, make_schedule(8, H=4, r_comm=0.5), seed=0)
    assert not torch.equal(sp.shared[0], sp.shared[4])  # a fresh draw per sync block

