"""Closed-form FLOPs, bytes and memory of FedAttn, per participant and per block.

Counts are for what a *device* computes: its own queries against the keys it may see (not the dense
L x L product the batched simulation evaluates). Matrix multiplies count 2 FLOPs per multiply-add;
norms, RoPE and softmax are left out (under 1% for these models). Attention costs 4 * head_dim FLOPs per
(query, key, head) triple: 2 for the score and 2 for the weighted value.

Memory traffic (for the roofline) is the weights a block reads once plus the K/V it reads; activations
are kept on chip. Bytes per element: weights `weight_bytes` (default 2: fp16 deployment), K/V
`kv_bytes` (default 2), activations `act_bytes` (default 2).

The `paper_*` functions are the FedAttn authors' convention instead (their `utils_get_performance_stats`
and `preprocess_data.get_perf_stat`), kept so that the paper's cost figures can be redrawn; see
`paper_costs` and docs/authors.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fedsim.fedattn.schedule import Schedule
    from fedsim.models.transformer import ModelConfig

PREFIX_CACHE_BYTES = 2e9  # the bound of a run's prefix cache (fedsim.fedattn.prefix_cache); memory it may hold


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
    # the work in its own units, for devices timed by measured tables instead of a roofline
    n_queries: int = 0
    attended_pairs: int = 0
    own_pairs: int = 0
    cache_keys: int = 0  # a decode step: K/V entries attended, summed over blocks (0 for the LM head alone)

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
        n_queries=n_queries,
        attended_pairs=attended_pairs,
        own_pairs=own_pairs,
    )


def decode_step_cost(cfg: ModelConfig, cache_keys: int, prec: Precision = Precision()) -> LayerCost:
    """One generated token through the whole model: every weight is read once (memory-bound),
    `cache_keys` is the K/V entries it attends summed over blocks (prompt keys it holds + generated)."""
    qkv, rest = projection_flops(cfg, 1)
    flops = cfg.n_layers * (qkv + rest) + attention_flops(cfg, cache_keys) + lm_head_flops(cfg)
    kv_read = cache_keys * kv_bytes_per_token(cfg, prec)
    return LayerCost(flops_post=flops, bytes_post=model_weight_bytes(cfg, prec) + kv_read, cache_keys=cache_keys)


# --- The authors' convention ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaperCost:
    """One participant's FLOPs and working-set memory in the authors' convention (weights not included)."""

    flops_prefill: float
    flops_decode: float
    mem_prefill_bytes: float
    mem_decode_bytes: float

    @property
    def flops(self) -> float:
        return self.flops_prefill + self.flops_decode

    @property
    def mem_bytes(self) -> float:
        return max(self.mem_prefill_bytes, self.mem_decode_bytes)


def paper_block_flops(cfg: ModelConfig, t_q: int, t_kv: int) -> float:
    """One block for t_q queries against t_kv keys: projections, the full t_q x t_kv attention rectangle
    (no causal halving), and the gated FFN (6 d d_ff per token)."""
    d, r = cfg.d_model, cfg.n_kv_heads / cfg.n_heads
    return 2.0 * t_q * d * d * (2 + 2 * r) + 4.0 * t_q * t_kv * d + 6.0 * t_q * d * cfg.d_ff


def paper_block_working_set(cfg: ModelConfig, t_q: int, t_kv: int, b: float) -> float:
    """Peak activation bytes of one block, stepping through it: the larger of the attention step (x, Q, K,
    V, the scores of every head, the attention output) and the FFN step (residual, norm, the intermediate
    and activated d_ff vectors). The authors' other steps never exceed one of these two."""
    d, r = cfg.d_model, cfg.n_kv_heads / cfg.n_heads
    attention = 3 * b * t_q * d + 2 * b * t_kv * d * r + b * cfg.n_heads * t_q * t_kv
    ffn = 2 * b * t_q * d + 2 * b * t_q * cfg.d_ff
    return max(attention, ffn)


def paper_kv_bytes(cfg: ModelConfig, t_kv: int, b: float) -> float:
    """K and V of t_kv tokens at one block."""
    return t_kv * cfg.kv_dim * 2 * b


def paper_token_counts(sizes: Sequence[int], publisher: int, schedule: Schedule) -> list[tuple[int, list[int]]]:
    """(T_q, T_kv per block) of every participant as the authors count them.

    T_q = int(n * r_comp) queries (no minimum of 1); at a sync block the keys are its own T_q plus everyone
    else's shared m_j = int(int(n_j * r_comp_j) * r_comm_j), all of them, later participants' included; at a
    publisher block its own plus the publisher's, so the publisher counts its own tokens twice (their
    code's double count, kept so the figures match); at a local block its own T_q.
    """
    kept, shared = [], []
    for p, n in enumerate(sizes):
        r_comp, r_comm = schedule.ratios(publisher=p == publisher)
        kept.append(int(n * r_comp))
        shared.append(int(kept[-1] * r_comm))
    kinds = [schedule.kind(layer) for layer in range(schedule.n_layers)]
    counts = []
    for p, t_q in enumerate(kept):
        keys = {"sync": t_q + sum(shared) - shared[p], "publisher": t_q + kept[publisher], "local": t_q}
        counts.append((t_q, [keys[k] for k in kinds]))
    return counts


def paper_costs(cfg: ModelConfig, sizes: Sequence[int], publisher: int, schedule: Schedule,
                generated: Sequence[int], prec: Precision = Precision()) -> list[PaperCost]:
    """Every participant's cost in the authors' convention, `generated[p]` being the tokens it generated.

    Prefill: every block over (T_q, T_kv) plus the LM head on one position (for every participant);
    memory is the peak over blocks of the K/V cached so far plus the block's working set. Decode: G full
    passes in which token g attends T_kv + g keys at each block, plus G LM heads; memory is the final
    step's K/V over all blocks plus the largest working set (a block's or the LM head's logits). One
    element size b = `prec.kv_bytes` for everything, as the authors use their dtype's.
    """
    b, d, vocab = prec.kv_bytes, cfg.d_model, cfg.vocab_size
    head = 2.0 * d * vocab
    per_token = paper_block_flops(cfg, 1, 0)  # projections and FFN of one token at one block
    out = []
    for (t_q, t_kv), g in zip(paper_token_counts(sizes, publisher, schedule), generated, strict=True):
        cached, mem_prefill = 0.0, 0.0
        for keys in t_kv:
            cached += paper_kv_bytes(cfg, keys, b)
            mem_prefill = max(mem_prefill, cached + paper_block_working_set(cfg, t_q, keys, b))
        attended = sum(g * keys + g * (g - 1) // 2 for keys in t_kv)
        final_ws = max(max(paper_block_working_set(cfg, 1, keys + g, b) for keys in t_kv), b * vocab)
        out.append(PaperCost(
            flops_prefill=sum(paper_block_flops(cfg, t_q, keys) for keys in t_kv) + head,
            flops_decode=cfg.n_layers * g * per_token + 4.0 * d * attended + g * head,
            mem_prefill_bytes=mem_prefill,
            mem_decode_bytes=sum(paper_kv_bytes(cfg, keys + g, b) for keys in t_kv) + final_ws,
        ))
    return out


def simulation_memory_bytes(cfg: ModelConfig, n_tokens: int, n_participants: int, max_new_tokens: int) -> float:
    """Host memory one simulated run needs (fp32 torch on this machine, not the simulated devices): the
    pre-flight refuses a run that cannot fit before anything is written. An upper estimate of today's math,
    which never builds an L x L tensor (fedsim.fedattn.attention), so every term is linear in L:

    - weights: every parameter in fp32;
    - per block, kept for the whole run by the FedAttn prefill and by the centralized reference: K/V,
      `2 * n_layers * L * 2 kv_dim * 4`; and the prefix cache's block outputs, at most PREFIX_CACHE_BYTES;
    - one block's working set over L = prompt + new tokens: hidden states, queries, outputs and their
      compacted copies at a sparse block, K/V copies, the FFN activations, `(6 d_model + 4 kv_dim + 3 d_ff) L 4`;
    - the responders' prompt views (fedsim.fedattn.attention.PromptView): at most three prompt caches of
      gathered K/V per block, `3 * n_layers * L * 2 kv_dim * 4`, and an [N, L] mask per block;
    - decoding and quality, batched over the N responders for T = max_new_tokens steps: logits
      `N * T * vocab * 4` and the generated K/V `N * T * 2 n_layers kv_dim * 4`.

    Change it together with the math: it is the one place that says how memory grows.
    """
    L, N, T = n_tokens + max_new_tokens, n_participants, max_new_tokens
    weights = model_weight_bytes(cfg, Precision(weight_bytes=4.0))
    kv = 2 * cfg.n_layers * L * 2 * cfg.kv_dim * 4.0
    cache = min(PREFIX_CACHE_BYTES, cfg.n_layers * L * (cfg.d_model + 2 * cfg.kv_dim) * 4.0)
    block = (6 * cfg.d_model + 4 * cfg.kv_dim + 3 * cfg.d_ff) * L * 4.0
    views = cfg.n_layers * L * (3 * 2 * cfg.kv_dim + N) * 4.0
    decode = N * T * (cfg.vocab_size + 2 * cfg.n_layers * cfg.kv_dim) * 4.0
    return weights + kv + cache + block + views + decode
