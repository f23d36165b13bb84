"""Models by name, loaded once per process: a torch `Transformer` plus its tokenizer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from fedsim.models.catalog import locate_model_file
from fedsim.models.tokenizer import ByteTokenizer, Tokenizer
from fedsim.models.transformer import TINY_CONFIG, ModelConfig, Transformer, random_weights
from fedsim.models.weights import load_gguf


class TextCodec(Protocol):
    eos_ids: tuple[int, ...]

    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str: ...


@dataclass(frozen=True)
class LoadedModel:
    name: str
    model: Transformer
    tokenizer: TextCodec

    @property
    def cfg(self) -> ModelConfig:
        return self.model.cfg


@lru_cache(maxsize=2)
def load_model(name: str) -> LoadedModel:
    """Load a model by name (cached per process, so a sweep worker loads each model once)."""
    path = locate_model_file(name)
    if path is None:  # built in memory: the tiny random model
        return LoadedModel(name, Transformer(TINY_CONFIG, random_weights(TINY_CONFIG)), ByteTokenizer())
    cfg, weights = load_gguf(path)
    return LoadedModel(name, Transformer(cfg, weights), Tokenizer.from_gguf(path))
