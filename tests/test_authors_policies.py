"""The authors' policies as fedsim's defaults: sampling, whole-prompt tokenisation, the publisher's interval and
ratios, the best collaborator over questions, and the scenarios of their grid (docs/authors.md)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import get_args

import pandas as pd
import pytest
import torch

from fedsim.cli import main
from fedsim.common.errors import UserError
from fedsim.experiment.config import DecodingSection, validate_scenario
from fedsim.experiment.plots import _average_replicates
from fedsim.experiment.prompt import tokenize_pieces
from fedsim.experiment.records import best_collaborator
from fedsim.experiment.scenario_file import load_scenario
from fedsim.experiment.setup import prepare
from fedsim.experiment.sweep import expand_grid
from fedsim.fedattn.sampling import SAMPLERS, Sampling, filtered_probs, sample
from fedsim.models.catalog import locate_model_file
from fedsim.models.tokenizer import Tokenizer
from fedsim.workloads.registry import make_task

AUTHORS_SCENARIOS = sorted((Path(__file__).parents[1] / "scenarios" / "authors").glob("*.yaml"))


def probs_after(probs: list[float], **kw) -> list[float]:
    logits = torch.tensor([probs]).log()
    return filtered_probs(logits, Sampling(greedy=False, temperature=1.0, **kw))[0].tolist()


def test_authors_top_p_drops_the_token_that_crosses_p():
    assert probs_after([0.5, 0.3, 0.2], top_k=0, top_p=0.7) == pytest.approx([1.0, 0.0, 0.0])
    assert probs_after([0.5, 0.3, 0.2], top_k=0, top_p=0.8) == pytest.approx([0.625, 0.375, 0.0])  # == p kept
    hf = probs_after([0.5, 0.3, 0.2], top_k=0, top_p=0.7, sampler="transformers")
    assert hf == pytest.approx([0.625, 0.375, 0.0])  # the crossing token stays


def test_authors_top_k_keeps_exactly_k_and_renormalises_before_top_p():
    # renormalised top-2 is [0.571, 0.429]: its running total crosses 0.9 at the second token
    assert probs_after([0.4, 0.3, 0.3], top_k=2, top_p=0.9) == pytest.approx([1.0, 0.0, 0.0])
    kept = probs_after([0.4, 0.3, 0.3], top_k=2, top_p=1.0)
    assert sum(p > 0 for p in kept) == 2 and sum(kept) == pytest.approx(1.0)
    tied = probs_after([0.4, 0.3, 0.3], top_k=2, top_p=1.0, sampler="transformers")
    assert tied == pytest.approx([0.4, 0.3, 0.3])  # ties with the k-th token stay


def test_sampling_never_draws_a_dropped_token_and_is_seeded():
    logits = torch.tensor([[0.5, 0.3, 0.2]]).log().expand(400, -1)
    s = Sampling(greedy=False, temperature=1.0, top_k=0, top_p=0.7, seed=5)
    draws = sample(logits, s, torch.Generator().manual_seed(5))
    assert set(draws.tolist()) == {0}
    s = Sampling(greedy=False, temperature=1.0, top_k=0, top_p=0.95)  # 0.5 + 0.3 + 0.2 crosses 0.95
    a, b = (sample(logits, s, torch.Generator().manual_seed(1)) for _ in range(2))
    assert torch.equal(a, b) and set(a.tolist()) == {0, 1}


def test_the_authors_rules_are_the_defaults_and_reach_the_run_setup():
    assert Sampling().sampler == "authors" and (Sampling().temperature, Sampling().top_k) == (0.2, 20)
    sc = validate_scenario({"model": {"name": "tiny-random"}, "decoding": {"greedy": False, "top_p": 0.8},
                            "schedule": {"H": 2, "r_comp": 0.5, "r_comp_publisher": 1.0, "r_comm_publisher": 0.25}})
    setup = prepare(sc)
    assert setup.sampling == Sampling(False, 0.2, 20, 0.8, 0, "authors")
    assert (setup.schedule.r_comp_publisher, setup.schedule.r_comm_publisher) == (1.0, 0.25)
    with pytest.raises(UserError, match="decoding.sampler"):
        validate_scenario({"decoding": {"sampler": "nucleus"}})
    assert get_args(DecodingSection.model_fields["sampler"].annotation) == SAMPLERS


def test_validate_accepts_a_publisher_interval_above_H(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text("model: {name: tiny-random}\nschedule: {H: 8, publisher_H: 9}\n")
    assert main(["validate", str(path)]) == 0
    assert "ok:" in capsys.readouterr().out


class MergingTokenizer:
    """Characters as tokens, except "\\n\\n" is one token (like Qwen2's pre-tokenizer); optional BOS."""

    def __init__(self, bos: bool = False):
        self.bos = bos

    def encode(self, text: str) -> list[int]:
        ids, i = [0] if self.bos else [], 0
        while i < len(text):
            if text.startswith("\n\n", i):
                ids.append(1000)
                i += 2
            else:
                ids.append(ord(text[i]))
                i += 1
        return ids


def test_whole_prompt_tokens_with_boundaries_from_per_piece_counts():
    pieces = ["ab\n", "\nQ?"]  # a merge straddles the boundary: "ab", "\n\n", "Q", "?"
    tokens, lengths = tokenize_pieces(pieces, MergingTokenizer(), "whole_prompt")
    assert tokens == [97, 98, 1000, 81, 63] and lengths == [3, 2]  # "\n\n" goes to the earlier piece
    tokens, lengths = tokenize_pieces(pieces, MergingTokenizer(), "per_piece")
    assert tokens == [97, 98, 10, 10, 81, 63] and lengths == [3, 3]
    tokens, lengths = tokenize_pieces(["ab", "cd", "e"], MergingTokenizer(bos=True), "whole_prompt")
    assert tokens == [0, 97, 98, 99, 100, 101] and lengths == [3, 2, 1]  # one BOS, with the first piece
    with pytest.raises(UserError, match="partition.tokenization"):
        tokenize_pieces(["a\n", "\n", "\n"], MergingTokenizer(), "whole_prompt")


def test_whole_prompt_is_what_centralized_inference_sees_on_smollm2(real_model):
    sc = validate_scenario({"task": {"shots": 3}, "partition": {"scheme": "question_exclusive"}})
    whole = prepare(sc)
    pieces = [p.text for p in whole.prompt.task.pieces]
    encode = real_model.tokenizer.encode
    assert list(whole.tokens) == encode("".join(pieces))
    per_piece = prepare(validate_scenario({**sc.model_dump(exclude_unset=True), "partition": {
        "scheme": "question_exclusive", "tokenization": "per_piece"}}))
    assert list(per_piece.tokens) == [t for text in pieces for t in encode(text)] != list(whole.tokens)
    # The authors' boundaries: the publisher holds what the other pieces' own counts leave over. SmolLM2
    # merges an exemplar's closing "\n\n" into one token alone but not in the whole text, so each of the
    # 2 joined exemplars counts one token short and the question part starts 2 tokens early.
    counted = sum(len(encode(text)) for text in pieces[:-1])
    assert whole.prompt.partition.sizes()[-1] == len(whole.tokens) - counted
    tail = real_model.tokenizer.decode(whole.tokens[counted:])
    assert tail == "8\n" + pieces[-1] and pieces[-2].endswith("The answer is 8\n")


def test_whole_prompt_boundaries_are_exact_on_qwen():
    """Qwen2's pre-tokenizer keeps "\n\n" whole in both tokenisations, and the last exemplar's "\n" joins the
    question's leading "\n" into one token that the counts give to the exemplar: the question starts at
    "Question", as in the authors' runs."""
    try:
        tok = Tokenizer.from_gguf(locate_model_file("qwen2.5-0.5b"))
    except UserError as err:
        pytest.skip(str(err))
    sc = validate_scenario({"model": {"name": "tiny-random"}, "task": {"shots": 3}})
    pieces = [p.text for p in make_task(sc.task, 0, None).pieces]
    tokens, lengths = tokenize_pieces(pieces, tok, "whole_prompt")
    assert tokens == tok.encode("".join(pieces)) and len(tokens) == sum(len(tok.encode(t)) for t in pieces) - 1
    start = sum(lengths[:-1])
    assert tok.decode(tokens[start:]) == pieces[-1].removeprefix("\n")
    assert tok.decode(tokens[:start]).endswith("The answer is 8\n\n")


def runs_and_participants(rows: list[tuple[int, list[float]]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One run per (question, [publisher, collaborators...] task scores)."""
    runs, parts = [], []
    for q, scores in rows:
        run_id = f"r{q}"
        pub = len(scores) - 1
        runs.append({"run_id": run_id, "task.question_index": q, "schedule.H": 2})
        for p, score in enumerate(scores):
            parts.append({"run_id": run_id, "participant": p, "role": "publisher" if p == pub else "collaborator",
                          "task_correct": score, "kl_mean": 0.1 * (p + 1) + q})
    return pd.DataFrame(runs), pd.DataFrame(parts)


def test_best_collaborator_is_the_best_of_the_collaborators_means():
    # collaborator 0 is right on question 0, collaborator 1 on question 1: each is right half the time
    runs, parts = runs_and_participants([(0, [1.0, 0.0, 1.0]), (1, [0.0, 1.0, 1.0])])
    assert best_collaborator(parts)["task_correct_best_collaborator"] == 0.5  # not the mean of maxima, 1.0
    assert best_collaborator(parts)["kl_mean_best_collaborator"] == pytest.approx(0.6)  # lower is better
    runs["task_correct_best_collaborator"] = [1.0, 1.0]  # what each run reports on its own question
    runs["task_correct_publisher"] = [1.0, 1.0]
    settings = _average_replicates(runs, parts, ["task.question_index"])
    assert settings["task_correct_best_collaborator"].tolist() == [0.5]
    assert settings["task_correct_publisher"].tolist() == [1.0]
    single = best_collaborator(parts[parts.run_id == "r0"])
    assert single["task_correct_best_collaborator"] == 1.0 and math.isnan(
        best_collaborator(parts[parts.role == "publisher"])["task_correct_best_collaborator"])


@pytest.mark.parametrize("path", AUTHORS_SCENARIOS, ids=lambda p: p.stem)
def test_authors_grid_scenarios_validate(path: Path):
    points = expand_grid(load_scenario(path))
    assert len(points) >= 56 and all(p.model.name == "smollm2-135m-instruct" for p in points)
    assert all(p.decoding.greedy and p.decoding.max_new_tokens == 256 for p in points)


def test_authors_grid_covers_every_policy_they_swept():
    names = {p.stem for p in AUTHORS_SCENARIOS}
    assert {"main_H", "main_N", "centralized", "uni_extra", "placement", "sample_uni_comp", "sample_uni_comm",
            "sample_last_comp", "sample_last_comm"} <= names
