"""Named models, loaded once per process: a torch `Transformer` plus its tokenizer.

`tiny-random` is a seeded random 4-layer model with a byte tokenizer: it runs the whole pipeline in
milliseconds for tests. Real models come from GGUF files located by `fedsim.model_files`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from fedsim.gguf_model import load_gguf
from fedsim.model import ModelConfig, Transformer, random_weights
from fedsim.model_files import KNOWN_MODELS, locate_model_file
from fedsim.tokenizer import Tokenizer

TINY_RANDOM = "tiny-random"
MODEL_NAMES = (*KNOWN_MODELS, TINY_RANDOM)


class TextCodec(Protocol):
    eos_ids: tuple[int, ...]

    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes as token ids (256 = end of text): enough to drive the tiny test model."""

    eos_ids = (256,)
    chat_prefix = ""
    chat_suffix = ""

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


@dataclass(frozen=True)
class LoadedModel:
    name: str
    model: Transformer
    tokenizer: TextCodec

    @property
    def cfg(self) -> ModelConfig:
        return self.model.cfg


TINY_RANDOM_CONFIG = ModelConfig(arch="llama", n_layers=4, d_model=32, n_heads=4, n_kv_heads=2, d_ff=64,
                                 vocab_size=257, rope_theta=10000.0, norm_eps=1e-5)


@lru_cache(maxsize=2)
def load_model(name: str) -> LoadedModel:
    """Load a model by name (cached per process, so a sweep worker loads each model once)."""
    if name == TINY_RANDOM:
        return LoadedModel(name, Transformer(TINY_RANDOM_CONFIG, random_weights(TINY_RANDOM_CONFIG)), ByteTokenizer())
    path = locate_model_file(name)
    cfg, weights = load_gguf(path)
    return LoadedModel(name, Transformer(cfg, weights), Tokenizer.from_gguf(path))
