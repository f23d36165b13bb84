"""One scenario run: setup -> FedAttn math <-> SimPy engine -> records.

The centralized reference (the oracle) depends only on the model and the prompt, and the prefix blocks two
schedules share are the same work, so both are kept in a `RunContext` that a sweep worker builds once and
passes to every run it executes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from fedsim.experiment.adapter import FedAttnLayerMath
from fedsim.experiment.config import Scenario
from fedsim.experiment.quality import HiddenDeviations, Reference, centralized_reference, measure_quality
from fedsim.experiment.records import RunRecords, layer_rows, mean_exchange_s, participant_rows, summarize
from fedsim.experiment.setup import RunSetup, prepare
from fedsim.fedattn.prefill import FedAttnPrefill, PrefixCache
from fedsim.models.loading import LoadedModel, load_model
from fedsim.sim.engine import simulate


@dataclass
class RunContext:
    """Work reused across the runs of one process: the prefix cache, the reference of the last prompt, and a
    count of blocks actually computed (tests and benchmarks read it to see skipped work)."""

    prefix_cache: PrefixCache = field(default_factory=PrefixCache)
    blocks_computed: int = 0
    _references: dict[tuple, Reference] = field(default_factory=dict)

    def reference(self, lm: LoadedModel, tokens: tuple[int, ...], max_new_tokens: int) -> Reference:
        key = (lm.name, tokens, max_new_tokens)
        if key not in self._references:
            self._references.clear()  # one prompt at a time is what sweeps reuse; keep memory flat
            self._references[key] = centralized_reference(lm, tokens, max_new_tokens)
        return self._references[key]

    def count_block(self) -> None:
        self.blocks_computed += 1


def run_scenario(scenario: Scenario, setup: RunSetup | None = None, context: RunContext | None = None) -> RunRecords:
    """Simulate one scenario and measure it (`setup`: its prepared setup, if the caller has it already)."""
    setup = setup or prepare(scenario)
    context = context or RunContext()
    lm = load_model(setup.model)
    ref = context.reference(lm, setup.tokens, setup.max_new_tokens)
    deviations = HiddenDeviations(ref, setup.prompt.partition)
    prefill = FedAttnPrefill(lm.model, setup.tokens, setup.prompt.partition, setup.schedule, seed=setup.seed,
                             precision=setup.precision, cache=context.prefix_cache, observe=deviations)
    math = FedAttnLayerMath(prefill, setup.responder, context.count_block)
    dep = setup.deployment
    sim = simulate(math, dep.devices, dep.links, replace(dep.engine, n_decode=max(1, len(ref.continuation))))
    math.finish()
    hidden = deviations.table
    quality = measure_quality(lm, prefill, ref, setup, hidden[-1])
    participants = participant_rows(setup, sim, math.costs, quality, lm.cfg)
    summary = summarize(participants, setup.run_id, setup.responder)
    summary["exchange_s"] = mean_exchange_s(sim)
    return RunRecords(participants, layer_rows(setup, prefill, hidden), summary, sim.trace)
