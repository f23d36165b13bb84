"""The prompt of a run: the workload's task as text pieces, its token ids, and who holds which token."""

from __future__ import annotations

from dataclasses import dataclass

from fedsim.experiment.config import Scenario
from fedsim.fedattn.partition import Partition, partition_pieces
from fedsim.models.loading import LoadedModel
from fedsim.workloads.base import Task
from fedsim.workloads.registry import make_task


@dataclass(frozen=True)
class Prompt:
    task: Task
    task_kind: str
    tokens: tuple[int, ...]
    partition: Partition


def build_prompt(sc: Scenario, lm: LoadedModel) -> Prompt:
    """Task text -> token ids per piece (piece boundaries are token boundaries) -> the owner of every token."""
    task = make_task(sc.task, sc.seed, _chat_strings(lm) if sc.task.chat else None)
    ids = [lm.tokenizer.encode(piece.text) for piece in task.pieces]
    partition = partition_pieces([len(x) for x in ids], [p.kind for p in task.pieces], sc.participants.n,
                                 sc.partition.scheme)
    return Prompt(task, sc.task.kind, tuple(t for x in ids for t in x), partition)


def _chat_strings(lm: LoadedModel) -> tuple[str, str] | None:
    """(prefix, suffix) of the model's chat template around one user turn; None if it has no template."""
    if not hasattr(lm.tokenizer, "render_chat"):
        return None
    prefix, suffix = lm.tokenizer.render_chat([{"role": "user", "content": "\x00"}]).split("\x00")
    return prefix, suffix
