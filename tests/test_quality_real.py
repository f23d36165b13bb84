"""Quality metrics on the real model: perfect for the centralized schedule, worse when information is removed,
and the retrieval task needs cross-participant attention."""

import pytest

from fedsim.experiment.config import validate_scenario
from fedsim.experiment.run import run_scenario


def run(task: dict, **schedule) -> dict:
    sc = validate_scenario({
        "model": {"name": "smollm2-135m-instruct"}, "task": task, "participants": {"n": 4},
        "partition": {"scheme": "exemplars_question_exclusive" if task["kind"] == "retrieval" else "contiguous"},
        "schedule": schedule, "decoding": {"max_new_tokens": 8},
    })
    return run_scenario(sc).summary


@pytest.fixture(scope="module")
def gsm8k(real_model):
    task = {"kind": "gsm8k", "shots": 1, "question_index": 2}
    return run(task, H=1), run(task, H=4), run(task, placement="none")


def test_metrics_are_perfect_for_the_centralized_schedule(gsm8k):
    central = gsm8k[0]
    for role in ("publisher", "best_collaborator", "average"):
        assert central[f"kl_mean_{role}"] < 1e-6
        assert central[f"top1_agree_{role}"] == 1.0
        assert central[f"hidden_dev_last_{role}"] < 1e-4
        assert central[f"gen_exact_match_{role}"] == 1.0
        assert central[f"gen_token_overlap_{role}"] == 1.0


def test_metrics_move_the_right_way_when_information_is_removed(gsm8k):
    central, _, local = gsm8k
    assert local["kl_mean_average"] > 0.05
    assert local["top1_agree_average"] < central["top1_agree_average"]
    assert local["hidden_dev_last_average"] > 0.05
    assert local["gen_token_overlap_average"] < central["gen_token_overlap_average"]
    assert local["bytes_sent_per_participant"] == 0 < gsm8k[1]["bytes_sent_per_participant"]


def test_retrieval_needs_cross_participant_attention(real_model):
    seeds = range(3)
    central = [run({"kind": "retrieval", "fact_piece": s}, H=1)["task_correct_publisher"] for s in seeds]
    local = [run({"kind": "retrieval", "fact_piece": s}, placement="none")["task_correct_publisher"] for s in seeds]
    assert sum(central) >= 2
    assert sum(local) == 0
