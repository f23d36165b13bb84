"""What a workload is: its parameters (a pydantic model), how it builds a task, how it scores an answer.

A task is labelled text pieces; the partitioner (fedsim.fedattn.partition) decides who owns which piece.
Keeping tasks as text keeps workloads free of any tokenizer: pieces are tokenised separately and
concatenated, so piece boundaries are token boundaries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from fedsim.common.schema import Section

PIECE_KINDS = ("preamble", "exemplar", "context", "question")
Chat = tuple[str, str]  # (prefix: system + user header, suffix: end of user turn + assistant header)


@dataclass(frozen=True)
class PromptPiece:
    """One contiguous span of the prompt with a role the partition schemes can key on."""

    text: str
    kind: str  # one of PIECE_KINDS

    def __post_init__(self) -> None:
        if self.kind not in PIECE_KINDS:
            raise ValueError(f"PromptPiece.kind: {self.kind!r} is not one of {', '.join(PIECE_KINDS)}")


@dataclass(frozen=True)
class Task:
    """A prompt in prompt order plus what is needed to score the answer."""

    pieces: tuple[PromptPiece, ...]
    answer: str | None  # gold answer, normalised, if the task has one
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The whole prompt (what centralized inference sees)."""
        return "".join(p.text for p in self.pieces)


class TaskParams(Section):
    """The scenario's `task:` block; each workload narrows `kind` to its own name and adds its parameters."""

    kind: str  # first, so resolved configs list it first
    chat: bool = Field(False, description="whether to wrap the prompt in the model's chat template")

    def check(self) -> None:
        """Cross-field rules pydantic cannot express per field; raise a UserError naming the field."""


@dataclass(frozen=True)
class Workload:
    kind: str
    params: type[TaskParams]
    build: Callable[[Any, int, Chat | None], Task]  # (params, seed, chat strings or None) -> Task
    score: Callable[[str, str], bool] | None  # (generated text, gold answer) -> correct?; None: no answers


def wrap_chat(pieces: list[PromptPiece], chat: Chat | None, reply_start: str = "") -> tuple[PromptPiece, ...]:
    """Prefix as a first "preamble" piece; suffix (then `reply_start`, the forced start of the
    assistant's reply) closes the last piece, so the publisher holds the assistant header."""
    if chat is None:
        return tuple(pieces)
    last = pieces[-1]
    closed = PromptPiece(last.text + chat[1] + reply_start, last.kind)
    return (PromptPiece(chat[0], "preamble"), *pieces[:-1], closed)
