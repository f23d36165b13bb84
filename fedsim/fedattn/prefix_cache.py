"""Block outputs shared between prefills: two schedules that agree on their first blocks (a sweep over H, a
deadline that only bites late) compute those blocks once."""

from __future__ import annotations

from collections import OrderedDict

import torch

from fedsim.fedattn.costs import PREFIX_CACHE_BYTES


class PrefixCache:
    """Block outputs keyed by (model, tokens, partition, kept tokens, every block's visibility so far). Bounded
    in bytes, least recently used first out; an entry above `max_bytes / 8` (a very long prompt, whose blocks
    would crowd out everything else and outlive the prefill) is not kept at all."""

    def __init__(self, max_bytes: float = PREFIX_CACHE_BYTES):
        self.max_bytes = max_bytes
        self.entries: OrderedDict[str, tuple[torch.Tensor, ...]] = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> tuple[torch.Tensor, ...] | None:
        hit = self.entries.get(key)
        if hit is None:
            self.misses += 1
            return None
        self.hits += 1
        self.entries.move_to_end(key)
        return hit

    def clear(self) -> None:
        self.entries.clear()
        self.nbytes = 0

    def put(self, key: str, value: tuple[torch.Tensor, ...]) -> None:
        size = sum(t.numel() * t.element_size() for t in value)
        if key in self.entries or size > self.max_bytes / 8:
            return
        self.entries[key] = value
        self.nbytes += size
        while self.nbytes > self.max_bytes:
            _, old = self.entries.popitem(last=False)
            self.nbytes -= sum(t.numel() * t.element_size() for t in old)
