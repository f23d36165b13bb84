"""The engine's view of the FedAttn math (the LayerMath protocol of docs/ARCHITECTURE.md): costs per block and
participant, and `advance`, which runs the real block with exactly the K/V the engine delivered and records
the costs that block ran with, so nothing is asked twice."""

from __future__ import annotations

from collections.abc import Callable

from fedsim.fedattn.costs import LayerCost, decode_step_cost, lm_head_flops
from fedsim.fedattn.prefill import FedAttnPrefill


class FedAttnLayerMath:
    def __init__(self, prefill: FedAttnPrefill, responder: int, on_computed: Callable[[], None] = lambda: None):
        self.prefill = prefill
        self.responder = responder
        self.n_layers = prefill.model.cfg.n_layers
        self.n_participants = prefill.partition.n_participants
        self.costs: list[list[LayerCost]] = []  # per finished block, per participant: the costs it ran with
        self._on_computed = on_computed  # called for each block computed (not served from the prefix cache)

    def layer_kind(self, layer: int) -> str:
        return self.prefill.schedule.kind(layer)

    def layer_cost(self, layer: int, participant: int, included: frozenset[int]) -> LayerCost:
        return self.prefill.layer_costs(layer, included)[participant]

    def advance(self, layer: int, included: frozenset[int]) -> None:
        prefill = self.prefill
        if layer != prefill.layer:
            raise RuntimeError(f"engine advanced block {layer}, the math is at block {prefill.layer}")
        hits = prefill.cache.hits if prefill.cache is not None else 0
        prefill.step(included)
        if prefill.cache is None or prefill.cache.hits == hits:
            self._on_computed()
        self.costs.append(prefill.layer_costs(layer, included))

    def finish(self) -> None:
        """Run the blocks the engine never reached (it stops early only if nobody is left) with nobody's K/V
        shared, so every metric is defined."""
        while not self.prefill.done:
            self.advance(self.prefill.layer, frozenset())

    def decode_step_cost(self, step: int) -> LayerCost:
        """Step 0 is the LM head on the last prompt position (the first token); step s >= 1 runs generated
        token s-1 through the whole model."""
        cfg, prec = self.prefill.model.cfg, self.prefill.precision
        if step == 0:
            head = cfg.vocab_size * cfg.d_model * prec.weight_bytes
            return LayerCost(flops_post=lm_head_flops(cfg), bytes_post=head)
        return decode_step_cost(cfg, self.prefill.decode_cache_keys(self.responder, step - 1), prec)
