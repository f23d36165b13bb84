"""The authors' cost convention (`flops_paper*`, `mem_paper*` columns) against hand-computed examples."""

from __future__ import annotations

import pytest

from fedsim.experiment.config import validate_scenario
from fedsim.experiment.run import run_scenario
from fedsim.experiment.setup import prepare
from fedsim.fedattn.costs import Precision, paper_costs, paper_token_counts
from fedsim.fedattn.schedule import make_schedule
from fedsim.models.loading import load_model
from fedsim.models.transformer import ModelConfig

# Qwen2.5-0.5B's shape: d=896, 24 blocks, 14 heads, 2 K/V heads (head_dim 64), d_ff=4864, vocabulary 151936.
QWEN_05B = ModelConfig("qwen2", 24, 896, 14, 2, 4864, 151936, 1e6, 1e-6)


def test_worked_example_of_the_authors_cost_model():
    """N=4 x 100 tokens, H=8 (syncs 0, 8, 16), participant 0, 50 generated tokens, bf16."""
    cost = paper_costs(QWEN_05B, [100] * 4, 3, make_schedule(24, 8), [50] * 4)[0]
    # 3 syncs over 400 keys: 3,125,248,000 each; 21 local blocks over 100 keys: 3,017,728,000 each;
    # the LM head on one position: 2 * 896 * 151936
    assert cost.flops_prefill == 3 * 3_125_248_000 + 21 * 3_017_728_000 + 272_269_312 == 73_020_301_312
    # 24 * 50 token passes, attention over T_kv + g keys (3 * 21,225 + 21 * 6,225 pairs per 4d), 50 LM heads
    assert cost.flops_decode == 24 * 50 * 29_818_880 + 3584 * (3 * 21_225 + 21 * 6_225) + 13_613_465_600
    assert cost.flops_decode == 50_092_851_200 and cost.flops == cost.flops_prefill + cost.flops_decode
    # K/V cached up to the last block (512 bytes per token and block: 3 * 512 * 400 + 21 * 512 * 100) plus
    # the FFN step's working set 2 * 2 * 100 * (896 + 4864)
    assert cost.mem_prefill_bytes == pytest.approx(1_689_600 + 2_304_000) == 3_993_600
    # the final step's K/V over T_kv + 50 keys, plus the LM head's logits (larger than a block's working set)
    assert cost.mem_decode_bytes == pytest.approx(2_304_000 + 2 * 151_936) == 2_607_872
    assert cost.mem_bytes == cost.mem_prefill_bytes


def test_token_counts_sparse_and_publisher_extra():
    """T_q = int(n r_comp) without a minimum of 1; sync keys add the others' shared int(T_q r_comm); a
    publisher block adds the publisher's tokens, to the publisher's own count too (their double count)."""
    sizes = [37, 37, 37, 40]
    sched = make_schedule(4, 2, r_comp=0.5, r_comm=0.5, r_comp_publisher=1.0, r_comm_publisher=1.0)
    counts = paper_token_counts(sizes, 3, sched)  # syncs 0, 2; kept 18, 18, 18, 40; shared 9, 9, 9, 40
    assert counts[0] == (18, [18 + 9 + 9 + 40, 18, 18 + 9 + 9 + 40, 18])
    assert counts[3] == (40, [40 + 27, 40, 40 + 27, 40])
    one_token = paper_token_counts([100, 100], 1, make_schedule(2, 1, r_comp=0.001))
    assert one_token == [(0, [0, 0]), (0, [0, 0])]  # the masks keep one token; the authors' costs count none
    extra = paper_token_counts([10, 12, 20], 2, make_schedule(6, 4, publisher_H=3))  # sync 0, 4; publisher 3
    assert extra[0] == (10, [42, 10, 10, 30, 42, 10]) and extra[2] == (20, [42, 20, 20, 40, 42, 20])


def test_participants_table_carries_the_paper_columns():
    sc = validate_scenario({"model": {"name": "tiny-random"}, "task": {"kind": "retrieval"},
                            "participants": {"n": 3}, "schedule": {"H": 2}, "decoding": {"max_new_tokens": 4}})
    rec = run_scenario(sc)
    setup, cfg = prepare(sc), load_model("tiny-random").cfg
    p = rec.participants
    expected = paper_costs(cfg, setup.prompt.partition.sizes(), 2, setup.schedule, p.n_generated.tolist(),
                           Precision())
    assert p.flops_paper_prefill.tolist() == [c.flops_prefill for c in expected]
    assert p.flops_paper_decode.tolist() == [c.flops_decode for c in expected]
    assert (p.flops_paper == p.flops_paper_prefill + p.flops_paper_decode).all()
    assert p.mem_paper_prefill_bytes.tolist() == [c.mem_prefill_bytes for c in expected]
    assert (p.mem_paper_bytes == p[["mem_paper_prefill_bytes", "mem_paper_decode_bytes"]].max(axis=1)).all()
    # the rectangle convention counts at least the causal pairs fedsim's own FLOPs count
    assert (p.flops_paper_prefill >= p.flops_prefill).all()
