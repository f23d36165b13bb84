"""Tokenizers: the one rebuilt from a GGUF's own metadata (so the model file alone suffices), and a byte
tokenizer for the tiny test model.

The GGUF one matches llama.cpp's byte-level BPE: vocabulary and merges from `tokenizer.ggml.*`, the
pre-tokenizer regex llama.cpp picks for `tokenizer.ggml.pre`, and control tokens matched whole in the text.
"""

import mmap
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
from gguf import GGUFValueType as T
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as _HFTokenizer

_SCALAR = {T.UINT8: "B", T.INT8: "b", T.UINT16: "H", T.INT16: "h", T.UINT32: "I", T.INT32: "i",
           T.FLOAT32: "f", T.BOOL: "?", T.UINT64: "Q", T.INT64: "q", T.FLOAT64: "d"}
_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp token types
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_PRE_TOKENIZERS = {
    # llama.cpp: "\p{N}" then the GPT-2 regex, which is ByteLevel's built-in one
    "smollm": lambda: [pre_tokenizers.Digits(individual_digits=True),
                       pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)],
    "qwen2": lambda: [pre_tokenizers.Split(Regex(_QWEN2_SPLIT), behavior="isolated"),
                      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)],
}


def read_metadata(path: Path) -> dict[str, Any]:
    """A GGUF's key/value metadata. gguf.GGUFReader builds one numpy view per vocabulary string
    (1.8 s for SmolLM2, 6 s for Qwen2.5); walking the header with struct takes a fraction of that."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        magic, version, _, n_kv = struct.unpack_from("<4sIQQ", buf)
        if magic != b"GGUF" or version < 2:
            raise ValueError(f"{path} is not a GGUF v2/v3 file")
        meta, pos = {}, 24
        for _ in range(n_kv):
            key, pos = _read_value(buf, pos, T.STRING)
            (vtype,) = struct.unpack_from("<I", buf, pos)
            meta[key], pos = _read_value(buf, pos + 4, vtype)
    return meta


def _read_value(buf: mmap.mmap, pos: int, vtype: int) -> tuple[Any, int]:
    if vtype == T.STRING:
        (n,) = struct.unpack_from("<Q", buf, pos)
        return buf[pos + 8:pos + 8 + n].decode(), pos + 8 + n
    if vtype == T.ARRAY:
        etype, count = struct.unpack_from("<IQ", buf, pos)
        pos += 12
        if etype in _SCALAR:
            fmt = f"<{count}{_SCALAR[etype]}"
            return list(struct.unpack_from(fmt, buf, pos)), pos + struct.calcsize(fmt)
        items = []
        for _ in range(count):
            item, pos = _read_value(buf, pos, etype)
            items.append(item)
        return items, pos
    fmt = "<" + _SCALAR[vtype]
    return struct.unpack_from(fmt, buf, pos)[0], pos + struct.calcsize(fmt)


class Tokenizer:
    """Text <-> token ids and chat prompts, exactly as the GGUF's model was trained to see them."""

    def __init__(self, meta: dict[str, Any]):
        if meta.get("tokenizer.ggml.model") != "gpt2":
            raise ValueError(f"only byte-level BPE (gpt2) GGUF tokenizers are supported, "
                             f"got {meta.get('tokenizer.ggml.model')!r}")
        pre = meta.get("tokenizer.ggml.pre")
        if pre not in _PRE_TOKENIZERS:
            raise ValueError(f"unsupported tokenizer.ggml.pre {pre!r}; supported: {', '.join(_PRE_TOKENIZERS)}")
        tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
        vocab = {tok: i for i, tok in enumerate(tokens)}
        merges = [tuple(m.split(" ")) for m in meta["tokenizer.ggml.merges"]]
        tok = _HFTokenizer(models.BPE(vocab, merges))
        tok.pre_tokenizer = pre_tokenizers.Sequence(_PRE_TOKENIZERS[pre]())
        tok.decoder = decoders.ByteLevel()
        # llama.cpp matches both kinds whole in text; only control tokens are dropped when detokenizing
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                for t, ty in zip(tokens, types, strict=True) if ty == _CONTROL])
        tok.add_tokens([AddedToken(t, special=False, normalized=False)
                        for t, ty in zip(tokens, types, strict=True) if ty == _USER_DEFINED])
        self._tok = tok
        self._tokens = tokens
        self._bos_id: int | None = meta.get("tokenizer.ggml.bos_token_id")
        self._add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", False))
        self._eos_ids = (int(meta["tokenizer.ggml.eos_token_id"]),)
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=["jinja2.ext.loopcontrols"])
        env.globals["raise_exception"] = _raise_exception
        template = meta.get("tokenizer.chat_template")
        self._chat = env.from_string(template) if template else None

    @classmethod
    def from_gguf(cls, path: Path) -> "Tokenizer":
        """Build the tokenizer from the model file itself, so it can never drift from the weights."""
        return cls(read_metadata(path))

    @property
    def bos_id(self) -> int | None:
        """Beginning-of-sequence id (prepended by `encode` only if the GGUF says add_bos_token)."""
        return self._bos_id

    @property
    def eos_ids(self) -> tuple[int, ...]:
        """Ids that end generation: the model's eos_token_id only, as in the authors' code (a chat end-of-turn
        or end-of-text token that is not the eos is generated like any other token)."""
        return self._eos_ids

    @property
    def vocab_size(self) -> int:
        """Number of token ids, i.e. rows of the model's embedding matrix."""
        return len(self._tokens)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; special tokens written in the text (e.g. "<|im_start|>") become one id each."""
        ids = self._tok.encode(text, add_special_tokens=False).ids
        return [self._bos_id, *ids] if self._add_bos and self._bos_id is not None else ids

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        """Text of `ids`; control tokens are dropped unless `skip_special` is False."""
        return self._tok.decode(list(ids), skip_special_tokens=skip_special)

    def render_chat(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The prompt text the model's own chat template makes of `messages` (roles "system"/"user"/...)."""
        if self._chat is None:
            raise ValueError("this GGUF has no tokenizer.chat_template")
        return self._chat.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                 bos_token=self._token(self.bos_id), eos_token=self._token(self.eos_ids[0]))

    def _token(self, i: int | None) -> str:
        return "" if i is None else self._tokens[i]


def _raise_exception(message: str) -> None:
    raise jinja2.TemplateError(message)


class ByteTokenizer:
    """UTF-8 bytes as token ids (256 = end of text): enough to drive the tiny test model."""

    eos_ids = (256,)

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")
