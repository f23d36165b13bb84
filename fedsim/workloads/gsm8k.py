"""GSM8K chain-of-thought prompts in the FedAttn authors' format, from exemplars shipped in lm-eval.

The 8 gsm8k-cot exemplars are read from one file of the lm-eval distribution, `lm_eval/tasks/gsm8k/
gsm8k-cot.yaml`, inside the wheel that `setup.sh` downloads once with `pip download --no-deps
lm_eval==0.4.13` into the cache folder (`lm_eval_wheel_dir()`). lm-eval is never installed (installing
it without its many dependencies leaves pip with a broken environment) nor imported, no dataset is
downloaded, and nothing is copied into this repo; after set-up it works offline. An lm-eval that is
installed anyway is the fallback. With no test split available, questions are leave-one-out: question
i is exemplar i, and the prompt uses the first `shots` of the other 7 (lm-eval's `first_n` order).
Answer extraction follows the authors' order: \\boxed{...}, then "the answer is N", then the last number
in the last 5 lines.
"""

from __future__ import annotations

import importlib.util
import re
import zipfile
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field

from fedsim.common.errors import UserError
from fedsim.models.catalog import cache_dir
from fedsim.workloads.base import Chat, PromptPiece, Task, TaskParams, Workload, wrap_chat

LM_EVAL = "lm_eval==0.4.13"  # the distribution the exemplars come from (setup.sh downloads its wheel)
TASK_YAML = "lm_eval/tasks/gsm8k/gsm8k-cot.yaml"  # the one file read, as named inside the distribution
N_EXEMPLARS = 8

# A number: thousands-grouped ("1,234.5") or plain ("-12", "3.5", "3/4").
NUMBER = r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:/\d+)?"
KEYWORD_RE = re.compile(rf"answer\s*(?:is)?\s*[:=]?\s*\$?\s*({NUMBER})", re.IGNORECASE)
NUMBER_RE = re.compile(NUMBER)


@dataclass(frozen=True)
class Exemplar:
    """One worked example: the CoT without its final "The answer is N." sentence, and N."""

    question: str
    cot: str
    answer: str

    def text(self) -> str:
        """The authors' exemplar format (their prompt files end with one newline)."""
        return f"Question: {self.question}\nLet's think step by step\n{self.cot}\nThe answer is {self.answer}\n"


def lm_eval_wheel_dir() -> Path:
    """Where setup.sh puts the lm-eval wheel: `<fedsim cache>/wheels`."""
    return cache_dir() / "wheels"


def lm_eval_task_yaml() -> str:
    """The text of gsm8k-cot.yaml: from the downloaded lm-eval wheel, else from an installed lm_eval."""
    name, version = LM_EVAL.split("==")
    for wheel in sorted(lm_eval_wheel_dir().glob(f"{name}-{version}-*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            return archive.read(TASK_YAML).decode("utf-8")
    spec = importlib.util.find_spec("lm_eval")  # a top-level spec: found on sys.path, not imported
    if spec is not None and spec.submodule_search_locations:
        installed = Path(next(iter(spec.submodule_search_locations))).parent / TASK_YAML
        if installed.is_file():
            return installed.read_text(encoding="utf-8")
    raise UserError("task.kind", "gsm8k needs the exemplars of lm-eval's gsm8k-cot.yaml, which are not set up",
                    f"run ./setup.sh, or `pip download --no-deps {LM_EVAL} -d {lm_eval_wheel_dir()}`")


@lru_cache(maxsize=1)
def load_exemplars() -> tuple[Exemplar, ...]:
    """The 8 gsm8k-cot few-shot samples, split into CoT and final answer."""
    config = yaml.safe_load(lm_eval_task_yaml())
    exemplars = []
    for sample in config["fewshot_config"]["samples"]:
        cot, sep, tail = sample["target"].rpartition("The answer is")
        answer = normalise_number(tail.strip().rstrip("."))
        if not sep or answer is None:
            raise ValueError(f"gsm8k-cot exemplar without 'The answer is N.': {sample['target']!r}")
        exemplars.append(Exemplar(sample["question"].strip(), cot.strip(), answer))
    if len(exemplars) != N_EXEMPLARS:
        raise ValueError(f"expected {N_EXEMPLARS} gsm8k-cot exemplars, found {len(exemplars)}")
    return tuple(exemplars)


def shot_indices(question_index: int, shots: int) -> list[int]:
    """Leave-one-out: the first `shots` exemplars other than the question itself."""
    return [i for i in range(N_EXEMPLARS) if i != question_index][:shots]


class Gsm8kParams(TaskParams):
    kind: Literal["gsm8k"] = "gsm8k"
    # 8 public exemplars, used leave-one-out: question i is exemplar i, the prompt uses up to 7 others
    shots: int = Field(N_EXEMPLARS - 1, ge=0, le=N_EXEMPLARS - 1,
                       description=f"the number of in-context exemplars, 0..{N_EXEMPLARS - 1}")
    question_index: int = Field(0, ge=0, le=N_EXEMPLARS - 1,
                                description=f"which of the {N_EXEMPLARS} exemplar questions is asked, "
                                            f"0..{N_EXEMPLARS - 1}")


def build(params: Gsm8kParams, seed: int, chat: Chat | None) -> Task:
    """k-shot prompt: [preamble] exemplar pieces, then the question piece (the publisher's)."""
    shots, qi = params.shots, params.question_index
    exemplars = load_exemplars()
    used = shot_indices(qi, shots)
    # As in the authors' load_prompts: exemplars joined by "\n", the joiner kept with the earlier piece.
    texts = [exemplars[i].text() + ("\n" if k < len(used) - 1 else "") for k, i in enumerate(used)]
    pieces = [PromptPiece(t, "exemplar") for t in texts]
    pieces.append(PromptPiece(f"\nQuestion: {exemplars[qi].question}\nLet's think step by step\n", "question"))
    meta = {"question_index": qi, "exemplar_indices": tuple(used)}
    return Task(pieces=wrap_chat(pieces, chat), answer=exemplars[qi].answer, meta=meta)


def normalise_number(text: str) -> str | None:
    """Canonical string of a number ("1,234.0" -> "1234", "$-3" -> "-3", "0.5" -> "1/2"), else None."""
    cleaned = text.strip().replace("$", "").replace(",", "").rstrip(".")
    try:
        value = Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def boxed_contents(text: str) -> list[str]:
    """Contents of every \\boxed{...}, with nested braces balanced."""
    found = []
    for match in re.finditer(r"\\boxed\{", text):
        depth, start = 1, match.end()
        for pos in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[pos], 0)
            if depth == 0:
                found.append(text[start:pos])
                break
    return found


def extract_answer(completion: str) -> str | None:
    """Normalised final number of a completion, in the authors' order; None if there is none."""
    for content in boxed_contents(completion):
        number = normalise_number(content.replace("\\$", "").replace("\\!", "").replace(" ", ""))
        if number is not None:
            return number
    keyword = KEYWORD_RE.search(completion)
    if keyword:
        return normalise_number(keyword.group(1))
    tail = "\n".join(completion.strip().splitlines()[-5:])
    numbers = NUMBER_RE.findall(tail)
    return normalise_number(numbers[-1]) if numbers else None


def parse_gold(answer: str) -> str:
    """Gold answer as a normalised number: GSM8K's "...#### 72" or an already bare number."""
    number = normalise_number(answer.rpartition("####")[2])
    if number is None:
        raise ValueError(f"gold answer is not a number: {answer!r}")
    return number


def is_correct(completion: str, gold: str) -> bool:
    """Exact numeric match of the extracted answer against the gold answer."""
    return extract_answer(completion) == parse_gold(gold)


WORKLOAD = Workload("gsm8k", Gsm8kParams, build, is_correct)
