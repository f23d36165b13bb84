"""One scenario run: the glue between the validated config, the FedAttn math and the SimPy engine.

    scenario -> model + task -> tokens + partition + schedule -> centralized reference (cached)
             -> engine.simulate(FedAttnLayerMath)   # the engine drives the math block by block
             -> fidelity and task metrics per participant -> tidy records

The centralized reference (the oracle: greedy continuation, its teacher-forced logits and every block's
hidden states) depends only on the model and the prompt, so it is computed once per process and shared by
every run of a sweep; so are the prefix blocks two schedules have in common (`PrefixCache`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from fedsim import engine
from fedsim.config import Scenario, config_hash
from fedsim.costs import LayerCost, Precision, decode_step_cost, lm_head_flops, model_weight_bytes
from fedsim.fedattn import FedAttnPrefill, PrefixCache, Sampling, generate
from fedsim.loading import LoadedModel, load_model
from fedsim.metrics import hidden_deviation, kl_per_position, token_overlap, top1_agreement
from fedsim.partition import Partition, partition_pieces
from fedsim.profiles import get_device, get_link, with_overrides
from fedsim.schedule import Schedule, make_schedule
from fedsim.workloads.base import Task, make_task

QUALITY_METRICS = {  # metric -> True if higher is better
    "kl_mean": False,
    "top1_agree": True,
    "hidden_dev_last": False,
    "gen_exact_match": True,
    "gen_token_overlap": True,
    "task_correct": True,
}

PREFIX_CACHE = PrefixCache()
_REFERENCES: dict[tuple, Reference] = {}
MODEL_WORK = {"prefill_blocks": 0}  # blocks computed (not served from cache): lets tests see skipped work


@dataclass(frozen=True)
class Reference:
    """Centralized inference on one prompt: the oracle every metric compares against."""

    continuation: list[int]
    logits: torch.Tensor  # [T, vocab] teacher-forced along `continuation`
    hidden: list[torch.Tensor]  # per block, [L, d]


@dataclass
class RunRecords:
    participants: pd.DataFrame
    layers: pd.DataFrame
    summary: dict[str, Any]
    trace: dict | None


@dataclass(frozen=True)
class Prompt:
    tokens: list[int]
    partition: Partition
    task: Task


class FedAttnLayerMath:
    """The engine's view of the math (docs/ARCHITECTURE.md, LayerMath): costs per block and participant,
    and `advance`, which runs the real block with exactly the K/V the engine delivered."""

    def __init__(self, prefill: FedAttnPrefill, responder: int):
        self.prefill = prefill
        self.responder = responder
        self.n_layers = prefill.model.cfg.n_layers
        self.n_participants = prefill.partition.n_participants

    def layer_kind(self, layer: int) -> str:
        return self.prefill.schedule.kind(layer)

    def layer_cost(self, layer: int, participant: int, included: frozenset[int]) -> LayerCost:
        return self.prefill.layer_costs(layer, included)[participant]

    def advance(self, layer: int, included: frozenset[int]) -> None:
        if layer != self.prefill.layer:
            raise RuntimeError(f"engine advanced block {layer}, the math is at block {self.prefill.layer}")
        cache = self.prefill.cache
        hits = cache.hits if cache is not None else 0
        self.prefill.step(included)
        if cache is None or cache.hits == hits:
            MODEL_WORK["prefill_blocks"] += 1

    def decode_step_cost(self, step: int) -> LayerCost:
        """Step 0 is the LM head on the last prompt position (the first token); step s >= 1 runs generated
        token s-1 through the whole model."""
        cfg, prec = self.prefill.model.cfg, self.prefill.precision
        if step == 0:
            head = cfg.vocab_size * cfg.d_model * prec.weight_bytes
            return LayerCost(flops_post=lm_head_flops(cfg), bytes_post=head)
        return decode_step_cost(cfg, self.prefill.decode_cache_keys(self.responder, step - 1), prec)


# -- building blocks ----------------------------------------------------------------------------------------
def task_params(sc: Scenario) -> dict[str, Any]:
    """The workload's own parameters (the `task:` block minus `kind`; chat is passed as prefix/suffix)."""
    return sc.task.model_dump(exclude={"kind", "chat"})


def build_prompt(sc: Scenario, lm: LoadedModel) -> Prompt:
    """Task text -> token ids per piece -> who owns which token."""
    params = task_params(sc)
    if sc.task.chat and hasattr(lm.tokenizer, "render_chat"):
        prefix, suffix = lm.tokenizer.render_chat([{"role": "user", "content": "\x00"}]).split("\x00")
        params.update(chat_prefix=prefix, chat_suffix=suffix)
    task = make_task(sc.task.kind, params, sc.seed)
    ids = [lm.tokenizer.encode(piece.text) for piece in task.pieces]
    partition = partition_pieces([len(x) for x in ids], [p.kind for p in task.pieces], sc.participants.n,
                                 sc.partition.scheme)
    return Prompt([t for x in ids for t in x], partition, task)


def build_schedule(sc: Scenario, n_layers: int) -> Schedule:
    s = sc.schedule
    return make_schedule(n_layers, s.H, phase=s.phase, placement=s.placement, layers=s.layers,
                         publisher_H=s.publisher_H, r_comp=s.r_comp, r_comm=s.r_comm,
                         publisher_dense=s.publisher_dense)


def reference(lm: LoadedModel, tokens: list[int], max_new_tokens: int) -> Reference:
    key = (lm.name, tuple(tokens), max_new_tokens)
    if key not in _REFERENCES:
        solo = Partition(np.zeros(len(tokens), dtype=np.int64), 1)
        pf = FedAttnPrefill(lm.model, tokens, solo, make_schedule(lm.cfg.n_layers, 1)).run()
        cont = generate(pf, [0], max_new_tokens, lm.tokenizer.eos_ids)[0]
        scored = cont if cont else [int(pf.last_logits().argmax())]
        logits = pf.continuation_logits([0], scored)[0]
        _REFERENCES.clear()  # one prompt at a time is what sweeps reuse; keep memory flat
        _REFERENCES[key] = Reference(cont, logits, [h[0] for h in pf.hidden])
    return _REFERENCES[key]


def devices_and_links(sc: Scenario) -> tuple[list, list]:
    n = sc.participants.n
    devices, links = [], []
    for p in range(n):
        over = sc.participants.overrides.get(p)
        devices.append(get_device(over.device if over and over.device else sc.participants.device))
        lo = sc.network.overrides.get(p)
        link = get_link(lo.link if lo and lo.link else sc.network.link)
        if lo is not None:
            changes = {}
            if lo.uplink_mbps is not None:
                changes["uplink_Bps"] = lo.uplink_mbps * 1e6 / 8
            if lo.downlink_mbps is not None:
                changes["downlink_Bps"] = lo.downlink_mbps * 1e6 / 8
            if lo.latency_ms is not None:
                changes["latency_s"] = lo.latency_ms / 1e3
            if lo.jitter_ms is not None:
                changes["jitter_s"] = lo.jitter_ms / 1e3
            link = with_overrides(link, **changes) if changes else link
        links.append(link)
    return devices, links


def dropouts(sc: Scenario) -> list[tuple[int, float]]:
    d = sc.faults.dropout
    if d is None:
        return []
    at = d.at_s or 0.0
    if d.participant is not None:
        return [(d.participant, at)]
    rng = np.random.default_rng([sc.seed, 1])
    return [(p, at) for p in range(sc.participants.n) if rng.random() < (d.probability or 0.0)]


def score_answer(kind: str, task: Task, text: str) -> float:
    """1.0 / 0.0 for tasks with a gold answer (each task's own extractor), NaN otherwise."""
    if task.answer is None:
        return math.nan
    if kind == "gsm8k":
        from fedsim.workloads.gsm8k import is_correct

        return float(is_correct(text, task.answer))
    if kind == "retrieval":
        from fedsim.workloads.retrieval import score

        return float(score(text, task.answer))
    return float(task.answer.strip() in text)


@dataclass(frozen=True)
class Prepared:
    """Everything a run needs before the simulation starts."""

    lm: LoadedModel
    prompt: Prompt
    schedule: Schedule
    responder: int
    devices: list
    links: list


def prepare(sc: Scenario) -> Prepared:
    """Model, prompt, schedule, responder, devices and links of a scenario. Raises a one-line ValueError for
    what the schema alone cannot tell (it needs the model's depth or the tokenized prompt)."""
    lm = load_model(sc.model.name)
    prompt = build_prompt(sc, lm)
    schedule = build_schedule(sc, lm.cfg.n_layers)
    n = prompt.partition.n_participants
    responder = prompt.partition.publisher if sc.decoding.responder == "publisher" else int(sc.decoding.responder)
    if responder >= n:
        raise ValueError(f"decoding.responder={responder} but there are only {n} participants (0..{n - 1}); "
                         f"use 'publisher' or a smaller index")
    devices, links = devices_and_links(sc)
    return Prepared(lm, prompt, schedule, responder, devices, links)


def check_scenario(sc: Scenario) -> None:
    """Raise before any results are written if the scenario cannot run (see `prepare`)."""
    prepare(sc)


# -- one run ------------------------------------------------------------------------------------------------
def run_scenario(sc: Scenario, run_dir: Any = None) -> RunRecords:
    """Simulate one scenario and measure it; `run_dir` is unused here (the caller writes results)."""
    del run_dir
    run = prepare(sc)
    lm, part, responder = run.lm, run.prompt.partition, run.responder
    prec = Precision(kv_bytes=sc.model.kv_bytes_per_element)
    ref = reference(lm, run.prompt.tokens, sc.decoding.max_new_tokens)

    prefill = FedAttnPrefill(lm.model, run.prompt.tokens, part, run.schedule, seed=sc.seed, precision=prec,
                             cache=PREFIX_CACHE)
    sim = engine.simulate(
        FedAttnLayerMath(prefill, responder), run.devices, run.links, sc.network.topology,
        overlap=sc.engine.overlap, deadline_s=sc.faults.deadline_s, dropout=dropouts(sc),
        responder=responder, n_decode=max(1, len(ref.continuation)), seed=sc.seed, trace=sc.engine.trace,
    )
    while not prefill.done:  # the engine stops early only if nobody is left; finish for the metrics
        prefill.step(frozenset())

    quality = measure_quality(lm, prefill, ref, list(range(part.n_participants)), run.prompt.task, sc)
    run_id = config_hash(sc.resolved())
    layers = layer_rows(prefill, ref, run_id)
    last = layers[layers.layer == lm.cfg.n_layers - 1].sort_values("participant")
    quality["hidden_dev_last"] = last.hidden_dev.tolist()
    participants = pd.DataFrame(participant_rows(sim, prefill, quality, run.devices, prec, run_id, responder))
    return RunRecords(participants, layers, summarize(participants, run_id, responder), sim.trace)


def measure_quality(lm: LoadedModel, prefill: FedAttnPrefill, ref: Reference, who: list[int], task: Task,
                    sc: Scenario) -> dict[str, list]:
    scored = ref.continuation if ref.continuation else [int(ref.logits[0].argmax())]
    logits = prefill.continuation_logits(who, scored)
    ref_logits = ref.logits[None].expand_as(logits)
    d = sc.decoding
    sampling = Sampling(d.greedy, d.temperature, d.top_k, d.top_p, sc.seed)
    gens = generate(prefill, who, d.max_new_tokens, lm.tokenizer.eos_ids, sampling)
    texts = [lm.tokenizer.decode(g) for g in gens]
    return {
        "kl_mean": kl_per_position(ref_logits, logits).mean(-1).tolist(),
        "top1_agree": top1_agreement(ref_logits, logits).tolist(),
        "gen_exact_match": [float(g == ref.continuation) for g in gens],
        "gen_token_overlap": [token_overlap(ref.continuation, g) for g in gens],
        "task_correct": [score_answer(sc.task.kind, task, t) for t in texts],
        "generated_text": texts,
        "n_generated": [len(g) for g in gens],
    }


def participant_rows(sim, prefill: FedAttnPrefill, quality: dict, devices: list, prec: Precision, run_id: str,
                     responder: int) -> list[dict]:
    cfg = prefill.model.cfg
    weights = model_weight_bytes(cfg, prec)
    rows = []
    for p, rec in enumerate(sim.participants):
        costs = [prefill.layer_costs(layer, prefill.included[layer])[p] for layer in range(cfg.n_layers)]
        kv = sum(c.kv_cache_bytes for c in costs)
        dropped = bool(rec.dropped)
        row = {
            "run_id": run_id,
            "participant": p,
            "role": "publisher" if p == prefill.partition.publisher else "collaborator",
            "responder": p == responder,
            "device": devices[p].name,
            "n_prompt_tokens": prefill.partition.sizes()[p],
            "ttft_s": rec.ttft_s,
            "prefill_s": rec.prefill_s,
            "prefill_compute_s": rec.prefill_compute_s,
            "prefill_wait_s": rec.prefill_wait_s,
            "prefill_comm_s": rec.prefill_comm_s,
            "decode_s_per_token": rec.decode_s_per_token,
            "bytes_sent": rec.bytes_sent,
            "bytes_received": rec.bytes_received,
            "flops_prefill": rec.flops_prefill,
            "flops_decode": rec.flops_decode,
            "kv_cache_bytes": kv,
            "peak_mem_bytes": weights + kv + max(c.peak_act_bytes for c in costs),
            "exposed_layers": ",".join(str(x) for x in rec.exposed_layers),
            "exposed_bytes": rec.exposed_bytes,
            "dropped": dropped,
        }
        for metric in (*QUALITY_METRICS, "n_generated", "generated_text"):
            value = quality[metric][p]
            row[metric] = math.nan if dropped and metric in QUALITY_METRICS else value
        rows.append(row)
    return rows


def layer_rows(prefill: FedAttnPrefill, ref: Reference, run_id: str) -> pd.DataFrame:
    owner = torch.as_tensor(prefill.partition.owner)
    rows = []
    for layer in range(prefill.model.cfg.n_layers):
        counts = prefill.counts(layer, prefill.included[layer])
        for p, c in enumerate(counts):
            rows.append({
                "run_id": run_id, "layer": layer, "participant": p, "kind": prefill.schedule.kind(layer),
                "included": p in prefill.included[layer], "attended_pairs": c.attended_pairs,
                "visible_keys": c.visible_keys, "sent_tokens": c.sent_tokens,
                "hidden_dev": hidden_deviation(ref.hidden[layer][owner == p], prefill.hidden[layer][0][owner == p]),
            })
    return pd.DataFrame(rows)


def summarize(participants: pd.DataFrame, run_id: str, responder: int) -> dict[str, Any]:
    """The run's row of the runs table (the sweep prepends the flattened configuration)."""
    summary = {"run_id": run_id, "n_participants": len(participants)}
    pub = participants[participants.role == "publisher"].iloc[0]
    collab = participants[participants.role == "collaborator"]
    for metric, higher in QUALITY_METRICS.items():
        summary[f"{metric}_publisher"] = float(pub[metric])
        values = collab[metric].dropna()
        best = (values.max() if higher else values.min()) if len(values) else math.nan
        summary[f"{metric}_best_collaborator"] = float(best)
        summary[f"{metric}_average"] = float(participants[metric].mean())
    summary["bytes_sent_per_participant"] = float(participants.bytes_sent.mean())
    responder_row = participants.participant == responder
    summary["prefill_s"] = float(participants.loc[responder_row, "prefill_s"].iloc[0])  # what the user waits for
    summary["prefill_s_slowest"] = float(participants.prefill_s.max())
    summary["ttft_s"] = float(participants.loc[responder_row, "ttft_s"].iloc[0])
    summary["decode_s_per_token"] = float(participants.loc[responder_row, "decode_s_per_token"].iloc[0])
    summary["total_flops"] = float(participants.flops_prefill.sum() + participants.flops_decode.sum())
    summary["peak_mem_bytes"] = float(participants.peak_mem_bytes.max())
    summary["generated_text"] = str(pub["generated_text"])
    return summary
