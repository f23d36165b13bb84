"""`fedsim validate-timing`: the simulator's latency against real runs of the same scenarios.

Each grid point is run for real (fedsim.experiment.real_run: one process per participant, loopback shaped in
a private network namespace) and simulated twice: with the profiles `fedsim calibrate` measured on this
machine, and with the naive baseline, the nearest spec-sheet profiles (the shipped `laptop-cpu` roofline;
the link at its nominal rate with no latency, or `ethernet-1g` for unshaped loopback). Metrics: prefill time
per participant, TTFT, the time of one K/V exchange (last sender ready to last receipt, mean over sync
blocks) and decode s/token. Calibration is its own step on its own micro-measurements: it never sees these runs.

Grid: N=2, star topology (a relay process), SmolLM2-135M, one torch thread per participant, H in {1, 2, 4,
8}, unshaped loopback and tbf at 100 and 20 Mbit/s, retrieval prompts of about 300 and 1,200 tokens.
`--quick`: H in {1, 4}, unshaped and 20 Mbit/s, the short prompt.
"""

from __future__ import annotations

import io
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fedsim.common.files import atomic_write
from fedsim.experiment.config import Scenario, validate_scenario
from fedsim.experiment.real_run import RealOptions, run_real
from fedsim.experiment.run import RunContext, run_scenario
from fedsim.real.calibrate import QUICK, Grid, link_name, measure_device, measure_link
from fedsim.real.netns import enter_private_network, shape_loopback

MODEL = "smollm2-135m-instruct"
DEVICE = "this-machine"
PROMPTS = {"short": {"n_context_pieces": 4, "filler_sentences": 6, "n_facts": 8},  # ~300 tokens
           "long": {"n_context_pieces": 11, "filler_sentences": 12, "n_facts": 16}}  # ~1,200 tokens
METRICS = ("prefill", "ttft", "exchange", "decode")


@dataclass(frozen=True)
class Point:
    H: int
    rate_mbit: float | None
    prompt: str

    def label(self) -> str:
        link = "unshaped" if self.rate_mbit is None else f"{self.rate_mbit:g} Mbit/s"
        return f"H={self.H}, {link}, {self.prompt} prompt"


def grid(quick: bool) -> list[Point]:
    if quick:
        return [Point(h, r, "short") for r in (None, 20.0) for h in (1, 4)]
    return [Point(h, r, p) for p in PROMPTS for r in (None, 100.0, 20.0) for h in (1, 2, 4, 8)]


def scenario(point: Point, device: str, link: str, profiles: list[str]) -> Scenario:
    return validate_scenario({
        "name": "validate-timing", "seed": 0, "model": {"name": MODEL, "kv_bytes_per_element": 4},
        "task": {"kind": "retrieval", "fact_piece": 0, **PROMPTS[point.prompt]}, "participants": {"n": 2,
        "device": device}, "network": {"topology": "star", "link": link}, "schedule": {"H": point.H},
        "decoding": {"max_new_tokens": 8}, "profiles": profiles})


def calibrate(path: Path, rates: list[float | None], quick: bool, timeout_s: float, *, model: str = MODEL,
              threads: int = 1, processes: int = 2, name: str = DEVICE, burst_kb: float = 8.0) -> None:
    """Measure this machine as device `name` (`processes` participants computing at once, `threads` torch
    threads each) and the loopback at every rate (None: unshaped), into one profile file at `path`."""
    g = QUICK if quick else Grid()
    devices = {name: measure_device(model, threads, processes, g, timeout_s)}
    links = {link_name(rate): measure_link(model, rate, burst_kb, g, timeout_s) for rate in rates}
    atomic_write(path, yaml.safe_dump({"devices": devices, "links": links}, sort_keys=False).encode())


def calibrate_machine(path: Path, rates: list[float | None], quick: bool, timeout_s: float, **device: Any) -> str:
    """`fedsim calibrate`: enter a private network namespace if a rate is to be shaped, then calibrate."""
    rates = rates or [None]
    if any(rate is not None for rate in rates):
        enter_private_network()
    calibrate(path, rates, quick, timeout_s, **device)
    return ", ".join(link_name(rate) for rate in rates)


def naive_profiles(path: Path, rates: list[float | None]) -> None:
    """The spec-sheet view of each shaped link: its nominal rate, dedicated, no latency."""
    links = {f"nominal-{rate:g}mbit": {
        "description": f"the tbf rate as a spec sheet states it: {rate:g} Mbit/s each way, no latency",
        "uplink_mbps": rate, "downlink_mbps": rate, "latency_ms": 0.0, "jitter_ms": 0.0, "shared_medium": False,
        "source": "the configured tbf rate (the naive baseline of fedsim validate-timing)"} for rate in rates if rate}
    atomic_write(path, yaml.safe_dump({"links": links}, sort_keys=False).encode())


def metrics(participants: Any, summary: dict[str, Any]) -> dict[str, list[float]]:
    return {"prefill": participants.sort_values("participant").prefill_s.tolist(), "ttft": [summary["ttft_s"]],
            "exchange": [summary["exchange_s"]], "decode": [summary["decode_s_per_token"]]}


def validate_timing(out: Path, quick: bool, calibration: Path | None, repeats: int,
                    timeout_s: float = 600.0, say=print) -> list[dict[str, Any]]:
    """Run the grid; returns one row per (point, metric, participant) with measured, simulated and naive."""
    points = grid(quick)
    rates = sorted({p.rate_mbit for p in points}, key=lambda r: -1 if r is None else r)
    enter_private_network()
    if calibration is None:
        calibration = out / "calibration.yaml"
        say(f"calibrating this machine and {len(rates)} link(s) into {calibration} ...")
        calibrate(calibration, rates, quick, timeout_s)
    naive = out / "naive_links.yaml"
    naive_profiles(naive, rates)
    context, rows = RunContext(), []
    for point in points:
        link = link_name(point.rate_mbit)
        calibrated = scenario(point, DEVICE, link, [str(calibration.resolve())])
        baseline = scenario(point, "laptop-cpu", f"nominal-{point.rate_mbit:g}mbit" if point.rate_mbit else
                            "ethernet-1g", [str(naive.resolve())])
        shape_loopback(point.rate_mbit)
        measured = [metrics(r.participants, r.summary) for r in
                    (run_real(calibrated, RealOptions(rate_mbit=point.rate_mbit, timeout_s=timeout_s))
                     for _ in range(repeats))]
        sim = run_scenario(calibrated, context=context)
        base = run_scenario(baseline, context=context)
        sim_m, base_m = metrics(sim.participants, sim.summary), metrics(base.participants, base.summary)
        for metric in METRICS:
            for i, sim_value in enumerate(sim_m[metric]):
                real_value = statistics.median(m[metric][i] for m in measured)
                rows.append({"point": point.label(), "H": point.H, "rate_mbit": point.rate_mbit,
                             "prompt": point.prompt, "metric": metric, "who": f"P{i}" if metric == "prefill" else "",
                             "measured_s": real_value, "simulated_s": sim_value, "naive_s": base_m[metric][i]})
        say(f"{point.label()}: " + ", ".join(
            f"{r['metric']}{r['who']} {r['measured_s'] * 1e3:.1f}/{r['simulated_s'] * 1e3:.1f} ms"
            for r in rows if r["point"] == point.label()))
    return rows


def error(row: dict[str, Any], key: str) -> float:
    return abs(row[key] - row["measured_s"]) / row["measured_s"]


def report(rows: list[dict[str, Any]]) -> list[str]:
    """The per-metric table of measured, simulated and error, with the naive baseline beside it."""
    lines = [f"{'metric':<9} {'points':>6} {'mean abs error':>15} {'worst':>7}  {'worst point':<40} "
             f"{'naive mean':>10} {'naive worst':>11}"]
    for metric in METRICS:
        these = [r for r in rows if r["metric"] == metric]
        worst = max(these, key=lambda r: error(r, "simulated_s"))
        lines.append(f"{metric:<9} {len(these):>6} {_mean(these, 'simulated_s'):>14.1%} "
                     f"{error(worst, 'simulated_s'):>7.1%}  {worst['point'] + ' ' + worst['who']:<40} "
                     f"{_mean(these, 'naive_s'):>10.1%} {max(error(r, 'naive_s') for r in these):>11.1%}")
    lines.append(f"mean abs error: {_mean(rows, 'simulated_s'):.1%} (naive: {_mean(rows, 'naive_s'):.1%})")
    return lines


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.fmean(error(r, key) for r in rows)


def write_outputs(rows: list[dict[str, Any]], out: Path, command: str) -> None:
    """timing.md (per point and per metric) and timing.png (measured vs simulated) under `out`."""
    table = ["| point | metric | measured ms | simulated ms | error | naive ms | naive error |", "|---|---|---:|---:|"
             "---:|---:|---:|"]
    table += [f"| {r['point']} | {r['metric']} {r['who']} | {r['measured_s'] * 1e3:.2f} | "
              f"{r['simulated_s'] * 1e3:.2f} | {error(r, 'simulated_s'):.1%} | {r['naive_s'] * 1e3:.2f} | "
              f"{error(r, 'naive_s'):.1%} |" for r in rows]
    text = "\n".join([f"Regenerate with `{command}`.", "", "```", *report(rows), "```", "", *table, ""])
    atomic_write(out / "timing.md", text.encode())
    fig = Figure(figsize=(6.4 * len(METRICS) / 2, 8.4), layout="constrained")
    FigureCanvasAgg(fig)
    for ax, metric in zip(fig.subplots(2, 2).flat, METRICS, strict=True):
        these = [r for r in rows if r["metric"] == metric]
        xs = [r["measured_s"] * 1e3 for r in these]
        ax.scatter(xs, [r["naive_s"] * 1e3 for r in these], color="tab:gray", marker="x", label="naive baseline")
        ax.scatter(xs, [r["simulated_s"] * 1e3 for r in these], color="tab:blue", label="calibrated simulator")
        lo, hi = min(xs + [r["simulated_s"] * 1e3 for r in these]), max(xs + [r["simulated_s"] * 1e3 for r in these])
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, label="simulated = measured")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{metric}: mean abs error {_mean(these, 'simulated_s'):.1%} "
                     f"(naive {_mean(these, 'naive_s'):.0%})", fontsize="medium")
        ax.set_xlabel("measured (ms)")
        ax.set_ylabel("simulated (ms)")
        ax.legend(fontsize="small")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    atomic_write(out / "timing.png", buffer.getvalue())
