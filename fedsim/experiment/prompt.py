"""The prompt of a run: the workload's task as text pieces, its token ids, and who holds which token.

`whole_prompt` tokenisation (the default, as the authors do) tokenises the whole text once, so the model sees
exactly the tokens centralized inference would; piece boundaries are then cut at per-piece token counts
(each piece but the last tokenised alone, a BOS counted once; the last piece is the remainder). Where a
merge straddles two pieces the cut lands one token off the text boundary, as in the authors' code.
`per_piece` tokenises each piece alone and concatenates, so boundaries are exact but the token sequence can
differ from the whole text's (SmolLM2 merges an exemplar's final "\\n\\n" into one token alone, not in the
whole text).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fedsim.common.errors import UserError
from fedsim.experiment.config import Scenario
from fedsim.fedattn.partition import Partition, partition_pieces
from fedsim.models.loading import LoadedModel, TextCodec
from fedsim.workloads.base import Task
from fedsim.workloads.registry import make_task


@dataclass(frozen=True)
class Prompt:
    task: Task
    task_kind: str
    tokens: tuple[int, ...]
    partition: Partition


def build_prompt(sc: Scenario, lm: LoadedModel) -> Prompt:
    """Task text -> token ids and the token count of each piece -> the owner of every token."""
    task = make_task(sc.task, sc.seed, _chat_strings(lm) if sc.task.chat else None)
    tokens, lengths = tokenize_pieces([p.text for p in task.pieces], lm.tokenizer, sc.partition.tokenization)
    partition = partition_pieces(lengths, [p.kind for p in task.pieces], sc.participants.n, sc.partition.scheme)
    return Prompt(task, sc.task.kind, tuple(tokens), partition)


def tokenize_pieces(texts: Sequence[str], tokenizer: TextCodec, how: str) -> tuple[list[int], list[int]]:
    """(token ids of the prompt, tokens per piece) under tokenization `how` ("whole_prompt" | "per_piece")."""
    if how == "per_piece":
        ids = [tokenizer.encode(t) for t in texts]
        return [t for x in ids for t in x], [len(x) for x in ids]
    whole = tokenizer.encode("".join(texts))
    added = len(tokenizer.encode(""))  # what encode adds to any text (a BOS): the first piece holds it
    counts = [len(tokenizer.encode(t)) - (added if i else 0) for i, t in enumerate(texts[:-1])]
    rest = len(whole) - sum(counts)
    if rest < 1:
        raise UserError("partition.tokenization", f"the pieces before the last count {sum(counts)} tokens, the "
                        f"whole prompt only {len(whole)}, so the last piece gets none", "use per_piece")
    return whole, [*counts, rest]


def _chat_strings(lm: LoadedModel) -> tuple[str, str] | None:
    """(prefix, suffix) of the model's chat template around one user turn; None if it has no template."""
    if not hasattr(lm.tokenizer, "render_chat"):
        return None
    prefix, suffix = lm.tokenizer.render_chat([{"role": "user", "content": "\x00"}]).split("\x00")
    return prefix, suffix
