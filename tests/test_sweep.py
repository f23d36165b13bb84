"""Sweeps: grid expansion, one folder per run, tables that grow by a file per run, skip finished runs, resume,
identical tables however they ran, run keys that follow the versions."""

import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sweep_fakes import AXES, FakeRun, calls_without_pid, scenario, table_bytes

from fedsim.common.errors import UserError
from fedsim.experiment import identity
from fedsim.experiment.results import read_results
from fedsim.experiment.sweep import expand_grid, parse_set, run_sweep
from fedsim.experiment.worker import Job, execute_run


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


def test_sweep_writes_run_folders_and_a_table_file_per_run(tmp_path: Path) -> None:
    fake = FakeRun(tmp_path / "calls.log")
    runs = run_sweep(scenario(engine={"trace": True}), AXES, tmp_path, backend="serial", run_fn=fake,
                     progress=False)
    root = tmp_path / "demo"
    assert len(runs) == 4 and runs.attrs == {"skipped": 0, "ran": 4}
    assert list(runs[["participants.n", "schedule.H"]].itertuples(index=False, name=None)) == [
        (2, 1), (2, 2), (3, 1), (3, 2)]
    for run_id in runs.run_id:
        assert {p.name for p in (root / "runs" / run_id).iterdir()} == {"config.json", "versions.json", "trace.json",
                                                                         "DONE"}
    for table in ("runs", "participants"):
        assert sorted(p.stem for p in (root / f"{table}.parquet").iterdir()) == sorted(runs.run_id)
    # the README's way to read a table: the folder is one dataset
    on_disk = pd.read_parquet(root / "runs.parquet").sort_values(["participants.n", "schedule.H"])
    lists = ["schedule.layers", "profiles"]  # list columns: compared below as lists
    assert on_disk.reset_index(drop=True).drop(columns=lists).equals(runs.drop(columns=lists))
    participants = pd.read_parquet(root / "participants.parquet")
    assert len(participants) == 2 + 2 + 3 + 3 and set(participants.run_id) == set(runs.run_id)
    assert {"run_id", "schedule.H", "participants.n", "task_correct_publisher", "ttft_s"} <= set(runs.columns)
    from_dirs, participants_from_dirs = read_results(root)
    assert from_dirs.equals(runs) and len(participants_from_dirs) == len(participants)


def test_tables_are_typed_so_scenarios_combine_without_casts(tmp_path: Path) -> None:
    """Different task kinds, a dropout section and explicit sync layers: the same config columns, the same
    types, no null-typed column, lists as list columns."""
    run_sweep(scenario(), {"schedule.H": [1, 2]}, tmp_path / "a", backend="serial",
              run_fn=FakeRun(tmp_path / "a.log"), progress=False)
    other = scenario(name="other", task={"kind": "retrieval"}, faults={"dropout": {"probability": 0.5}},
                     schedule={"layers": [1, 3]}, participants={"overrides": {0: {"device": "raspberry-pi-5"}}})
    run_sweep(other, None, tmp_path / "b", backend="serial", run_fn=FakeRun(tmp_path / "b.log"), progress=False)
    for table in ("runs", "participants"):
        files = sorted(tmp_path.glob(f"*/*/{table}.parquet/*.parquet"))
        schemas = [pq.read_schema(f) for f in files]
        assert len(files) == 3 and all(s.equals(schemas[0]) for s in schemas), table
        assert not any(pa.types.is_null(field.type) for field in schemas[0])
        combined = pa.concat_tables([pq.read_table(f) for f in files])  # no promotion, no cast
        assert combined.num_rows == (3 if table == "runs" else 4 + 4 + 4)
    runs = pq.read_table(sorted(tmp_path.glob("b/other/runs.parquet/*.parquet"))[0]).to_pylist()[0]
    assert runs["schedule.layers"] == [1, 3] and runs["faults.dropout.probability"] == 0.5
    assert runs["task.kind"] == "retrieval" and runs["task.shots"] is None and runs["kl_mean_publisher"] is None
    assert runs["participants.overrides"] == '{"0": {"device": "raspberry-pi-5"}}'
    schema = pq.read_schema(sorted(tmp_path.glob("a/demo/participants.parquet/*.parquet"))[0])
    assert schema.field("exposed_layers").type == pa.list_(pa.int64())


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
    assert calls_without_pid(crashing) == ["H=1,n=4,seed=0", "H=2,n=4,seed=0"]
    assert len(pd.read_parquet(tmp_path / "demo" / "runs.parquet")) == 2  # the tables hold the finished runs
    resumed = FakeRun(tmp_path / "calls.log")
    runs = run_sweep(scenario(), axes, tmp_path, backend="serial", run_fn=resumed, progress=False)
    assert calls_without_pid(resumed)[2:] == ["H=4,n=4,seed=0"]
    assert runs.attrs == {"skipped": 2, "ran": 1} and list(runs["schedule.H"]) == [1, 2, 4]


def test_a_run_folder_without_done_is_not_a_finished_run(tmp_path: Path) -> None:
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
    a, b = table_bytes(tmp_path / "a" / "demo"), table_bytes(tmp_path / "b" / "demo")
    assert len(a) == 4 + 4 and a == b


@pytest.fixture
def fresh_versions():
    identity._versions.cache_clear()
    yield
    identity._versions.cache_clear()


def test_run_keys_follow_the_versions_that_compute_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_versions: None
) -> None:
    fake = FakeRun(tmp_path / "calls.log")
    first = run_sweep(scenario(), {"schedule.H": [1, 2]}, tmp_path, backend="serial", run_fn=fake, progress=False)
    real = identity.importlib.metadata.version
    monkeypatch.setattr(identity.importlib.metadata, "version", lambda name: "0.0.1" if name == "torch" else real(name))
    identity._versions.cache_clear()
    upgraded = run_sweep(scenario(), {"schedule.H": [1, 2]}, tmp_path, backend="serial", run_fn=fake, progress=False)
    assert upgraded.attrs == {"skipped": 0, "ran": 2} and not set(upgraded.run_id) & set(first.run_id)
    versions = (tmp_path / "demo" / "runs" / upgraded.run_id[0] / "versions.json").read_text()
    assert '"torch": "0.0.1"' in versions and '"fedsim"' in versions and '"numpy"' in versions


def test_a_worker_with_other_versions_refuses_the_run(tmp_path: Path, fresh_versions: None) -> None:
    sc = scenario()
    job = Job("abc", sc, None, tmp_path, {**identity.run_identity(sc.resolved()), "numpy": "0.0.1"})
    with pytest.raises(UserError, match=r"differs from the sweep: numpy \S+ here, 0.0.1 in the sweep; install the"):
        execute_run(job, FakeRun(tmp_path / "calls.log"))
    assert not (tmp_path / "calls.log").exists() and not (tmp_path / "runs").exists()


def test_backend_mistakes_are_one_clear_error_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRun(tmp_path / "calls.log")
    with pytest.raises(UserError, match=r"^--scheduler: backend 'process' takes no scheduler address; add --backend"):
        run_sweep(scenario(), AXES, tmp_path, backend="process", run_fn=fake, scheduler="tcp://127.0.0.1:1")
    with pytest.raises(UserError, match=r"^--backend: unknown backend 'ray'; choose one of process, dask, serial"):
        run_sweep(scenario(), AXES, tmp_path, backend="ray", run_fn=fake)
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` fails, installed or not
    with pytest.raises(UserError, match=r"pip install 'fedsim\[dask\]'"):
        run_sweep(scenario(), AXES, tmp_path, backend="dask", run_fn=fake)
    assert not (tmp_path / "demo").exists() and not fake.calls()
