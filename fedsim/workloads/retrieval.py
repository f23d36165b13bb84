"""Synthetic multi-party retrieval: the queried fact lives in exactly one context piece.

Why: GSM8K exemplars only *help* the question, so a fully local publisher can still answer; here the
publisher holds only the question, and the answer (a random 4-digit code) is in someone else's piece.
Centralized inference solves it (measured in benchmarks/retrieval_calibration.py); the question alone
is at chance (1 in 9000), so any accuracy above that is cross-participant attention at work.
"""

from __future__ import annotations

import random
import re

from fedsim.workloads.base import CHAT_PARAMS, PromptPiece, Task, chat_strings, check_int, check_params, wrap_chat

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

PARAMS = ("n_facts", "fact_piece", "n_context_pieces", "filler_sentences", *CHAT_PARAMS)
DEFAULTS = {"n_facts": 4, "fact_piece": "random", "n_context_pieces": 3, "filler_sentences": 2}


def fact_prefix(attribute: str, name: str) -> str:
    """Shared by the fact and the answer line, so the model only has to copy the code that follows."""
    return f"The {attribute} of {name} is"


def make_retrieval_task(params: dict, seed: int) -> Task:
    """Pieces: one context piece per intended participant, then the question piece (publisher's)."""
    check_params("retrieval", params, PARAMS)
    p = {**DEFAULTS, **params}
    n_pieces = check_int("n_context_pieces", p["n_context_pieces"], 1, 64)
    n_facts = check_int("n_facts", p["n_facts"], 1, MAX_FACTS)
    n_fill = check_int("filler_sentences", p["filler_sentences"], 0, len(FILLERS))
    rng = random.Random(seed)
    if p["fact_piece"] == "random":
        fact_piece = rng.randrange(n_pieces)
    else:
        fact_piece = check_int("fact_piece", p["fact_piece"], 0, n_pieces - 1)
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
    chat = chat_strings(p)
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
