"""Tidy records of one run: a row per participant, a row per block and participant, and the run's summary
row. Quality metrics are defined here, once, with whether higher is better."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from fedsim.fedattn.costs import model_weight_bytes, paper_costs
from fedsim.sim.energy import participant_energy

if TYPE_CHECKING:  # records stay importable without torch (plots read QUALITY_METRICS)
    from fedsim.experiment.setup import RunSetup
    from fedsim.fedattn.costs import LayerCost
    from fedsim.fedattn.prefill import FedAttnPrefill
    from fedsim.models.transformer import ModelConfig
    from fedsim.sim.outcome import SimResult


@dataclass(frozen=True)
class Metric:
    label: str
    unit: str
    higher_is_better: bool


QUALITY_METRICS = {
    "kl_mean": Metric("KL divergence from centralized", "nats per token", False),
    "top1_agree": Metric("Top-1 agreement with centralized", "fraction of tokens", True),
    "hidden_dev_last": Metric("Last-block hidden-state deviation from centralized", "relative L2", False),
    "gen_exact_match": Metric("Exact match with centralized generation", "fraction", True),
    "gen_token_overlap": Metric("Token overlap with centralized generation", "fraction", True),
    "task_correct": Metric("Task accuracy", "fraction correct", True),
}


@dataclass
class RunRecords:
    participants: pd.DataFrame
    layers: pd.DataFrame
    summary: dict[str, Any]
    trace: dict | None


def participant_rows(setup: RunSetup, sim: SimResult, costs: list[list[LayerCost]], quality: dict[str, list],
                     cfg: ModelConfig) -> pd.DataFrame:
    """One row per participant: timings and traffic from the engine, memory from the costs each block ran
    with, quality as a responder (NaN for a participant that dropped out), and the same participant's
    FLOPs and memory in the authors' convention (`*_paper*`: the nominal schedule, its own generation)."""
    part, rows = setup.prompt.partition, []
    weights_bytes = model_weight_bytes(cfg, setup.precision)
    paper = paper_costs(cfg, part.sizes(), part.publisher, setup.schedule, quality["n_generated"], setup.precision)
    for p, rec in enumerate(sim.participants):
        kv = sum(layer[p].kv_cache_bytes for layer in costs)
        dropped = bool(rec.dropped)
        energy = participant_energy(setup.deployment.devices[p], setup.deployment.links[p], rec)
        row = {
            "run_id": setup.run_id,
            "participant": p,
            "role": "publisher" if p == part.publisher else "collaborator",
            "responder": p == setup.responder,
            "device": setup.deployment.devices[p].name,
            "n_prompt_tokens": part.sizes()[p],
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
            "peak_mem_bytes": weights_bytes + kv + max(layer[p].peak_act_bytes for layer in costs),
            "exposed_layers": list(rec.exposed_layers),
            "exposed_bytes": rec.exposed_bytes,
            "dropped": dropped,
            "energy_compute_j": energy.compute_j,
            "energy_radio_j": energy.radio_j,
            "energy_j": energy.total_j,
        }
        for metric in (*QUALITY_METRICS, "n_generated", "generated_text"):
            value = quality[metric][p]
            row[metric] = math.nan if dropped and metric in QUALITY_METRICS else value
        row.update({"flops_paper_prefill": paper[p].flops_prefill, "flops_paper_decode": paper[p].flops_decode,
                    "flops_paper": paper[p].flops, "mem_paper_prefill_bytes": paper[p].mem_prefill_bytes,
                    "mem_paper_decode_bytes": paper[p].mem_decode_bytes, "mem_paper_bytes": paper[p].mem_bytes})
        rows.append(row)
    return pd.DataFrame(rows)


def layer_rows(setup: RunSetup, prefill: FedAttnPrefill, hidden_dev: list[list[float]]) -> pd.DataFrame:
    """One row per block and participant: what it attended, held and sent, and how far its output drifted."""
    rows = []
    for layer in range(prefill.model.cfg.n_layers):
        included = prefill.included[layer]
        for p, c in enumerate(prefill.counts(layer, included)):
            rows.append({
                "run_id": setup.run_id, "layer": layer, "participant": p, "kind": setup.schedule.kind(layer),
                "included": p in included, "attended_pairs": c.attended_pairs,
                "visible_keys": c.visible_keys, "sent_tokens": c.sent_tokens, "hidden_dev": hidden_dev[layer][p],
            })
    return pd.DataFrame(rows)


def summarize(participants: pd.DataFrame, run_id: str, responder: int) -> dict[str, Any]:
    """The run's row of the runs table (the sweep prepends the flattened configuration)."""
    summary = {"run_id": run_id, "n_participants": len(participants)}
    pub = participants[participants.role == "publisher"].iloc[0]
    best = best_collaborator(participants)
    for metric in QUALITY_METRICS:
        summary[f"{metric}_publisher"] = float(pub[metric])
        summary[f"{metric}_best_collaborator"] = best[f"{metric}_best_collaborator"]
        summary[f"{metric}_average"] = float(participants[metric].mean())
    summary["bytes_sent_per_participant"] = float(participants.bytes_sent.mean())
    responder_row = participants.participant == responder
    summary["prefill_s"] = float(participants.loc[responder_row, "prefill_s"].iloc[0])  # what the user waits for
    summary["prefill_s_slowest"] = float(participants.prefill_s.max())
    summary["ttft_s"] = float(participants.loc[responder_row, "ttft_s"].iloc[0])
    summary["decode_s_per_token"] = float(participants.loc[responder_row, "decode_s_per_token"].iloc[0])
    summary["total_flops"] = float(participants.flops_prefill.sum() + participants.flops_decode.sum())
    summary["peak_mem_bytes"] = float(participants.peak_mem_bytes.max())
    summary["energy_j_per_participant"] = float(participants.energy_j.mean())
    summary["energy_j_total"] = float(participants.energy_j.sum(min_count=1))
    summary["generated_text"] = str(pub["generated_text"])
    return summary


def mean_exchange_s(sim: SimResult) -> float:
    """One K/V exchange, last sender ready to last delivery, averaged over the sync blocks (NaN if none)."""
    spans = [layer.exchange_s for layer in sim.layers if layer.kind == "sync" and not math.isnan(layer.exchange_s)]
    return sum(spans) / len(spans) if spans else math.nan


def best_collaborator(participants: pd.DataFrame) -> dict[str, float]:
    """`<metric>_best_collaborator` of one run, or of several runs of one setting (questions, seeds), as the
    authors define it: each collaborator's metric is averaged over the runs first, then the best of those
    means is taken (max, or min where lower is better). Averaging each run's best instead would overstate
    the best collaborator (E[max] >= max E)."""
    collab = participants[participants.role == "collaborator"]
    out = {}
    for metric, spec in QUALITY_METRICS.items():
        if metric not in collab:
            continue
        means = pd.to_numeric(collab[metric], errors="coerce").groupby(collab.participant).mean().dropna()
        best = (means.max() if spec.higher_is_better else means.min()) if len(means) else math.nan
        out[f"{metric}_best_collaborator"] = float(best)
    return out
