"""End-to-end runs on the tiny random model: the engine, the math and the closed-form cost model agree."""

import pandas as pd
import pytest
from closed_form import dense_prefill_flops

from fedsim.experiment.config import validate_scenario
from fedsim.experiment.run import run_scenario
from fedsim.experiment.setup import prepare
from fedsim.fedattn.costs import kv_bytes_per_token
from fedsim.models.loading import load_model


def scenario(**over):
    base = {
        "name": "t", "model": {"name": "tiny-random"}, "task": {"kind": "retrieval"},
        "participants": {"n": 3}, "schedule": {"H": 2}, "decoding": {"max_new_tokens": 6},
    }
    for key, value in over.items():
        section, field = key.split("__")
        base.setdefault(section, {})[field] = value
    return validate_scenario(base)


def test_engine_totals_equal_closed_form():
    sc = scenario()
    rec = run_scenario(sc)
    lm = load_model("tiny-random")
    part = prepare(sc).prompt.partition
    sync = {layer for layer in range(lm.cfg.n_layers) if layer % 2 == 0}
    expected = dense_prefill_flops(lm.cfg, part.sizes(), sync)
    # the publisher's LM head on the last prompt token is the first decode step, not prefill
    expected[-1] -= 2 * lm.cfg.d_model * lm.cfg.vocab_size
    assert rec.participants.flops_prefill.tolist() == pytest.approx(expected, rel=1e-12)
    sent = [len(sync) * n * kv_bytes_per_token(lm.cfg) for n in part.sizes()]
    assert rec.participants.bytes_sent.tolist() == pytest.approx(sent)
    assert rec.participants.exposed_layers.tolist() == [sorted(sync)] * 3


def test_centralized_schedule_is_perfect_for_everyone():
    rec = run_scenario(scenario(schedule__H=1))
    p = rec.participants
    assert (p.kl_mean < 1e-9).all() and (p.top1_agree == 1).all() and (p.gen_exact_match == 1).all()
    assert rec.summary["kl_mean_average"] < 1e-9


def test_local_only_moves_metrics_the_wrong_way():
    rec = run_scenario(scenario(schedule__placement="none"))
    assert rec.summary["kl_mean_average"] > 1e-4
    assert rec.participants.bytes_sent.sum() == 0


def test_one_participant_has_no_communication():
    rec = run_scenario(scenario(participants__n=1))
    p = rec.participants.iloc[0]
    assert p.bytes_sent == 0 and p.prefill_comm_s == 0 and p.prefill_wait_s == 0


def test_same_seed_same_records_and_deadline_drops_a_straggler():
    over = {"participants__overrides": {0: {"device": "raspberry-pi-5"}}, "participants__device": "jetson-agx-orin"}
    a = run_scenario(scenario(**over)).participants
    b = run_scenario(scenario(**over)).participants
    pd.testing.assert_frame_equal(a, b)
    slow = run_scenario(scenario(faults__deadline_s=1e-4, **over))
    assert slow.summary["prefill_s"] < a.prefill_s.max()
    assert slow.layers[(slow.layers.participant == 0) & (slow.layers.kind == "sync")].included.eq(False).any()
    assert slow.summary["kl_mean_average"] > 0


def test_dropout_at_a_time_and_by_seeded_probability():
    rec = run_scenario(scenario(faults__dropout={"participant": 1, "at_s": 0.0}))
    p = rec.participants.set_index("participant")
    assert p.dropped.tolist() == [False, True, False]
    assert p.loc[1, "bytes_sent"] == 0 and pd.isna(p.loc[1, "kl_mean"]) and p.loc[1, "exposed_layers"] == []
    assert not rec.layers[(rec.layers.participant == 1) & (rec.layers.kind == "sync")].included.any()
    a = run_scenario(scenario(faults__dropout={"probability": 0.5})).participants.dropped.tolist()
    b = run_scenario(scenario(faults__dropout={"probability": 0.5})).participants.dropped.tolist()
    assert a == b
