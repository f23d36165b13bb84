"""Plots: every figure renders to non-empty PNG and PDF, and plot_results picks plots by swept axis."""

import itertools
import math
from pathlib import Path

import pandas as pd
import pytest

from fedsim.experiment.plots import (
    plot_pareto,
    plot_placements,
    plot_quality_vs_H,
    plot_quality_vs_N,
    plot_quality_vs_retention,
    plot_results,
    save_figure,
)
from fedsim.experiment.results import ResultsFolder
from fedsim.experiment.tables import frame_table, row_table


def synthetic_runs() -> pd.DataFrame:
    """A runs table shaped like the sweep's: config columns plus per-role quality and cost columns."""
    rows = []
    grid = itertools.product([1, 2, 4, 8], [2, 4], ["wifi6", "5g"], ["uniform", "deep_half"], [0.5, 1.0])
    for i, (h, n, link, placement, r) in enumerate(grid):
        q = 0.9 / h**0.3 * r * (1.0 if placement == "uniform" else 0.8)
        rows.append({
            "run_id": f"{i:012x}", "model.name": "tiny-random", "participants.n": n, "network.link": link,
            "schedule.H": h, "schedule.placement": placement, "schedule.r_comp": r, "schedule.r_comm": 1.0,
            "task_correct_publisher": q, "task_correct_best_collaborator": q * 0.9, "task_correct_average": q * 0.8,
            "kl_mean_publisher": math.nan, "kl_mean_best_collaborator": math.nan, "kl_mean_average": math.nan,
            "bytes_sent_per_participant": 4e6 / h, "ttft_s": 0.2 * n + (0.5 if link == "5g" else 0.1) / h,
            "total_flops": 1e9 * n, "peak_mem_bytes": 3e8 / n,
        })
    return pd.DataFrame(rows)


def assert_rendered(paths: list[Path]) -> None:
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    png, pdf = (p.read_bytes() for p in paths)
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert pdf.startswith(b"%PDF") and len(pdf) > 5_000


@pytest.mark.parametrize("plot", [plot_quality_vs_H, plot_quality_vs_N, plot_quality_vs_retention,
                                  plot_placements, plot_pareto])
def test_each_plot_renders_png_and_pdf_with_labelled_axes(tmp_path: Path, plot) -> None:
    fig = plot(synthetic_runs(), "task_correct")
    assert fig.get_suptitle()
    for ax in fig.axes:
        assert ax.get_ylabel()
    assert any("accuracy" in ax.get_ylabel().lower() for ax in fig.axes)
    assert_rendered(save_figure(fig, tmp_path / plot.__name__))


def test_communication_axis_is_inverted_and_in_megabytes() -> None:
    fig = plot_quality_vs_H(synthetic_runs(), "task_correct")
    comm = next(ax for ax in fig.axes if "MB" in ax.get_ylabel())
    assert comm.yaxis_inverted()
    assert sorted(comm.get_lines()[0].get_ydata()) == [0.5, 1.0, 2.0, 4.0]


def test_pareto_front_keeps_only_undominated_points() -> None:
    runs = pd.DataFrame({"network.link": ["wifi6", "wifi6", "5g", "5g"], "ttft_s": [1.0, 2.0, 1.5, 3.0],
                         "task_correct_publisher": [0.5, 0.7, 0.4, 0.9]})
    fig = plot_pareto(runs, "task_correct")
    front = next(line for line in fig.axes[0].get_lines() if line.get_label().startswith("Pareto front"))
    assert list(front.get_xdata()) == [1.0, 2.0, 3.0]
    assert list(front.get_ydata()) == [0.5, 0.7, 0.9]


def test_plot_results_picks_plots_for_the_swept_axes_and_measured_metrics(tmp_path: Path) -> None:
    runs = synthetic_runs()
    runs = runs[(runs["participants.n"] == 4) & (runs["network.link"] == "wifi6")
                & (runs["schedule.placement"] == "uniform") & (runs["schedule.r_comp"] == 1.0)]
    folder = ResultsFolder(tmp_path)
    for row in runs.to_dict("records"):
        participants = frame_table(pd.DataFrame({"participant": [0]}), row["run_id"])
        folder.finish_run(row["run_id"], {"runs": row_table(row, {}), "participants": participants}, None)
    names = sorted(p.name for p in plot_results(tmp_path))
    # only H varies: H plot + Pareto, for task_correct only (kl_mean was never measured)
    assert names == ["pareto_task_correct.pdf", "pareto_task_correct.png",
                     "quality_vs_H_task_correct.pdf", "quality_vs_H_task_correct.png"]
    assert all((tmp_path / "plots" / n).stat().st_size > 0 for n in names)
