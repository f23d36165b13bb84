"""Sweeps: grid expansion, one directory per run, skip finished runs, resume, identical tables."""

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from fedsim.common.errors import UserError
from fedsim.experiment.config import validate_scenario
from fedsim.experiment.results import parquet_available, read_results, read_table
from fedsim.experiment.sweep import expand_grid, parse_set, run_sweep

AXES = {"schedule.H": [1, 2], "participants.n": [2, 3]}


@dataclass
class Records:
    participants: pd.DataFrame
    summary: dict
    trace: dict | None = None


@dataclass
class FakeRun:
    """A deterministic run function that logs each call to a file (works across worker processes)."""

    log: Path
    fail_on_call: int | None = None
    error: type[BaseException] = RuntimeError

    def calls(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []

    def __call__(self, scenario, setup) -> Records:
        if len(self.calls()) + 1 == self.fail_on_call:
            raise self.error("boom")
        with self.log.open("a") as f:
            f.write(f"H={scenario.schedule.H},n={scenario.participants.n}\n")
        n, h = scenario.participants.n, scenario.schedule.H
        participants = pd.DataFrame({
            "participant": range(n), "role": ["collaborator"] * (n - 1) + ["publisher"],
            "bytes_sent": [1e6 / h] * n, "task_correct": [1.0 / h] * n,
        })
        summary = {"task_correct_publisher": 1.0 / h, "task_correct_best_collaborator": 0.9 / h,
                   "task_correct_average": 0.8 / h, "bytes_sent_per_participant": 1e6 / h,
                   "ttft_s": 0.1 * n + 0.01 * h, "total_flops": 1e9 * n, "peak_mem_bytes": 1e8,
                   "kl_mean_publisher": math.nan}  # not measured: NaN, stored as null
        return Records(participants, summary, {"events": [[0.0, "start"]]} if scenario.engine.trace else None)


def scenario(**extra):
    return validate_scenario({"name": "demo", "model": {"name": "tiny-random"}, **extra}, source="demo.yaml")


def test_parse_set_reads_yaml_values() -> None:
    assert parse_set("schedule.H=1,2,4,8") == ("schedule.H", [1, 2, 4, 8])
    assert parse_set("faults.dropout=null,{probability: 0.2}") == ("faults.dropout", [None, {"probability": 0.2}])
    with pytest.raises(UserError, match="^--set: schedule.H: expected KEY=VALUE"):
        parse_set("schedule.H")
    with pytest.raises(UserError, match="^--set: schedule.Hx: unknown key 'Hx'; did you mean 'H'"):
        parse_set("schedule.Hx=1")


def test_grid_is_the_cartesian_product_first_axis_slowest_cli_axes_override_yaml() -> None:
    s = scenario(sweep={"schedule.H": [1, 2], "network.link": ["wifi6", "5g"]})
    points = expand_grid(s, {"network.link": ["lte"], "participants.n": [2, 3]})
    assert [(p.schedule.H, p.network.link, p.participants.n) for p in points] == [
        (1, "lte", 2), (1, "lte", 3), (2, "lte", 2), (2, "lte", 3)]
    assert all(p.sweep == {} for p in points)
    assert [p.schedule.H for p in expand_grid(scenario(), {"schedule.H": [4, 4, 2]})] == [4, 2]  # no duplicates
    assert len(expand_grid(scenario())) == 1


def test_an_invalid_grid_point_names_the_point() -> None:
    with pytest.raises(UserError, match=r"^demo.yaml \[sweep point schedule.H=0\]: schedule.H: must be >= 1"):
        expand_grid(scenario(), {"schedule.H": [2, 0]})


def test_sweep_writes_run_directories_and_whole_tables(tmp_path: Path) -> None:
    fake = FakeRun(tmp_path / "calls.log")
    runs = run_sweep(scenario(engine={"trace": True}), AXES, tmp_path, backend="serial", run_fn=fake,
                     progress=False)
    root = tmp_path / "demo"
    assert len(runs) == 4 and runs.attrs == {"skipped": 0, "ran": 4}
    assert list(runs[["participants.n", "schedule.H"]].itertuples(index=False, name=None)) == [
        (2, 1), (2, 2), (3, 1), (3, 2)]
    for run_id in runs.run_id:
        files = {p.name for p in (root / "runs" / run_id).iterdir()}
        assert files == {"config.json", "versions.json", "participants.parquet", "summary.json", "trace.json", "DONE"}
    assert pd.read_parquet(root / "runs.parquet").equals(runs)
    participants = pd.read_parquet(root / "participants.parquet")
    assert len(participants) == 2 + 2 + 3 + 3 and set(participants.run_id) == set(runs.run_id)
    assert {"run_id", "schedule.H", "participants.n", "task_correct_publisher", "ttft_s"} <= set(runs.columns)
    from_dirs, participants_from_dirs = read_results(root)
    assert from_dirs.equals(runs) and participants_from_dirs.equals(participants)


def test_rerunning_a_finished_sweep_does_no_model_work(tmp_path: Path) -> None:
    fake = FakeRun(tmp_path / "calls.log")
    run_sweep(scenario(), AXES, tmp_path, backend="serial", run_fn=fake, progress=False)
    again = run_sweep(scenario(), AXES, tmp_path, backend="serial", run_fn=fake, progress=False)
    assert len(fake.calls()) == 4
    assert again.attrs == {"skipped": 4, "ran": 0} and len(again) == 4


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_interrupted_sweep_keeps_finished_runs_and_resumes_with_the_rest(tmp_path: Path, error) -> None:
    axes = {"schedule.H": [1, 2, 4]}
    crashing = FakeRun(tmp_path / "calls.log", fail_on_call=3, error=error)
    with pytest.raises(error):
        run_sweep(scenario(), axes, tmp_path, backend="serial", run_fn=crashing, progress=False)
    assert crashing.calls() == ["H=1,n=4", "H=2,n=4"]
    assert len(pd.read_parquet(tmp_path / "demo" / "runs.parquet")) == 2  # tables cover the finished runs
    resumed = FakeRun(tmp_path / "calls.log")
    runs = run_sweep(scenario(), axes, tmp_path, backend="serial", run_fn=resumed, progress=False)
    assert resumed.calls()[2:] == ["H=4,n=4"]
    assert runs.attrs == {"skipped": 2, "ran": 1} and list(runs["schedule.H"]) == [1, 2, 4]


def test_a_run_directory_without_done_is_not_a_finished_run(tmp_path: Path) -> None:
    fake = FakeRun(tmp_path / "calls.log")
    runs = run_sweep(scenario(), {"schedule.H": [1, 2]}, tmp_path, backend="serial", run_fn=fake, progress=False)
    (tmp_path / "demo" / "runs" / runs.run_id[0] / "DONE").unlink()
    assert len(read_results(tmp_path / "demo")[0]) == 1
    rerun = run_sweep(scenario(), {"schedule.H": [1, 2]}, tmp_path, backend="serial", run_fn=fake, progress=False)
    assert rerun.attrs == {"skipped": 1, "ran": 1}


def test_identical_sweeps_give_byte_identical_tables_however_they_ran(tmp_path: Path) -> None:
    """One sweep in-process; the same sweep in a process pool, crashed after one run and resumed."""
    run_sweep(scenario(), AXES, tmp_path / "a", backend="serial", run_fn=FakeRun(tmp_path / "a.log"), progress=False)
    with pytest.raises(RuntimeError):
        run_sweep(scenario(), AXES, tmp_path / "b", backend="serial",
                  run_fn=FakeRun(tmp_path / "b.log", fail_on_call=2), progress=False)
    run_sweep(scenario(), AXES, tmp_path / "b", workers=2, backend="process", run_fn=FakeRun(tmp_path / "b.log"),
              progress=False)
    assert len((tmp_path / "b.log").read_text().split()) == 4  # 1 before the crash + 3 in the pool
    for table in ("runs.parquet", "participants.parquet"):
        assert (tmp_path / "a" / "demo" / table).read_bytes() == (tmp_path / "b" / "demo" / table).read_bytes()


def test_tables_fall_back_to_csv_without_pyarrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fedsim.experiment.results.parquet_available", lambda: False)
    run_sweep(scenario(), {"schedule.H": [1, 2]}, tmp_path, backend="serial",
              run_fn=FakeRun(tmp_path / "calls.log"), progress=False)
    assert (tmp_path / "demo" / "runs.csv").is_file() and not (tmp_path / "demo" / "runs.parquet").exists()
    assert list(read_table(tmp_path / "demo" / "runs")["schedule.H"]) == [1, 2]
    assert parquet_available()  # the monkeypatch is local to this test


def test_missing_ray_is_one_clear_error_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails, whether or not Ray is installed
    with pytest.raises(UserError, match=r"pip install 'fedsim\[ray\]'"):
        run_sweep(scenario(), AXES, tmp_path, backend="ray", run_fn=FakeRun(tmp_path / "calls.log"))
    assert not (tmp_path / "demo").exists()
