"""One self-contained HTML page per results folder (`results/<name>/report.html`): what was run, the key
numbers of every run, the plots and the traces, readable without pandas.

The page has no script and loads nothing from the network: styles are inline and the plots are embedded
as PNG data; only the links to the runs' trace files and the plots' PDFs point at files next to it.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

import fedsim
from fedsim.common.files import atomic_write
from fedsim.experiment.config import Scenario
from fedsim.experiment.records import QUALITY_METRICS
from fedsim.experiment.results import ResultsFolder, read_results

REPORT = "report.html"
ROLES = (("publisher", "publisher"), ("best_collaborator", "best collaborator"), ("average", "average"))
HEADLINE_METRICS = ("kl_mean", "task_correct")  # shown per role when measured; else the first measured one
# (column, header, scale, format): the cost columns of the key runs table
COSTS = (
    ("ttft_s", "TTFT (ms)", 1e3, "{:.2f}"),
    ("bytes_sent_per_participant", "sent / participant (MB)", 1e-6, "{:.3f}"),
    ("total_flops", "FLOPs, all (GFLOP)", 1e-9, "{:.2f}"),
    ("energy_j_per_participant", "energy / participant (J)", 1.0, "{:.3f}"),
    ("energy_j_total", "energy, all (J)", 1.0, "{:.3f}"),
)
_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5em 0; } td, th { padding: .25em .6em; border: 1px solid #ddd; }
th { background: #f4f4f4; text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: .5em; vertical-align: top; } figure img { max-width: 560px; width: 100%; }
figcaption { font-size: .85em; color: #555; } .wide { overflow-x: auto; }
.note { color: #555; font-size: .9em; } code { font-size: .95em; }
"""


def write_report(results_dir: str | Path) -> Path:
    """Write `<results_dir>/report.html` from the finished runs, the plots and the traces; returns its path."""
    root = Path(results_dir)
    runs, _ = read_results(root)
    path = root / REPORT
    atomic_write(path, render_report(root, runs).encode("utf-8"))
    return path


def render_report(root: Path, runs: pd.DataFrame) -> str:
    """The page's HTML for the runs table of `root` (plots and traces are looked up under `root`)."""
    fixed, varying = _settings(runs)
    parts = [
        f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>fedsim: {_e(root.name)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>fedsim report: {_e(root.name)}</h1>",
        f"<p class=\"note\">{len(runs)} finished run(s); fedsim {_e(fedsim.__version__)}. Next to this page: "
        "the tables <code>runs.parquet</code>, <code>participants.parquet</code>, <code>layers.parquet</code> "
        "(README, \"Using it\").</p>",
        "<h2>Scenario</h2>",
        _scenario_table(runs, fixed, varying),
        "<h2>Key numbers of every run</h2>",
        _runs_table(root, runs, varying),
        "<h2>Plots</h2>",
        _plots(root),
        "<h2>Traces</h2>",
        _traces(root, runs),
        "</body></html>\n",
    ]
    return "\n".join(parts)


def _settings(runs: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Config columns (`schedule.H`, ...) held fixed across the runs, and those that vary (the swept axes)."""
    sections = set(Scenario.model_fields)
    config = [c for c in runs.columns if c.split(".")[0] in sections]
    varying = [c for c in config if runs[c].astype(str).nunique(dropna=False) > 1]
    return [c for c in config if c not in varying], varying


def _scenario_table(runs: pd.DataFrame, fixed: Sequence[str], varying: Sequence[str]) -> str:
    rows = [f"<tr><th>{_e(c)}</th><td>swept: {_e(', '.join(_text(v) for v in _unique(runs[c])))}</td></tr>"
            for c in varying]
    rows += [f"<tr><th>{_e(c)}</th><td>{_e(_text(runs[c].iloc[0]))}</td></tr>" for c in fixed]
    return f"<table class=\"scenario\"><tbody>{''.join(rows)}</tbody></table>"


def _headline_metrics(runs: pd.DataFrame) -> list[str]:
    measured = [m for m in QUALITY_METRICS if f"{m}_publisher" in runs
                and pd.to_numeric(runs[f"{m}_publisher"], errors="coerce").notna().any()]
    return [m for m in HEADLINE_METRICS if m in measured] or measured[:1]


def _runs_table(root: Path, runs: pd.DataFrame, varying: Sequence[str]) -> str:
    metrics = _headline_metrics(runs)
    costs = [c for c in COSTS if c[0] in runs]
    top = [f"<th rowspan=\"2\">{_e(h)}</th>" for h in ("run", *varying)]
    top += [f"<th colspan=\"{len(ROLES)}\">{_e(QUALITY_METRICS[m].label)}</th>" for m in metrics]
    top += [f"<th rowspan=\"2\">{_e(h)}</th>" for h in (*(header for _, header, _, _ in costs), "trace")]
    roles = "".join(f"<th>{_e(label)}</th>" for _ in metrics for _, label in ROLES)
    body = []
    for _, row in runs.iterrows():
        run_id = str(row["run_id"])
        folder = ResultsFolder(root).run_dir(run_id)
        cells = [f"<td><a href=\"{_e(_rel(folder, root))}/\"><code>{_e(run_id)}</code></a></td>"]
        cells += [f"<td>{_e(_text(row[c]))}</td>" for c in varying]
        cells += [_number(row.get(f"{m}_{role}"), 1.0, "{:.3f}") for m in metrics for role, _ in ROLES]
        cells += [_number(row[column], scale, fmt) for column, _, scale, fmt in costs]
        trace = ResultsFolder(root).run_dir(run_id) / "trace.json"
        cells.append(f"<td><a href=\"{_e(_rel(trace, root))}\">trace.json</a></td>" if trace.is_file() else "<td></td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    units = "; ".join(f"{QUALITY_METRICS[m].label}: {QUALITY_METRICS[m].unit}, "
                      f"{'higher' if QUALITY_METRICS[m].higher_is_better else 'lower'} is better" for m in metrics)
    note = (f"<p class=\"note\">Quality of each role as responder ({_e(units)}). TTFT is the responder's; energy "
            "is device + radio per participant (fedsim/sim/energy.py). Every other metric per participant is in "
            "<code>participants.parquet</code>.</p>")
    return (f"{note}<div class=\"wide\"><table class=\"runs\"><thead><tr>{''.join(top)}</tr><tr>{roles}</tr>"
            f"</thead><tbody>{''.join(body)}</tbody></table></div>")


def _plots(root: Path) -> str:
    pngs = sorted((root / "plots").glob("*.png"), key=_plot_order)
    if not pngs:
        return "<p class=\"note\">No plots: none fit these runs (a plot needs a swept setting with two or more " \
               "values), or they were skipped; draw them with <code>fedsim plot</code>, then rerun " \
               "<code>fedsim report</code>.</p>"
    figures = []
    for png in pngs:
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        pdf = png.with_suffix(".pdf")
        link = f" (<a href=\"{_e(_rel(pdf, root))}\">PDF</a>)" if pdf.is_file() else ""
        figures.append(f"<figure><img class=\"plot\" alt=\"{_e(png.stem)}\" src=\"data:image/png;base64,{data}\">"
                       f"<figcaption>{_e(png.stem)}{link}</figcaption></figure>")
    return "\n".join(figures)


def _plot_order(png: Path) -> tuple[int, str]:
    """The paper's trade-offs first, then latency vs quality, then energy vs quality."""
    kinds = ("quality_vs_", "placements", "pareto_", "energy_vs_")
    return next((i for i, k in enumerate(kinds) if png.stem.startswith(k)), len(kinds)), png.stem


def _traces(root: Path, runs: pd.DataFrame) -> str:
    traced = [r for r in runs["run_id"].astype(str) if (ResultsFolder(root).run_dir(r) / "trace.json").is_file()]
    if not traced:
        return "<p class=\"note\">No traces: set <code>engine: {trace: true}</code> in the scenario.</p>"
    links = "".join(f"<li><a href=\"{_e(_rel(ResultsFolder(root).run_dir(r) / 'trace.json', root))}\">{_e(r)}</a></li>"
                    for r in traced)
    return ("<p class=\"note\">Chrome trace-event files: open one in Perfetto (ui.perfetto.dev, \"Open trace "
            f"file\") or chrome://tracing.</p><ul>{links}</ul>")


def _number(value: object, scale: float, fmt: str) -> str:
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    return f"<td class=\"n\">{'' if math.isnan(number) else _e(fmt.format(number * scale))}</td>"


def _unique(column: pd.Series) -> list[object]:
    values = list(dict.fromkeys(column.tolist()))
    try:
        return sorted(values)
    except TypeError:
        return values


def _text(value: object) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
