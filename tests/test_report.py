"""The report page: one self-contained HTML file per results folder, written by `run` by default, that a real
headless Chromium renders with its plots and its table (skipped where Chromium is not installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from fedsim.cli import main
from fedsim.experiment.report import REPORT, write_report

SCENARIO = "name: demo\nmodel: {name: tiny-random}\nengine: {trace: true}\nsweep: {schedule.H: [1, 2, 4]}\n"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Records:
    """A run's records as the sweep reads them, with made-up but distinct numbers per H."""

    def __init__(self, h: int, n: int) -> None:
        self.summary = {"kl_mean_publisher": 0.1 * h, "kl_mean_best_collaborator": 0.2 * h,
                        "kl_mean_average": 0.3 * h, "ttft_s": 0.1 + 0.1 / h, "bytes_sent_per_participant": 1e6 / h,
                        "total_flops": 1e9 * n, "peak_mem_bytes": 1e8, "energy_j_per_participant": 1.0 + 1.0 / h,
                        "energy_j_total": n * (1.0 + 1.0 / h)}
        self.participants = pd.DataFrame({"participant": range(n), "kl_mean": [0.1 * h] * n})
        self.trace = {"traceEvents": [], "displayTimeUnit": "ms"}


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    """`fedsim run` of a 3-point sweep with a stand-in run function: tables, plots and the report."""
    monkeypatch.setattr("fedsim.experiment.worker._run_in_worker",
                        lambda sc, setup: Records(sc.schedule.H, sc.participants.n))
    monkeypatch.setattr("fedsim.experiment.sweep.prepare_points", lambda points: [None] * len(points))
    scenario = tmp_path / "demo.yaml"
    scenario.write_text(SCENARIO)
    assert main(["run", str(scenario), "--out", str(tmp_path / "results"), "--backend", "serial",
                 "--no-progress"]) == 0
    assert "report: " in capsys.readouterr().out
    return tmp_path / "results" / "demo"


def test_run_writes_a_self_contained_report_with_table_plots_and_trace_links(results: Path) -> None:
    page = (results / REPORT).read_text(encoding="utf-8")
    pngs = sorted((results / "plots").glob("*.png"))
    assert len(pngs) >= 3  # quality vs H, latency vs quality, energy vs quality
    assert any(p.stem.startswith("energy_vs_kl_mean") for p in pngs)
    assert page.count('src="data:image/png;base64,') == len(pngs)
    urls = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert not [u for u in urls if re.match(r"[a-z]+://", u)]  # nothing loads from the network
    assert "<script" not in page
    runs = pd.read_parquet(results / "runs.parquet")
    for run_id in runs.run_id:
        assert f'href="runs/{run_id}/trace.json"' in page and (results / "runs" / run_id / "trace.json").is_file()
    assert page.count("<tr><td><a href=\"runs/") == len(runs)
    assert "KL divergence from centralized" in page and "energy / participant (J)" in page
    assert "swept: 1, 2, 4" in page


def test_report_command_rewrites_it_and_a_missing_folder_is_one_error_line(
        results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (results / REPORT).unlink()
    assert main(["report", str(results)]) == 0
    assert (results / REPORT).is_file()
    assert main(["report", str(results / "nope")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_run_no_report_skips_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fedsim.experiment.worker._run_in_worker", lambda sc, setup: Records(sc.schedule.H, 2))
    monkeypatch.setattr("fedsim.experiment.sweep.prepare_points", lambda points: [None] * len(points))
    (tmp_path / "s.yaml").write_text(SCENARIO)
    assert main(["run", str(tmp_path / "s.yaml"), "--out", str(tmp_path), "--backend", "serial", "--no-progress",
                 "--no-plots", "--no-report"]) == 0
    assert not (tmp_path / "demo" / REPORT).exists()
    page = write_report(tmp_path / "demo").read_text()
    assert "No plots" in page and "<img" not in page


# Runs inside the copy of the page Chromium loads: what the browser actually laid out and decoded.
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.querySelectorAll("img.plot")];
  const table = document.querySelector("table.runs");
  const result = {
    images: imgs.length,
    decoded: imgs.filter(i => i.complete && i.naturalWidth > 100 && i.naturalHeight > 100).length,
    shown: imgs.filter(i => i.getBoundingClientRect().width > 100 && i.getBoundingClientRect().height > 50).length,
    rows: table ? table.tBodies[0].rows.length : -1,
    table_height: table ? table.getBoundingClientRect().height : 0,
    header: table ? table.tHead.innerText : "",
  };
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>"""


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120, check=True)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (apt-get install chromium; .ci/run does)")
def test_headless_chromium_renders_the_plots_and_the_table(results: Path, tmp_path: Path) -> None:
    page = (results / REPORT).read_text(encoding="utf-8")
    probe = results / "probe.html"  # next to the report, so its relative links resolve the same way
    probe.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = chromium("--virtual-time-budget=10000", "--dump-dom", probe.as_uri(), profile=tmp_path / "profile").stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    seen = json.loads(found.group(1).replace("&quot;", '"'))
    n_plots = len(list((results / "plots").glob("*.png")))
    assert seen["images"] == seen["decoded"] == seen["shown"] == n_plots >= 3
    assert seen["rows"] == 3 and seen["table_height"] > 50
    assert "KL divergence from centralized" in seen["header"]
    shot = tmp_path / "page.png"  # and the page itself, as a screen would show it
    chromium("--window-size=1280,2000", f"--screenshot={shot}", (results / REPORT).as_uri(),
             profile=tmp_path / "profile2")
    assert shot.stat().st_size > 20_000
