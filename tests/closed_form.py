"""An independent closed form of dense FedAttn prefill FLOPs, for checking the mask counts and the engine."""

from fedsim.fedattn.costs import attention_flops, lm_head_flops, projection_flops
from fedsim.models.transformer import ModelConfig


def dense_prefill_flops(cfg: ModelConfig, sizes: list[int], sync_layers) -> list[float]:
    """No sparsity, everyone on time: prefill FLOPs per participant (LM head: publisher's last token).
    A local block attends sum_{k=1..n} k pairs; a sync block sum over the participant's global positions
    t of (t + 1)."""
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    out = []
    for p, (n, s) in enumerate(zip(sizes, starts, strict=True)):
        qkv, rest = projection_flops(cfg, n)
        local_pairs = n * (n + 1) // 2
        global_pairs = n * s + local_pairs  # sum_{t=s}^{s+n-1} (t + 1)
        total = 0.0
        for layer in range(cfg.n_layers):
            pairs = global_pairs if layer in sync_layers else local_pairs
            total += qkv + rest + attention_flops(cfg, pairs)
        if p == len(sizes) - 1:
            total += lm_head_flops(cfg)
        out.append(total)
    return out
