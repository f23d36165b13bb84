"""Run the Qwen report's sweeps (scenarios/report_qwen/*.yaml) and write results/report/REPORT_qwen.md.

The paper's experiments on its model family, Qwen2.5-Coder-0.5B-Instruct (the optional model: its GGUF must be
installed, see the README), in the paper's figure layout: accuracy of the task publisher, the best
collaborator and the average, at N=4 with 7-shot GSM8K asked leave-one-out over fedsim's 8 exemplars. Every
number is read from the tables the sweeps write, so the report is reproduced by

    python3 benchmarks/make_qwen_report.py [--workers 2] [--report-only]

Sweeps resume: a finished run is never recomputed, so a second call only rewrites the report; with
`--report-only` nothing runs and the report is written from the runs that have finished (a sweep with none
is listed as not run). The best
collaborator is the authors' (fedsim.experiment.records.best_collaborator): each collaborator's accuracy is
averaged over the questions first, then the best of those means is taken.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import pandas as pd

from fedsim.common.errors import UserError
from fedsim.common.files import atomic_write
from fedsim.experiment.plots import plot_results
from fedsim.experiment.records import best_collaborator
from fedsim.experiment.results import read_results
from fedsim.experiment.scenario_file import load_scenario
from fedsim.experiment.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios" / "report_qwen"
OUT = ROOT / "results" / "report"
QUESTIONS = 8
ORDER = ("qwen_H", "qwen_local", "qwen_sparse_attention", "qwen_sparse_sync", "qwen_retrieval", "qwen_placement")


def run_all(workers: int, run: bool) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """(runs, participants) per sweep name, of the sweeps that have finished runs."""
    tables = {}
    for name in ORDER:
        sc = load_scenario(SCENARIOS / f"{name}.yaml")
        if run:
            start = time.perf_counter()
            runs = run_sweep(sc, out_dir=OUT / "runs", workers=workers, progress=True)
            print(f"{sc.name}: {runs.attrs['ran']} run(s) in {time.perf_counter() - start:.0f} s, "
                  f"{runs.attrs['skipped']} already done", flush=True)
            plot_results(OUT / "runs" / sc.name)
        try:
            runs, participants = read_results(OUT / "runs" / sc.name)
        except UserError:  # no finished run yet
            continue
        tables[sc.name] = (runs, participants)
    return tables


def accuracy(runs: pd.DataFrame, participants: pd.DataFrame, keys: list[str], metric: str = "task_correct",
             extra: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per setting of `keys`: runs, publisher / best collaborator / average `metric`, and `extra`
    columns of the runs table (means)."""
    rows = []
    for setting, group in runs.groupby(keys, dropna=False, sort=False):
        setting = setting if isinstance(setting, tuple) else (setting,)
        parts = participants[participants.run_id.isin(group.run_id)]
        row = dict(zip(keys, setting, strict=True))
        row["runs"] = len(group)
        row["publisher"] = group[f"{metric}_publisher"].mean()
        row["best collaborator"] = best_collaborator(parts).get(f"{metric}_best_collaborator", math.nan)
        row["average"] = group[f"{metric}_average"].mean()
        for column, label in (extra or {}).items():
            row[label] = group[column].mean()
        rows.append(row)
    return pd.DataFrame(rows).set_index(keys)


def paper_costs(participants: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """FLOPs and memory per participant in the authors' convention (mean over participants and questions)."""
    p = participants.merge(runs[["run_id", "schedule.H"]], on="run_id")
    return p.groupby("schedule.H").agg(**{
        "TFLOPs / participant (paper)": ("flops_paper", lambda s: s.mean() / 1e12),
        "GFLOPs / participant (exact causal)": ("flops_prefill", lambda s: s.mean() / 1e9),
        "memory MB / participant (paper)": ("mem_paper_bytes", lambda s: s.mean() / 1e6),
        "MB sent / participant": ("bytes_sent", lambda s: s.mean() / 1e6)})


def markdown(table: pd.DataFrame) -> str:
    return table.to_markdown(floatfmt=".3f")


def write_report(t: dict[str, tuple[pd.DataFrame, pd.DataFrame]]) -> str:
    missing = [name for name in ORDER if name not in t]
    empty = pd.DataFrame({"run_id": []}), pd.DataFrame({"run_id": []})
    h_runs, h_parts = t["qwen_H"]
    l_runs, l_parts = t.get("qwen_local", empty)
    hr = pd.concat([h_runs.astype({"schedule.H": str}), l_runs.assign(**{"schedule.H": "none (local)"})])
    hp = pd.concat([h_parts, l_parts])
    h_table = accuracy(hr, hp, ["schedule.H"], extra={"bytes_sent_per_participant": "bytes sent / participant"})
    dense = h_runs[h_runs["schedule.H"] == 8]
    sections = [
        "# FedAttn on the paper's model family (Qwen2.5-Coder-0.5B-Instruct)",
        "",
        "Generated by `python3 benchmarks/make_qwen_report.py` from the sweeps in `scenarios/report_qwen/`.",
        "N = 4 participants holding contiguous chunks of a 7-shot GSM8K prompt; the question is each of",
        f"fedsim's {QUESTIONS} exemplars in turn, the other 7 are the shots (leave-one-out). Greedy decoding,",
        "at most 128 new tokens, each participant decoding as a responder (batched). Accuracy is the fraction",
        "of questions whose final number is right. The best collaborator is the authors': each collaborator's",
        "accuracy averaged over the questions, then the best of the three.",
        "",
        f"**Noise.** {QUESTIONS} questions: one question moves an accuracy by {1 / QUESTIONS:.3f}, and the",
        f"binomial standard error at 50% is {math.sqrt(0.25 / QUESTIONS):.2f}. Greedy decoding is deterministic",
        "(a replicate of the same question reproduces it bit for bit), so more signal needs more questions, not",
        "seeds; differences below about 0.25 between rows are within the noise.",
        "",
        "## Accuracy vs sync interval H (24 blocks; H = 1 is centralized, 24 one sync, `none` fully local)",
        "",
        markdown(h_table),
        "",
        "## FLOPs and memory vs H, the authors' convention (`flops_paper`, `mem_paper_bytes`)",
        "",
        "Next to fedsim's exact causal prefill FLOPs; per participant, mean over participants and questions.",
        "",
        markdown(paper_costs(h_parts, h_runs)),
    ]
    if "qwen_placement" in t:
        p_runs, p_parts = t["qwen_placement"]
        uniform = dense.assign(**{"schedule.placement": "uniform"})
        sections += ["", "## Placement of 3 syncs in 24 blocks (as H = 8)", "",
                     markdown(accuracy(pd.concat([uniform, p_runs]), pd.concat([h_parts, p_parts]),
                                       ["schedule.placement"]))]
    variants = [dense.assign(variant="dense")]
    parts = [h_parts]
    for name, label in (("qwen_sparse_attention", "r_comp = 0.5 (sparse local attention)"),
                        ("qwen_sparse_sync", "r_comm = 0.5 (sparse K/V sync)")):
        if name in t:
            variants.append(t[name][0].assign(variant=label))
            parts.append(t[name][1])
    if len(variants) > 1:
        sections += ["", "## Sparse local attention and sparse K/V sync (H = 8, everyone alike)", "",
                     markdown(accuracy(pd.concat(variants), pd.concat(parts), ["variant"],
                                       extra={"total_flops": "total FLOPs",
                                              "bytes_sent_per_participant": "bytes sent / participant"}))]
    if "qwen_retrieval" in t:
        r_runs, r_parts = t["qwen_retrieval"]
        sections += ["", "## Multi-party retrieval (the publisher holds only the question; 2 seeds x 3 fact "
                     "positions)", "", markdown(accuracy(r_runs, r_parts, ["schedule.H"]))]
    if missing:
        sections += ["", "Not run yet (the sweeps resume where they stopped): " + ", ".join(missing) + "."]
    return "\n".join(sections) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--report-only", action="store_true", help="write the report from the finished runs")
    args = ap.parse_args()
    tables = run_all(args.workers, not args.report_only)
    text = write_report(tables)
    atomic_write(OUT / "REPORT_qwen.md", text.encode())
    print(text)


if __name__ == "__main__":
    main()
