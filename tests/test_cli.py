"""CLI: user mistakes are one `error:` line with exit 2 and no results; runs write tables and plots."""

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from fedsim.cli import main
from fedsim.common.errors import UserError
from fedsim.sim.profiles import load_devices, load_links

GOOD = "name: demo\nmodel: {name: tiny-random}\nsweep: {schedule.H: [1, 2]}\n"


@dataclass
class Records:
    participants: pd.DataFrame
    summary: dict
    trace: dict | None = None


def fake_run_scenario(scenario, setup) -> Records:
    h, n = scenario.schedule.H, scenario.participants.n
    summary = {"task_correct_publisher": 1 / h, "task_correct_best_collaborator": 0.9 / h,
               "task_correct_average": 0.8 / h, "bytes_sent_per_participant": 1e6 / h, "ttft_s": 0.1 + 0.1 / h,
               "total_flops": 1e9 * n, "peak_mem_bytes": 1e8}
    return Records(pd.DataFrame({"participant": range(n), "task_correct": [1 / h] * n}), summary)


@pytest.fixture
def fake_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand in for the real run so the CLI's default run function costs nothing (serial backend)."""
    monkeypatch.setattr("fedsim.experiment.worker._run_in_worker", fake_run_scenario)
    monkeypatch.setattr("fedsim.experiment.sweep.prepare_points", lambda points: [None] * len(points))


def scenario_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return str(path)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("text", "extra", "expected"), [
    ("schedule: {H: nope}\n", [], "schedule.H: must be an integer (got 'nope')"),
    ("schedule: {Hh: 2}\n", [], "schedule.Hh: unknown key 'Hh'; did you mean 'H'?"),
    ("participants: {device: toaster}\n", [], "participants.device: unknown device profile 'toaster'"),
    ("network: {overrides: {0: {downlink_mbps: -1}}}\n", [], "network.overrides.0.downlink_mbps: must be > 0"),
    ("schedule: {H: 0}\n", [], "schedule.H: must be >= 1 (got 0)"),
    ("schedule: [H: 2\n", [], "line 2: invalid YAML"),
    (GOOD, ["--set", "schedule.H=4,0"], "[sweep point schedule.H=0]: schedule.H: must be >= 1 (got 0)"),
    (GOOD, ["--set", "participants.nn=2"], "--set: participants.nn: unknown key 'nn'; did you mean 'n'?"),
])
def test_a_bad_scenario_is_one_error_line_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_runner: None, text: str, extra: list[str], expected: str
) -> None:
    out_dir = tmp_path / "results"
    code, out, err = run_cli(capsys, "sweep", scenario_file(tmp_path, text), "--out", str(out_dir),
                             "--no-progress", *extra)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err, err
    assert not out_dir.exists()


def test_missing_scenario_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "run", str(tmp_path / "nope.yaml"))
    assert code == 2 and err == (f"error: {tmp_path / 'nope.yaml'}: no such file or directory; "
                                 "give the path of a scenario .yaml file\n")


def test_missing_model_file_is_reported_before_any_directory_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(name: str) -> Path:
        raise UserError("model.name", f"model {name!r} not found", "run `pip install ...`")

    monkeypatch.setattr("fedsim.models.loading.locate_model_file", missing)
    path = scenario_file(tmp_path, "model: {name: qwen2.5-0.5b}\n")
    code, _, err = run_cli(capsys, "run", path, "--out", str(tmp_path / "results"))
    assert code == 2 and err == f"error: {path}: model.name: model 'qwen2.5-0.5b' not found; run `pip install ...`\n"
    assert not (tmp_path / "results").exists()


def test_sweep_writes_tables_and_plots_and_a_rerun_skips_everything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_runner: None
) -> None:
    out_dir = tmp_path / "results"
    argv = ["sweep", scenario_file(tmp_path, GOOD), "--set", "schedule.H=1,2,4", "--out", str(out_dir),
            "--backend", "serial", "--no-progress"]
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0 and "3 run(s) done, 0 already finished" in out
    assert sorted(pd.read_parquet(out_dir / "demo" / "runs.parquet")["schedule.H"]) == [1, 2, 4]
    plots = out_dir / "demo" / "plots"
    assert {p.name for p in plots.iterdir()} == {f"{stem}_task_correct.{ext}" for stem in ("quality_vs_H", "pareto")
                                                 for ext in ("png", "pdf")}
    code, out, _ = run_cli(capsys, *argv, "--no-plots")
    assert code == 0 and "0 run(s) done, 3 already finished (skipped)" in out


def test_interrupt_exits_130_with_resume_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_runner: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(scenario, setup) -> Records:
        raise KeyboardInterrupt

    monkeypatch.setattr("fedsim.experiment.worker._run_in_worker", interrupted)
    code, _, err = run_cli(capsys, "run", scenario_file(tmp_path, GOOD), "--out", str(tmp_path / "r"),
                           "--backend", "serial", "--no-progress")
    assert code == 130 and "run the same command again to resume" in err


def test_validate_counts_the_grid_without_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "validate", scenario_file(tmp_path, GOOD), "--set", "participants.n=2,4,8")
    assert code == 0 and "6 run(s)" in out
    assert not (tmp_path / "results").exists()


def test_plot_of_a_folder_without_runs_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "plot", str(tmp_path))
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1


def test_profiles_lists_every_device_and_link_with_its_source(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "profiles")
    lines = out.splitlines()
    names = {line.split()[0] for line in lines if line and not line.startswith(" ")}
    assert code == 0 and set(load_devices()) | set(load_links()) <= names
    assert sum(line.startswith("    source: http") for line in lines) == len(load_devices()) + len(load_links())
