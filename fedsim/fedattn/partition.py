"""Who holds which prompt tokens: the privacy boundary of FedAttn.

A task is a list of labelled text pieces (exemplars, context, the question). Each piece is tokenised on
its own and the ids are concatenated, so piece boundaries are token boundaries and every token keeps its
*global* position. A partition maps every token to the participant that holds it. Participants are
numbered in global token order and the task publisher, who holds the question, is the last one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedsim.common.errors import UserError

SCHEMES = ("contiguous", "question_exclusive", "exemplars", "exemplars_question_exclusive")


@dataclass(frozen=True)
class Partition:
    owner: np.ndarray  # [L] participant of every token, non-decreasing
    n_participants: int

    @property
    def publisher(self) -> int:
        return self.n_participants - 1

    @property
    def n_tokens(self) -> int:
        return len(self.owner)

    def tokens_of(self, participant: int) -> np.ndarray:
        return np.flatnonzero(self.owner == participant)

    def sizes(self) -> list[int]:
        return np.bincount(self.owner, minlength=self.n_participants).tolist()


def _split_even(n_tokens: int, n_parts: int) -> list[int]:
    """Equal chunk sizes, the remainder going to the last chunk (the authors' `even` split)."""
    base = n_tokens // n_parts
    return [base] * (n_parts - 1) + [n_tokens - base * (n_parts - 1)]


def _group_pieces(n_pieces: int, n_parts: int) -> list[int]:
    """Whole pieces per participant in contiguous groups, the remainder to the last group."""
    base = n_pieces // n_parts
    return [base] * (n_parts - 1) + [n_pieces - base * (n_parts - 1)]


def partition_pieces(piece_lengths: Sequence[int], piece_kinds: Sequence[str], n: int, scheme: str) -> Partition:
    """Assign the tokens of consecutive pieces to `n` participants under one of `SCHEMES`.

    `contiguous` cuts the whole prompt into n equal token chunks (the question lands with the last one);
    `question_exclusive` gives the question pieces to the publisher alone and cuts the rest by tokens over
    the other n-1; `exemplars` deals whole non-question pieces in contiguous groups and appends the
    question to the last participant; `exemplars_question_exclusive` deals them over n-1 participants.
    """
    if scheme not in SCHEMES:
        raise UserError("partition.scheme", f"unknown scheme '{scheme}'", f"choose one of {', '.join(SCHEMES)}")
    if n < 1:
        raise UserError("participants.n", f"must be >= 1 (got {n})")
    lengths = list(piece_lengths)
    total = sum(lengths)
    if n > total:
        raise UserError("participants.n", f"{n} exceeds the prompt's {total} tokens",
                        "use fewer participants or a longer prompt")
    if n == 1:
        return Partition(np.zeros(total, dtype=np.int64), 1)
    is_q = [k == "question" for k in piece_kinds]
    if not any(is_q):
        raise UserError("task", "the prompt has no question piece, so no participant is the task publisher",
                        "give the task a question")
    first_q = is_q.index(True)
    if not all(is_q[first_q:]):
        raise UserError("task", "the question must be the last piece(s) of the prompt")
    context_lengths, question_len = lengths[:first_q], sum(lengths[first_q:])
    context_len = sum(context_lengths)

    if scheme == "contiguous":
        sizes = _split_even(total, n)
    elif scheme == "question_exclusive":
        sizes = _split_even(context_len, n - 1) + [question_len] if context_len >= n - 1 else []
    else:
        holders = n if scheme == "exemplars" else n - 1
        groups = _group_pieces(len(context_lengths), holders) if len(context_lengths) >= holders else []
        sizes, start = [], 0
        for g in groups:
            sizes.append(sum(context_lengths[start:start + g]))
            start += g
        if sizes:
            if scheme == "exemplars":
                sizes[-1] += question_len
            else:
                sizes.append(question_len)
    if len(sizes) != n or min(sizes) == 0:
        raise UserError(
            "partition.scheme", f"{scheme} with participants.n={n} leaves a participant with an empty segment "
            f"({len(context_lengths)} context pieces, {context_len} context tokens)",
            "use fewer participants or the 'contiguous' scheme")
    return Partition(np.repeat(np.arange(n), sizes), n)
