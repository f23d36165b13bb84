"""`kind: text`: a fixed prompt written in the scenario; an optional question goes to the publisher."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fedsim.workloads.base import Chat, PromptPiece, Task, TaskParams, Workload, wrap_chat


class TextParams(TaskParams):
    kind: Literal["text"]
    text: str = Field(min_length=1, description="the prompt text shared out as context")
    question: str | None = Field(None, description="an optional question, held by the task publisher")
    answer: str | None = Field(None, description="an optional gold answer to score the generation against")


def build(params: TextParams, seed: int, chat: Chat | None) -> Task:
    pieces = [PromptPiece(params.text, "context")]
    if params.question:
        pieces.append(PromptPiece(params.question, "question"))
    return Task(pieces=wrap_chat(pieces, chat), answer=params.answer)


def score(text: str, answer: str) -> bool:
    """Correct iff the gold answer appears in the generation."""
    return answer.strip() in text


WORKLOAD = Workload("text", TextParams, build, score)
