"""A Llama/Qwen2 decoder in plain torch, split at the seams FedAttn needs.

One transformer block is `x -> x + O(attn(Q, K, V)) -> x + FFN(x)`. FedAttn changes only *which keys a
query may see*, so a block is exposed in three steps: `qkv` (norm, projections, RoPE at global positions),
attention (`attention`, the one kernel everything uses) and `finish` (output projection, residual, SwiGLU
FFN). `forward` chains them with causal attention: that is the centralized oracle.

Heads are token-major, [batch, tokens, heads, head_dim]: a participant's or a responder's tokens are then a
plain slice, and the kernel reads them as [batch, heads, tokens, head_dim] views without a copy.

The arithmetic follows Hugging Face's `LlamaForCausalLM` (fp32 RMSNorm, rotate-half RoPE, grouped-query
attention: query head h reads K/V head h // (n_heads / n_kv_heads)) so that logits agree with
`transformers` to float rounding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ModelConfig:
    arch: str  # "llama" | "qwen2"
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    vocab_size: int
    rope_theta: float
    norm_eps: float
    qkv_bias: bool = False
    tied_embeddings: bool = True
    context_length: int = 8192  # positions the model was trained for (GGUF `<arch>.context_length`)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    def as_dict(self) -> dict:
        return asdict(self)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    x32 = x.float()
    return weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


# torch's CPU flash attention, which also returns each query's log-sum-exp (a private op whose schema is stable
# since torch 2.2; grouped-query K/V, fewer heads than Q, needs torch >= 2.5). F.scaled_dot_product_attention
# sends every CPU call to it too, but drops the log-sum-exp.
_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
              mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention, token-major: q [B, T, H, d], k/v [B, S, Hk, d] with H a multiple of Hk
    -> (out [B, T, H, d], log-sum-exp of the scaled scores [B, T, H]).

    `causal`: query i sees keys 0..i (aligned at the first key, as in the oracle). `mask`: an additive mask
    in the query's dtype that broadcasts to [B, H, T, S]; a mask never saves work, `causal` does. The
    log-sum-exp makes attention over disjoint key sets exactly mergeable (fedsim.fedattn.attention)."""
    o, lse = _flash(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal, attn_mask=mask)
    return o.transpose(1, 2), lse.transpose(1, 2)


FFN_CHUNK = 4096  # tokens per FFN pass: bounds the [tokens, d_ff] intermediates of long prompts


class Transformer:
    """Inference-only decoder. Tensors are [batch, tokens, features]; heads are [batch, tokens, head, dim]."""

    def __init__(self, cfg: ModelConfig, weights: dict[str, torch.Tensor]):
        self.cfg = cfg
        self.w = weights
        self.inv_freq = 1.0 / (
            cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.int64).float() / cfg.head_dim)
        )

    # -- pieces -------------------------------------------------------------------------------------------
    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.embedding(tokens, self.w["token_embd.weight"])

    def rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin tables for *global* token positions, shape [tokens, head_dim]."""
        freqs = positions.float()[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, self.w[name + ".weight"], self.w.get(name + ".bias"))

    def qkv(
        self, layer: int, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries [B, T, H, d], keys and values [B, T, Hk, d] of block `layer`, RoPE applied; K/V are what
        FedAttn exchanges."""
        cfg, p = self.cfg, f"blk.{layer}."
        B, T, _ = x.shape
        h = rms_norm(x, self.w[p + "attn_norm.weight"], cfg.norm_eps)
        q = self._linear(h, p + "attn_q").view(B, T, cfg.n_heads, cfg.head_dim)
        k = self._linear(h, p + "attn_k").view(B, T, cfg.n_kv_heads, cfg.head_dim)
        v = self._linear(h, p + "attn_v").view(B, T, cfg.n_kv_heads, cfg.head_dim)
        cos, sin = rope[0][:, None], rope[1][:, None]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        return q, k, v

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`attention` under an explicit boolean mask (True = may attend) that broadcasts to [B, H, T, S], for
        code that holds one (a single participant's view, fedsim.fedattn.participant)."""
        additive = torch.zeros(mask.shape, dtype=q.dtype).masked_fill_(~mask, float("-inf"))
        return attention(q, k, v, mask=additive)[0]

    def finish(self, layer: int, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """Output projection + residual, then the SwiGLU feed-forward + residual; `attn` is [B, T, H, d].
        Long prompts run the FFN in token chunks (rows are independent) to bound its intermediates."""
        p = f"blk.{layer}."
        x = x + self._linear(attn.reshape(*attn.shape[:2], self.cfg.d_model), p + "attn_output")
        if x.shape[1] <= FFN_CHUNK:
            return x + self._ffn(p, x)
        return torch.cat([c + self._ffn(p, c) for c in x.split(FFN_CHUNK, dim=1)], dim=1)

    def _ffn(self, p: str, x: torch.Tensor) -> torch.Tensor:
        h = rms_norm(x, self.w[p + "ffn_norm.weight"], self.cfg.norm_eps)
        return self._linear(F.silu(self._linear(h, p + "ffn_gate")) * self._linear(h, p + "ffn_up"), p + "ffn_down")

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        h = rms_norm(x, self.w["output_norm.weight"], self.cfg.norm_eps)
        head = self.w["token_embd.weight"] if self.cfg.tied_embeddings else self.w["output.weight"]
        return F.linear(h, head)

    # -- the oracle ----------------------------------------------------------------------------------------
    @torch.inference_mode()
    def forward(self, tokens: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """Centralized causal forward of [B, T] tokens at positions 0..T-1; logits [B, T, vocab]
        (or [B, 1, vocab] for the last position only, which is all a prefill needs)."""
        T = tokens.shape[1]
        x = self.embed(tokens)
        rope = self.rope(torch.arange(T))
        for layer in range(self.cfg.n_layers):
            q, k, v = self.qkv(layer, x, rope)
            x = self.finish(layer, x, attention(q, k, v, causal=True)[0])
        return self.logits(x[:, -1:] if last_only else x)

    __call__ = forward


def random_weights(cfg: ModelConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random weights in the GGUF naming: a tiny model for fast tests of the math."""
    g = torch.Generator().manual_seed(seed)

    def mat(rows: int, cols: int) -> torch.Tensor:
        return torch.randn(rows, cols, generator=g) / cols**0.5

    # embeddings at std 2/sqrt(d): the tied head then gives logits of std ~2, a spread-out next-token
    # distribution like a trained model's, not a one-hot that hides differences between schedules
    w = {"token_embd.weight": torch.randn(cfg.vocab_size, cfg.d_model, generator=g) * 2 / cfg.d_model**0.5,
         "output_norm.weight": 1 + 0.1 * torch.randn(cfg.d_model, generator=g)}
    if not cfg.tied_embeddings:
        w["output.weight"] = mat(cfg.vocab_size, cfg.d_model)
    for i in range(cfg.n_layers):
        p = f"blk.{i}."
        w[p + "attn_norm.weight"] = 1 + 0.1 * torch.randn(cfg.d_model, generator=g)
        w[p + "ffn_norm.weight"] = 1 + 0.1 * torch.randn(cfg.d_model, generator=g)
        w[p + "attn_q.weight"] = mat(cfg.d_model, cfg.d_model)
        w[p + "attn_k.weight"] = mat(cfg.kv_dim, cfg.d_model)
        w[p + "attn_v.weight"] = mat(cfg.kv_dim, cfg.d_model)
        w[p + "attn_output.weight"] = mat(cfg.d_model, cfg.d_model)
        w[p + "ffn_gate.weight"] = mat(cfg.d_ff, cfg.d_model)
        w[p + "ffn_up.weight"] = mat(cfg.d_ff, cfg.d_model)
        w[p + "ffn_down.weight"] = mat(cfg.d_model, cfg.d_ff)
        if cfg.qkv_bias:
            for name, n in (("attn_q", cfg.d_model), ("attn_k", cfg.kv_dim), ("attn_v", cfg.kv_dim)):
                w[p + name + ".bias"] = 0.1 * torch.randn(n, generator=g)
    return w


# The tiny random model (`tiny-random`): 8 blocks so that every H in 1, 2, 4, 8 means something, 257 ids for
# the byte tokenizer (256 = end of text). It runs the whole pipeline in milliseconds for tests.
TINY_CONFIG = ModelConfig(arch="llama", n_layers=8, d_model=64, n_heads=4, n_kv_heads=2, d_ff=128,
                          vocab_size=257, rope_theta=10000.0, norm_eps=1e-5)
