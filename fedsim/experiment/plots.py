"""The paper's trade-off figures from a runs table (results/<name>/runs.parquet).

Figures are built on matplotlib's object API with the Agg canvas (no pyplot, no display), so plotting
works in worker processes and on headless machines. Each figure states its fixed settings in the title,
so a PNG is readable without the code that made it.
"""

from __future__ import annotations

import io
import re
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from fedsim.common.files import atomic_write
from fedsim.experiment.config import Scenario
from fedsim.experiment.records import QUALITY_METRICS, Metric, best_collaborator
from fedsim.experiment.results import read_results
from fedsim.fedattn.schedule import PLACEMENTS

ROLES = (("publisher", "Task publisher", "-"), ("best_collaborator", "Best collaborator", "--"),
         ("average", "Average participant", ":"))
# constant settings worth naming in a title, in the order they are named
_CONTEXT = (("model.name", "{}"), ("task.kind", "{}"), ("participants.n", "N={}"), ("schedule.H", "H={}"),
            ("participants.device", "{}"), ("network.link", "{}"), ("network.topology", "{} topology"),
            ("schedule.placement", "{} placement"))
MB = 1e6


def metric_label(metric: str) -> str:
    """Axis label with unit and direction, e.g. 'KL divergence from centralized (nats per token, lower is better)'."""
    spec = QUALITY_METRICS.get(metric, Metric(metric, "", True))
    details = ", ".join(d for d in (spec.unit, "" if spec.higher_is_better else "lower is better") if d)
    return textwrap.fill(f"{spec.label} ({details})" if details else spec.label, 45)


def plot_quality_vs_H(runs: pd.DataFrame, metric: str) -> Figure:
    """Quality of publisher / best collaborator / average vs H, with per-participant traffic on an inverted axis."""
    fig, ax = _figure()
    data = _mean_by(runs, "schedule.H", [*_role_columns(metric), "bytes_sent_per_participant"])
    handles = _quality_lines(ax, data, metric)
    _log2_axis(ax, data.index)
    ax.set_xlabel("Sync interval H (transformer blocks between K/V exchanges)")
    ax.set_ylabel(metric_label(metric))
    comm = ax.twinx()
    handles += comm.plot(data.index, data["bytes_sent_per_participant"] / MB, color="tab:gray", ls="-.",
                         marker="s", label="Bytes sent per participant")
    comm.set_ylabel("Sent per participant (MB, axis inverted)")
    comm.invert_yaxis()  # as in the paper: up is good on both axes
    ax.legend(handles=handles, loc="best", fontsize="small")
    _title(fig, "Quality vs sync interval H", runs, ["schedule.H"])
    return fig


def plot_quality_vs_N(runs: pd.DataFrame, metric: str) -> Figure:
    """Quality (left) and compute / memory cost (right) vs the number of participants."""
    fig, (ax, cost) = _figure(ncols=2)
    data = _mean_by(runs, "participants.n", [*_role_columns(metric), "total_flops", "peak_mem_bytes"])
    ax.legend(handles=_quality_lines(ax, data, metric), loc="best", fontsize="small")
    ax.set_ylabel(metric_label(metric))
    ax.set_title("Quality")
    handles = cost.plot(data.index, data["total_flops"] / 1e9, marker="o", color="tab:purple",
                        label="Total FLOPs, all participants")
    cost.set_ylabel("Total FLOPs (GFLOP)")
    mem = cost.twinx()
    handles += mem.plot(data.index, data["peak_mem_bytes"] / MB, marker="s", ls="--", color="tab:brown",
                        label="Peak memory (max over participants)")
    mem.set_ylabel("Peak memory (MB)")
    cost.legend(handles=handles, loc="best", fontsize="small")
    cost.set_title("Compute and memory")
    for axis in (ax, cost):
        axis.set_xlabel("Number of participants N")
        axis.set_xticks(data.index)
    _title(fig, "Quality and cost vs number of participants", runs, ["participants.n"])
    return fig


def plot_quality_vs_retention(runs: pd.DataFrame, metric: str) -> Figure:
    """Quality vs retention ratio r of sparse attention (r_comp) and of sparse K/V sync (r_comm)."""
    fig, ax = _figure()
    kinds = {"schedule.r_comp": ("Sparse attention (r_comp)", "tab:blue"),
             "schedule.r_comm": ("Sparse K/V sync (r_comm)", "tab:orange")}
    swept = [c for c in kinds if _numeric(runs[c]).nunique() > 1] or ["schedule.r_comp"]
    for column in swept:
        other = next(c for c in kinds if c != column)
        rows = runs[_numeric(runs[other]) == _numeric(runs[other]).max()]  # the other ratio held dense
        data = _mean_by(rows, column, [f"{metric}_publisher", f"{metric}_average"])
        name, color = kinds[column]
        ax.plot(data.index, data[f"{metric}_publisher"], marker="o", color=color, label=f"{name}: task publisher")
        ax.plot(data.index, data[f"{metric}_average"], marker="^", ls=":", color=color, label=f"{name}: average")
    ax.set_xlabel("Retention ratio r (fraction of tokens kept)")
    ax.set_ylabel(metric_label(metric))
    ax.legend(loc="best", fontsize="small")
    _title(fig, "Quality vs sparsity", runs, list(kinds))
    return fig


def plot_placements(runs: pd.DataFrame, metric: str) -> Figure:
    """Grouped bars: quality for each placement of the sync layers in depth."""
    fig, ax = _figure()
    data = runs.groupby("schedule.placement")[_role_columns(metric)].mean(numeric_only=True)
    order = [p for p in PLACEMENTS if p in data.index] + sorted(set(data.index) - set(PLACEMENTS))
    data = data.loc[order]
    x, width = np.arange(len(order)), 0.8 / len(ROLES)
    for i, (role, label, _) in enumerate(ROLES):
        ax.bar(x + (i - 1) * width, data[f"{metric}_{role}"], width, label=label)
    ax.set_xticks(x, [p.replace("_", " ") for p in order])
    ax.set_xlabel("Placement of the sync layers in depth")
    ax.set_ylabel(metric_label(metric))
    ax.legend(loc="best", fontsize="small")
    _title(fig, "Quality by sync-layer placement", runs, ["schedule.placement"])
    return fig


def plot_pareto(runs: pd.DataFrame, metric: str) -> Figure:
    """Latency vs the publisher's quality, one colour per network link, with the Pareto front drawn."""
    fig, ax = _figure()
    quality = f"{metric}_publisher"
    data = runs.assign(_x=_numeric(runs["ttft_s"]), _y=_numeric(runs[quality])).dropna(subset=["_x", "_y"])
    for link, group in data.groupby("network.link"):
        ax.scatter(group["_x"], group["_y"], label=f"link: {link}", zorder=3)
    higher = QUALITY_METRICS.get(metric, Metric(metric, "", True)).higher_is_better
    front = _pareto_front(data["_x"].to_numpy(), data["_y"].to_numpy(), higher)
    ax.plot(front[:, 0], front[:, 1], drawstyle="steps-post", color="black", lw=1, marker="o", ms=11, mfc="none",
            label="Pareto front (circled)", zorder=2)
    labels = _varying(data, exclude=["network.link"])
    on_front = data[[(x, y) in set(map(tuple, front)) for x, y in zip(data["_x"], data["_y"], strict=True)]]
    for _, row in on_front.drop_duplicates(["_x", "_y"]).iterrows():  # name the settings that reach the front
        text = ", ".join(f"{c.split('.')[-1]}={row[c]}" for c in labels)
        ax.annotate(text, (row["_x"], row["_y"]), textcoords="offset points", xytext=(8, -3), fontsize="x-small",
                    bbox={"boxstyle": "round,pad=0.1", "fc": "white", "alpha": 0.8, "lw": 0})
    ax.set_xlabel("Time to first token of the responder (s)")
    ax.set_ylabel(metric_label(metric) + "\nof the task publisher")
    ax.legend(loc="lower right", fontsize="small")
    _title(fig, "Latency vs quality, one point per run", runs, _varying(runs))
    return fig


def plot_energy_vs_quality(runs: pd.DataFrame, metric: str) -> Figure:
    """Energy per participant (device + radio, fedsim/sim/energy.py) vs quality of each role, one point per
    setting; the publisher's points are labelled with the settings that vary."""
    fig, ax = _figure()
    energy = _numeric(runs["energy_j_per_participant"])
    for (role, label, _), marker in zip(ROLES, ("o", "^", "s"), strict=True):
        ax.scatter(energy, _numeric(runs[f"{metric}_{role}"]), marker=marker, label=label, zorder=3)
    labels = _varying(runs)
    for x, (_, row) in zip(energy, runs.iterrows(), strict=True):
        y = pd.to_numeric(row[f"{metric}_publisher"], errors="coerce")
        if labels and np.isfinite(x) and np.isfinite(y):
            ax.annotate(", ".join(f"{c.split('.')[-1]}={row[c]}" for c in labels), (x, y), textcoords="offset points",
                        xytext=(6, 4), fontsize="x-small")
    ax.grid(alpha=0.3)
    ax.margins(x=0.12)  # room for the labels of the outermost points
    ax.set_xlabel("Energy per participant, device + radio (J)")
    ax.set_ylabel(metric_label(metric))
    ax.legend(loc="best", fontsize="small")
    _title(fig, "Energy vs quality, one point per setting", runs, _varying(runs))
    return fig


_PLANS: tuple[tuple[str, Callable[[pd.DataFrame, str], Figure], tuple[str, ...]], ...] = (
    ("quality_vs_H", plot_quality_vs_H, ("schedule.H",)),
    ("quality_vs_N", plot_quality_vs_N, ("participants.n",)),
    ("quality_vs_retention", plot_quality_vs_retention, ("schedule.r_comp", "schedule.r_comm")),
    ("placements", plot_placements, ("schedule.placement",)),
)


# Swept axes that are repeats of one experiment (other prompts, other random draws): averaged, not faceted.
REPLICATE_AXES = ("seed", "task.question_index")


def plot_results(results_dir: str | Path) -> list[Path]:
    """Write the plots that fit the swept axes of a scenario's runs to <results_dir>/plots/ (PNG and PDF).

    A plot is drawn per measured metric and per combination of the other swept settings (replicate axes,
    `REPLICATE_AXES`, are averaged over); a latency vs quality (Pareto) plot and an energy vs quality
    plot are drawn whenever there is more than one setting.
    """
    runs, participants = read_results(results_dir)
    out = Path(results_dir) / "plots"
    varying = _varying(runs)
    metrics = _metrics(runs)
    settings = _average_replicates(runs, participants, varying)
    written: list[Path] = []
    for stem, plot, x_columns in _PLANS:
        if not set(x_columns) & set(varying):
            continue
        facets = [c for c in varying if c not in x_columns and c not in REPLICATE_AXES]
        groups = settings.groupby(facets, dropna=False) if facets else [((), settings)]  # keys are tuples
        for key, group in groups:
            if len(group.drop_duplicates(list(x_columns))) < 2:
                continue
            suffix = "".join(f"__{c.split('.')[-1]}={v}" for c, v in zip(facets, key, strict=True))
            for metric in metrics:
                written += save_figure(plot(group, metric), out / _safe(f"{stem}_{metric}{suffix}"))
    if len(settings) > 1 and "ttft_s" in settings and _numeric(settings["ttft_s"]).notna().any():
        for metric in metrics:
            written += save_figure(plot_pareto(settings, metric), out / f"pareto_{metric}")
    energy = "energy_j_per_participant"
    if len(settings) > 1 and energy in settings and _numeric(settings[energy]).notna().any():
        for metric in metrics:
            written += save_figure(plot_energy_vs_quality(settings, metric), out / f"energy_vs_{metric}")
    return written


def _average_replicates(runs: pd.DataFrame, participants: pd.DataFrame, varying: list[str]) -> pd.DataFrame:
    """One row per setting: measurements averaged over the replicate axes (questions, seeds), except the
    best collaborator, which is the best of the collaborators' averages (records.best_collaborator)."""
    replicates = [c for c in REPLICATE_AXES if c in varying]
    if not replicates:
        return runs
    keys = [c for c in varying if c not in replicates]
    rest = [c for c in runs.columns if c not in keys + replicates]
    how = {c: "mean" if pd.api.types.is_float_dtype(runs[c]) else "first" for c in rest}
    groups = runs.groupby(keys, dropna=False) if keys else runs.assign(_all=0).groupby("_all")
    settings = groups.agg(how).reset_index(drop=not keys)
    best = pd.DataFrame([best_collaborator(participants[participants.run_id.isin(group.run_id)])
                         for _, group in groups], index=settings.index)
    return settings.assign(**{c: best[c] for c in best if c in settings})


def save_figure(fig: Figure, stem: Path) -> list[Path]:
    """`stem`.png and `stem`.pdf, written atomically; the PDF carries no creation date (reproducible)."""
    paths = []
    for fmt, extra in (("png", {"dpi": 150}), ("pdf", {"metadata": {"CreationDate": None}})):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, **extra)
        path = stem.with_name(f"{stem.name}.{fmt}")
        atomic_write(path, buffer.getvalue())
        paths.append(path)
    return paths


def _figure(ncols: int = 1) -> tuple[Figure, Axes | Sequence[Axes]]:
    fig = Figure(figsize=(6.4 * ncols, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols)
    return fig, axes


def _numeric(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series, errors="coerce")


def _role_columns(metric: str) -> list[str]:
    return [f"{metric}_{role}" for role, _, _ in ROLES]


def _mean_by(runs: pd.DataFrame, x: str, columns: list[str]) -> pd.DataFrame:
    """Mean of `columns` per value of `x`, sorted by x (repeats of a setting are averaged)."""
    data = runs[[x, *columns]].apply(_numeric)
    return data.groupby(x).mean().sort_index()


def _quality_lines(ax: Axes, data: pd.DataFrame, metric: str) -> list:
    handles = []
    for role, label, style in ROLES:
        handles += ax.plot(data.index, data[f"{metric}_{role}"], ls=style, marker="o", label=label)
    ax.grid(alpha=0.3)
    return handles


def _log2_axis(ax: Axes, values: pd.Index) -> None:
    """H values are usually powers of two: space them evenly and label them with their own values."""
    if len(values) and values.min() > 0 and values.max() / values.min() >= 4:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(values, [f"{v:g}" for v in values])


def _pareto_front(x: np.ndarray, y: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Points no other point beats on both latency (lower) and quality; sorted by latency."""
    sign = 1 if higher_is_better else -1
    front, best = [], -np.inf
    for i in np.lexsort((-sign * y, x)):  # by latency, ties: best quality first
        if sign * y[i] > best:
            front.append((x[i], y[i]))
            best = sign * y[i]
    return np.array(front).reshape(-1, 2)


def _config_columns(runs: pd.DataFrame) -> list[str]:
    sections = set(Scenario.model_fields)
    return [c for c in runs.columns if c.split(".")[0] in sections]


def _varying(runs: pd.DataFrame, exclude: Sequence[str] = ()) -> list[str]:
    """Config columns with more than one value: the swept axes."""
    return [c for c in _config_columns(runs) if c not in exclude and runs[c].astype(str).nunique(dropna=False) > 1]


def _metrics(runs: pd.DataFrame) -> list[str]:
    """Quality metrics with all three role columns and at least one measured value, known ones first."""
    found = [c.removesuffix("_publisher") for c in runs.columns if c.endswith("_publisher")]
    measured = [m for m in found
                if all(c in runs for c in _role_columns(m)) and _numeric(runs[f"{m}_publisher"]).notna().any()]
    order = list(QUALITY_METRICS)
    return sorted(measured, key=lambda m: (order.index(m) if m in order else len(order), m))


def _title(fig: Figure, title: str, runs: pd.DataFrame, axes: Sequence[str]) -> None:
    """Title plus the settings held fixed in this figure (e.g. 'smollm2-135m-instruct, gsm8k, N=4, wifi6') and
    the ones averaged over, so the figure says what it shows."""
    fixed = []
    for column, fmt in _CONTEXT:
        if column in runs and column not in axes and runs[column].astype(str).nunique(dropna=False) == 1:
            fixed.append(fmt.format(runs[column].iloc[0]))
    mixed = [c.split(".")[-1] for c in _varying(runs, exclude=axes)]
    if mixed:
        fixed.append(f"mean over {', '.join(mixed)}")
    context = textwrap.fill(", ".join(fixed), 75) if fixed else ""
    fig.suptitle(title + (f"\n{context}" if context else ""), fontsize="medium")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]", "_", name)
