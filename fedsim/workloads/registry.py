"""The workloads fedsim ships, by kind: the scenario schema builds its task union from this table."""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from fedsim.workloads import gsm8k, retrieval, sharegpt, text
from fedsim.workloads.base import Chat, Task, TaskParams

WORKLOADS = {w.kind: w for w in (gsm8k.WORKLOAD, retrieval.WORKLOAD, text.WORKLOAD, sharegpt.WORKLOAD)}
# `kind` picks the model, so each workload accepts exactly its own parameters.
TaskSection = Annotated[Union[tuple(w.params for w in WORKLOADS.values())], Field(discriminator="kind")]  # noqa: UP007


def make_task(params: TaskParams, seed: int, chat: Chat | None = None) -> Task:
    """The task a scenario's `task:` block describes (chat strings rendered by the caller's tokenizer)."""
    return WORKLOADS[params.kind].build(params, seed, chat)


def score(kind: str, generated: str, answer: str | None) -> float:
    """1.0 / 0.0 for tasks with a gold answer (each workload's own extractor), NaN otherwise."""
    scorer = WORKLOADS[kind].score
    return float("nan") if answer is None or scorer is None else float(scorer(generated, answer))
