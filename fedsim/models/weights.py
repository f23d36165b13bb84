"""Read a GGUF file into a `ModelConfig` and fp32 torch weights, with an on-disk cache.

Dequantizing the Q4_1/Q8_0 tensors with `gguf`'s numpy reader takes seconds, and a sweep loads the model in
every worker, so the dequantized weights are cached in `cache_dir()/weights/` as one safetensors file named by
the sha256 of the GGUF's bytes: one copy per model however many installs ship it, and writing a model's new
copy removes its older ones. Workers map the file (pages shared between processes) rather than copy it.

llama.cpp's converter permutes the rows of Q and K in Llama models so that RoPE rotates interleaved
pairs; we undo that permutation so that the plain-torch block can use the Hugging Face "rotate half"
convention and match `transformers` exactly. Qwen2 GGUFs are not permuted.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors import safe_open
from safetensors.torch import save

from fedsim.common.files import atomic_write
from fedsim.models.catalog import cache_dir, file_digest
from fedsim.models.transformer import ModelConfig

SUPPORTED_ARCHS = ("llama", "qwen2")
CACHE_FORMAT = 1  # bump when the cached layout changes


def _field(reader: GGUFReader, key: str, default=None):
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def read_config(reader: GGUFReader) -> ModelConfig:
    """Build the model hyper-parameters from the GGUF metadata."""
    arch = _field(reader, "general.architecture")
    if arch not in SUPPORTED_ARCHS:
        raise ValueError(f"GGUF architecture '{arch}' is not supported (supported: {', '.join(SUPPORTED_ARCHS)})")
    names = {t.name for t in reader.tensors}
    n_heads = int(_field(reader, f"{arch}.attention.head_count"))
    d_model = int(_field(reader, f"{arch}.embedding_length"))
    vocab = _field(reader, f"{arch}.vocab_size")
    if vocab is None:
        vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    return ModelConfig(
        arch=arch,
        n_layers=int(_field(reader, f"{arch}.block_count")),
        d_model=d_model,
        n_heads=n_heads,
        n_kv_heads=int(_field(reader, f"{arch}.attention.head_count_kv", n_heads)),
        d_ff=int(_field(reader, f"{arch}.feed_forward_length")),
        vocab_size=int(vocab),
        rope_theta=float(_field(reader, f"{arch}.rope.freq_base", 10000.0)),
        norm_eps=float(_field(reader, f"{arch}.attention.layer_norm_rms_epsilon")),
        qkv_bias="blk.0.attn_q.bias" in names,
        tied_embeddings="output.weight" not in names,
    )


def _unpermute(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Invert llama.cpp's Q/K row permutation (interleaved RoPE pairs -> rotate-half halves)."""
    rows = w.shape[0]
    head_dim = rows // n_heads
    return w.reshape(n_heads, head_dim // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def read_weights(reader: GGUFReader, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Dequantize every tensor to fp32 in torch layout ([out, in] for matrices)."""
    weights: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        array = dequantize(t.data, t.tensor_type)
        shape = tuple(int(d) for d in reversed(t.shape))  # GGUF lists dims innermost first
        w = torch.from_numpy(np.array(array, dtype=np.float32).reshape(shape))
        if cfg.arch == "llama" and t.name.endswith(("attn_q.weight", "attn_q.bias")):
            w = _unpermute(w, cfg.n_heads)
        elif cfg.arch == "llama" and t.name.endswith(("attn_k.weight", "attn_k.bias")):
            w = _unpermute(w, cfg.n_kv_heads)
        weights[t.name] = w
    return weights


def cache_path(path: Path) -> Path:
    """Where the dequantized weights of a GGUF file are cached: named by the file's stem and content."""
    return cache_dir() / "weights" / f"{path.stem}-{file_digest(path)[:16]}-v{CACHE_FORMAT}.safetensors"


def load_gguf(path: Path, use_cache: bool = True) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Config and fp32 weights of a GGUF file; the dequantized weights are cached on disk."""
    path = Path(path)
    cached = cache_path(path) if use_cache else None
    if cached is not None and cached.is_file():
        try:
            with safe_open(cached, framework="pt") as f:
                config = ModelConfig(**json.loads(f.metadata()["config"]))
                return config, {name: f.get_tensor(name) for name in f.keys()}
        except Exception:  # a truncated or foreign file: rebuild it from the GGUF below
            pass
    reader = GGUFReader(path)
    cfg = read_config(reader)
    weights = read_weights(reader, cfg)
    if cached is not None:
        blob = save(weights, metadata={"config": json.dumps(cfg.as_dict())})
        atomic_write(cached, blob)
        _remove_older_copies(path, cached)
    return cfg, weights


def _remove_older_copies(path: Path, kept: Path) -> None:
    """Other contents of the same model (an older package version) and the path-keyed .pt files of fedsim 0.1."""
    stale = [*kept.parent.glob(f"{path.stem}-*.safetensors"), *cache_dir().glob(f"{path.stem}-*.pt")]
    for old in stale:
        if old != kept:
            old.unlink(missing_ok=True)
