"""Task = labelled text pieces; the partitioner (fedsim/partition.py) decides who owns which piece.

Keeping tasks as text (not tokens) keeps this package free of any tokenizer: the partitioner tokenises
each piece separately and concatenates, so piece boundaries are token boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PIECE_KINDS = ("preamble", "exemplar", "context", "question")


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
    meta: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The whole prompt (what centralized inference sees)."""
        return "".join(p.text for p in self.pieces)


TASK_KINDS = ("gsm8k", "retrieval", "sharegpt", "text")
# Every kind accepts these; the caller renders the strings from the model's chat template (this package
# has no tokenizer). Passing the strings alone turns chat on; `chat: true` without them is an error.
CHAT_PARAMS = ("chat", "chat_prefix", "chat_suffix")


def check_params(kind: str, params: dict, allowed: tuple[str, ...]) -> None:
    """Reject unknown keys early so a typo in a scenario is a one-line error, not a silent default."""
    for key in params:
        if key not in allowed:
            raise ValueError(f"task.{key}: unknown for kind {kind!r}; valid: {', '.join(allowed)}")


def check_int(name: str, value: object, lo: int, hi: int) -> int:
    """Range-checked integer parameter with a one-line error naming the field."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"task.{name}: {value!r} must be an integer in {lo}..{hi}")
    return value


def chat_strings(params: dict) -> tuple[str, str] | None:
    """(prefix, suffix) if the prompt is to be chat-wrapped: prefix = system + user header, suffix =
    end of user turn + assistant header."""
    given = "chat_prefix" in params or "chat_suffix" in params
    chat = params.get("chat", given)
    if not isinstance(chat, bool):
        raise ValueError(f"task.chat: {chat!r} must be true or false")
    if not chat:
        if given:
            raise ValueError("task.chat_prefix: given while task.chat is false")
        return None
    for key in ("chat_prefix", "chat_suffix"):
        if not isinstance(params.get(key), str):
            raise ValueError(f"task.{key}: required string when task.chat is true")
    return params["chat_prefix"], params["chat_suffix"]


def wrap_chat(
    pieces: list[PromptPiece], chat: tuple[str, str] | None, reply_start: str = ""
) -> tuple[PromptPiece, ...]:
    """Prefix as a first "preamble" piece; suffix (then `reply_start`, the forced start of the
    assistant's reply) closes the last piece, so the publisher holds the assistant header."""
    if chat is None:
        return tuple(pieces)
    last = pieces[-1]
    closed = PromptPiece(last.text + chat[1] + reply_start, last.kind)
    return (PromptPiece(chat[0], "preamble"), *pieces[:-1], closed)


def make_text_task(params: dict) -> Task:
    """`kind: text`: a fixed user-given prompt; `question` (if any) becomes the publisher's piece."""
    check_params("text", params, ("text", "question", "answer", *CHAT_PARAMS))
    if not isinstance(params.get("text"), str):
        raise ValueError("task.text: required string for kind 'text'")
    pieces = [PromptPiece(params["text"], "context")]
    if params.get("question"):
        pieces.append(PromptPiece(str(params["question"]), "question"))
    answer = params.get("answer")
    return Task(pieces=wrap_chat(pieces, chat_strings(params)), answer=None if answer is None else str(answer))


def make_task(kind: str, params: dict, seed: int) -> Task:
    """Build the task named by `kind` from the scenario's `task:` block (minus `kind`)."""
    # Imported here because every task module imports the dataclasses above.
    if kind == "gsm8k":
        from fedsim.workloads import gsm8k

        return gsm8k.make_gsm8k_task(params)
    if kind == "retrieval":
        from fedsim.workloads import retrieval

        return retrieval.make_retrieval_task(params, seed)
    if kind == "sharegpt":
        from fedsim.workloads import sharegpt

        return sharegpt.make_sharegpt_task(params, seed)
    if kind == "text":
        return make_text_task(params)
    raise ValueError(f"task.kind: {kind!r} is not one of {', '.join(TASK_KINDS)}")
