"""Closed-form FLOPs, bytes and memory of FedAttn, per participant and per block.

Counts are for what a *device* computes: its own queries against the keys it may see (not the dense
L x L product the batched simulation evaluates). Matrix multiplies count 2 FLOPs per multiply-add;
norms, RoPE and softmax are left out (under 1% for these models). Attention costs 4 * head_dim FLOPs per
(query, key, head) triple: 2 for the score and 2 for the weighted value.

Memory traffic (for the roofline) is the weights a block reads once plus the K/V it reads; activations
are kept on chip. Bytes per element: weights `weight_bytes` (default 2: fp16 deployment), K/V
`kv_bytes` (default 2), activations `act_bytes` (default 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fedsim.models.transformer import ModelConfig


@dataclass(frozen=True)
class Precision:
    weight_bytes: float = 2.0
    kv_bytes: float = 2.0
    act_bytes: float = 2.0


@dataclass(frozen=True)
class LayerCost:
    """Cost of one block for one participant; `*_pre` is before the K/V exchange, `*_post` after."""

    flops_pre: float = 0.0
    flops_post: float = 0.0
    flops_post_own: float = 0.0  # the part of the attention over the participant's own keys (overlappable)
    bytes_pre: float = 0.0
    bytes_post: float = 0.0
    send_bytes: float = 0.0
    kv_cache_bytes: float = 0.0
    peak_act_bytes: float = 0.0

    @property
    def flops(self) -> float:
        return self.flops_pre + self.flops_post


def kv_bytes_per_token(cfg: ModelConfig, prec: Precision = Precision()) -> float:
    """K and V of one token at one block: what a sync sends per shared token."""
    return 2 * cfg.kv_dim * prec.kv_bytes


def projection_flops(cfg: ModelConfig, n_tokens: int) -> tuple[float, float]:
    """(QKV projections, output projection + SwiGLU FFN) FLOPs for n tokens at one block."""
    qkv = 2.0 * n_tokens * cfg.d_model * (cfg.d_model + 2 * cfg.kv_dim)
    rest = 2.0 * n_tokens * cfg.d_model * cfg.d_model + 2.0 * n_tokens * 3 * cfg.d_model * cfg.d_ff
    return qkv, rest


def attention_flops(cfg: ModelConfig, attended_pairs: int) -> float:
    return 4.0 * attended_pairs * cfg.n_heads * cfg.head_dim


def lm_head_flops(cfg: ModelConfig, n_tokens: int = 1) -> float:
    return 2.0 * n_tokens * cfg.d_model * cfg.vocab_size


def block_weight_bytes(cfg: ModelConfig, prec: Precision = Precision()) -> tuple[float, float]:
    """(QKV weights, output + FFN weights) in bytes."""
    qkv = cfg.d_model * (cfg.d_model + 2 * cfg.kv_dim) * prec.weight_bytes
    rest = (cfg.d_model * cfg.d_model + 3 * cfg.d_model * cfg.d_ff) * prec.weight_bytes
    return qkv, rest


def model_weight_bytes(cfg: ModelConfig, prec: Precision = Precision()) -> float:
    qkv, rest = block_weight_bytes(cfg, prec)
    head = cfg.vocab_size * cfg.d_model * prec.weight_bytes * (1 if cfg.tied_embeddings else 2)
    return cfg.n_layers * (qkv + rest) + head


def layer_cost(
    cfg: ModelConfig,
    n_queries: int,
    attended_pairs: int,
    own_pairs: int,
    visible_keys: int,
    sent_tokens: int,
    prec: Precision = Precision(),
) -> LayerCost:
    """Cost of one prefill block for a participant with `n_queries` tokens.

    `attended_pairs` is the number of (query, key) pairs its attention evaluates (own_pairs of them over
    its own keys), `visible_keys` the prompt keys it holds for this block (its KV cache), and
    `sent_tokens` how many of its tokens' K/V it sends at this block.
    """
    if n_queries == 0:
        return LayerCost()
    qkv, rest = projection_flops(cfg, n_queries)
    w_qkv, w_rest = block_weight_bytes(cfg, prec)
    kv_tok = kv_bytes_per_token(cfg, prec)
    scores = cfg.n_heads * n_queries * visible_keys * prec.act_bytes
    ffn = 2 * n_queries * cfg.d_ff * prec.act_bytes
    return LayerCost(
        flops_pre=qkv,
        flops_post=attention_flops(cfg, attended_pairs) + rest,
        flops_post_own=attention_flops(cfg, own_pairs),
        bytes_pre=w_qkv,
        bytes_post=w_rest + visible_keys * kv_tok,
        send_bytes=sent_tokens * kv_tok,
        kv_cache_bytes=visible_keys * kv_tok,
        peak_act_bytes=max(scores, ffn) + 2 * n_queries * cfg.d_model * prec.act_bytes,
    )


def decode_step_cost(cfg: ModelConfig, cache_keys: int, prec: Precision = Precision()) -> LayerCost:
    """One generated token through the whole model: every weight is read once (memory-bound),
    `cache_keys` is the K/V entries it attends summed over blocks (prompt keys it holds + generated)."""
    qkv, rest = projection_flops(cfg, 1)
    flops = cfg.n_layers * (qkv + rest) + attention_flops(cfg, cache_keys) + lm_head_flops(cfg)
    kv_read = cache_keys * kv_bytes_per_token(cfg, prec)
    return LayerCost(flops_post=flops, bytes_post=model_weight_bytes(cfg, prec) + kv_read)


def simulation_memory_bytes(cfg: ModelConfig, n_tokens: int, n_participants: int, max_new_tokens: int) -> float:
    """Host memory one simulated run needs (fp32 torch on this machine, not the simulated devices): the
    pre-flight refuses a run that cannot fit before anything is written. An upper estimate of today's math:

    - weights: every parameter in fp32;
    - per block, kept for the whole run by the FedAttn prefill and by the centralized reference: hidden
      states and K/V, `2 * n_layers * L * (d_model + 2 kv_dim) * 4`;
    - the dense attention of one block over L = prompt + new tokens (fedsim.fedattn.prefill evaluates the
      [L, L] product for all participants in one masked pass): scores and probabilities per head in fp32
      plus a few [L, L] boolean masks, `(8 n_heads + 8) * L^2`; and the FFN activations, `3 * L * d_ff * 4`;
    - decoding and quality, batched over the N responders for T = max_new_tokens steps: logits
      `N * T * vocab * 4`, attention `2 * N * n_heads * T * L * 4` and generated K/V.

    Change it together with the math: it is the one place that says how memory grows.
    """
    L, N, T = n_tokens + max_new_tokens, n_participants, max_new_tokens
    weights = model_weight_bytes(cfg, Precision(weight_bytes=4.0))
    kept = 2 * cfg.n_layers * L * (cfg.d_model + 2 * cfg.kv_dim) * 4.0
    attention = (8.0 * cfg.n_heads + 8.0) * L * L + 3 * L * cfg.d_ff * 4.0
    decode = N * T * (cfg.vocab_size + 2 * cfg.n_heads * L + 2 * cfg.n_layers * cfg.kv_dim) * 4.0
    return weights + kept + attention + decode
