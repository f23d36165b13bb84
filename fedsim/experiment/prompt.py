"""The prompt of a run: the workload's task as text pieces, its token ids, who holds which token, and the
pre-flight check that it fits the model and this machine.

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
from pathlib import Path

from fedsim.common.errors import UserError
from fedsim.common.machine import physical_memory_bytes
from fedsim.experiment.config import Scenario
from fedsim.fedattn.costs import simulation_memory_bytes
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
    check_fits(sc, lm, len(tokens))  # before the partition: a prompt too long for the model is the first error
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


MEMORY_FRACTION = 0.5  # of this machine's memory that one run may plan to use (sweeps run two at a time)


def check_fits(sc: Scenario, lm: LoadedModel, n_tokens: int) -> None:
    """The bounds only the model knows: context length, vocabulary size, and the memory a run needs
    (fedsim.fedattn.costs.simulation_memory_bytes) against MEMORY_FRACTION of this machine's memory."""
    cfg, d, name = lm.cfg, sc.decoding, sc.model.name
    shorten = "shorten the prompt (fewer task.shots, a shorter task.text or fewer task.max_words)"
    if n_tokens > cfg.context_length:
        raise UserError("task", f"the prompt has {n_tokens:,} tokens, more than {name}'s context of "
                        f"{cfg.context_length:,}", shorten)
    if n_tokens + d.max_new_tokens > cfg.context_length:
        raise UserError("decoding.max_new_tokens", f"{d.max_new_tokens:,} new tokens after a {n_tokens:,}-token "
                        f"prompt exceed {name}'s context of {cfg.context_length:,} tokens",
                        f"use at most {cfg.context_length - n_tokens:,}, or {shorten}")
    if d.top_k > cfg.vocab_size:
        raise UserError("decoding.top_k", f"{d.top_k:,} exceeds {name}'s vocabulary of {cfg.vocab_size:,} tokens",
                        f"use 0 (off) or at most {cfg.vocab_size:,}")
    need, limit = simulation_memory_bytes(cfg, n_tokens, sc.participants.n, d.max_new_tokens), memory_limit_bytes()
    if need > limit:
        raise UserError("task", f"the run needs about {need / 1e9:,.1f} GB of memory ({n_tokens:,} prompt tokens, "
                        f"{sc.participants.n} participants, {d.max_new_tokens} new tokens), more than the "
                        f"{limit / 1e9:,.1f} GB limit (half of this machine's memory)",
                        f"{shorten}, or lower participants.n or decoding.max_new_tokens")


def memory_limit_bytes() -> float:
    """MEMORY_FRACTION of the physical memory, or of the container's limit (cgroup v2) when that is lower."""
    total = physical_memory_bytes()
    try:
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        total = min(total, float(text)) if text.isdigit() else total
    except OSError:
        pass
    return MEMORY_FRACTION * total
