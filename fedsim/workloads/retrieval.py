"""Synthetic multi-party retrieval: the queried fact lives in exactly one context piece.

Why: GSM8K exemplars only *help* the question, so a fully local publisher can still answer; here the
publisher holds only the question, and the answer (a random 4-digit code) is in someone else's piece.
Centralized inference solves it (measured in benchmarks/retrieval_calibration.py); the question alone
is at chance (1 in 9000), so any accuracy above that is cross-participant attention at work.
"""

from __future__ import annotations

import random
import re
from typing import Annotated, Literal

from pydantic import Field

from fedsim.common.errors import UserError
from fedsim.workloads.base import Chat, PromptPiece, Task, TaskParams, Workload, wrap_chat

NAMES = (
    "Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Irene", "Jack", "Kate", "Liam",
    "Mia", "Noah", "Olivia", "Paul", "Rose", "Sam", "Tom", "Victor", "Wendy", "Zoe",
)  # fmt: skip

# One attribute per fact: with a single shared attribute ("secret code" for everyone) the 135M model
# binds name->code poorly (0.57 centralized over 30 seeds); distinct attributes lift it to ~0.9.
ATTRIBUTES = (
    "secret code", "room number", "locker number", "bank PIN", "phone extension", "badge number",
    "parking spot", "ticket number", "door code", "seat number", "order number", "gate number",
    "pager number", "mailbox number", "bus number", "account number", "flight number", "desk number",
    "house number", "cabin number", "lab number", "table number",
)  # fmt: skip
MAX_FACTS = min(len(NAMES), len(ATTRIBUTES))  # each fact needs its own name and attribute

FILLERS = (
    "The weather was mild that day.",
    "A train passed by the old station.",
    "The library opens early on weekdays.",
    "Some birds were singing in the park.",
    "The coffee machine was broken again.",
    "A meeting was moved to the afternoon.",
    "The river looked calm in the morning.",
    "Someone left an umbrella at the door.",
    "The shop on the corner sells fresh bread.",
    "The lights in the hallway were dim.",
    "A parcel arrived after lunch.",
    "The garden needs water every evening.",
)



class RetrievalParams(TaskParams):
    kind: Literal["retrieval"]
    n_facts: int = Field(4, ge=1, le=MAX_FACTS,
                         description=f"the number of facts (1 queried + distractors), 1..{MAX_FACTS}")
    fact_piece: Literal["random"] | Annotated[int, Field(ge=0, le=63)] = Field(
        "random", description="the context piece holding the queried fact: 'random' or an index")
    n_context_pieces: int = Field(3, ge=1, le=64, description="the number of context pieces, 1..64")
    filler_sentences: int = Field(2, ge=0, le=len(FILLERS),
                                  description=f"filler sentences per context piece, 0..{len(FILLERS)}")

    def check(self) -> None:
        if self.fact_piece != "random" and self.fact_piece >= self.n_context_pieces:
            raise UserError("task.fact_piece", f"no such context piece (got {self.fact_piece})",
                            f"pieces are numbered 0..{self.n_context_pieces - 1} (task.n_context_pieces)")


def fact_prefix(attribute: str, name: str) -> str:
    """Shared by the fact and the answer line, so the model only has to copy the code that follows."""
    return f"The {attribute} of {name} is"


def build(params: RetrievalParams, seed: int, chat: Chat | None) -> Task:
    """Pieces: one context piece per intended participant, then the question piece (publisher's)."""
    params.check()
    n_pieces, n_facts, n_fill = params.n_context_pieces, params.n_facts, params.filler_sentences
    rng = random.Random(seed)
    fact_piece = rng.randrange(n_pieces) if params.fact_piece == "random" else params.fact_piece
    names = rng.sample(NAMES, n_facts)
    attributes = rng.sample(ATTRIBUTES, n_facts)
    codes = rng.sample(range(1000, 10000), n_facts)
    # Fact 0 is the queried one; distractors go anywhere (distinct names, so it stays unique).
    homes = [fact_piece] + [rng.randrange(n_pieces) for _ in range(n_facts - 1)]
    sentences: list[list[str]] = [rng.sample(FILLERS, n_fill) for _ in range(n_pieces)]
    for attribute, name, code, home in zip(attributes, names, codes, homes, strict=True):
        sentence = f"{fact_prefix(attribute, name)} {code}."
        sentences[home].insert(rng.randrange(len(sentences[home]) + 1), sentence)
    pieces = [PromptPiece(" ".join(s) + "\n", "context") for s in sentences]
    queried = fact_prefix(attributes[0], names[0])
    ask = f"Question: What is the {attributes[0]} of {names[0]}?"
    if chat is None:
        pieces.append(PromptPiece(f"{ask}\nAnswer: {queried}", "question"))
    else:  # the assistant's reply is forced to start with the fact's wording, as in the plain prompt
        pieces = list(wrap_chat([*pieces, PromptPiece(ask, "question")], chat, reply_start=queried))
    offset = 0 if chat is None else 1  # the chat preamble piece comes first
    # fact_owner_piece indexes Task.pieces; fact_context_piece counts context pieces only
    meta = {"fact_owner_piece": fact_piece + offset, "fact_context_piece": fact_piece, "queried": queried}
    return Task(pieces=tuple(pieces), answer=str(codes[0]), meta=meta)


def score(generated_text: str, answer: str) -> bool:
    """Correct iff the first number/word generated is the answer ("4821." and " 4821\n" both count)."""
    first = re.search(r"[A-Za-z0-9]+", generated_text)
    return first is not None and first.group(0).lower() == answer.lower()


WORKLOAD = Workload("retrieval", RetrievalParams, build, score)
