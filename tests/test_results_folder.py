"""A results folder under faults and company: unreadable runs are set aside and computed again, two sweeps
into one folder compute every run once, and kill -9 in the middle of a sweep loses, redoes and corrupts nothing.
The sweeps run in real processes (tests/sweep_fakes.py) with a fake run that logs every call."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from sweep_fakes import FakeRun, scenario, subprocess_env, table_bytes

from fedsim.experiment.plots import plot_results
from fedsim.experiment.results import read_results
from fedsim.experiment.sweep import run_sweep

FAKES = Path(__file__).parent / "sweep_fakes.py"


def seeds(n: int) -> dict:
    return {"seed": list(range(n))}


def logged_seeds(log: Path) -> list[int]:
    return [int(line.split("seed=")[1].split(",")[0]) for line in log.read_text().split()] if log.exists() else []


def clean_tables(tmp_path: Path, n: int) -> dict[str, bytes]:
    run_sweep(scenario(), seeds(n), tmp_path / "clean", backend="serial", run_fn=FakeRun(tmp_path / "clean.log"),
              progress=False)
    return table_bytes(tmp_path / "clean" / "demo")


def test_a_poisoned_folder_heals(tmp_path: Path, capsys) -> None:
    log = tmp_path / "calls.log"
    runs = run_sweep(scenario(), seeds(5), tmp_path, backend="serial", run_fn=FakeRun(log), progress=False)
    root, ids = tmp_path / "demo", list(runs.run_id)
    (root / "participants.parquet" / f"{ids[0]}.parquet").write_bytes(b"not parquet")
    truncated = root / "runs.parquet" / f"{ids[1]}.parquet"
    truncated.write_bytes(truncated.read_bytes()[:60])
    (root / "runs" / ids[2] / "DONE").write_text("")  # an older fedsim's marker: it lists no tables
    pq.write_table(pa.table({"run_id": ["another-run"], "x": [1]}), root / "runs.parquet" / f"{ids[3]}.parquet")
    capsys.readouterr()

    plot_results(root)  # plots (and every reader) skip what cannot be read instead of crashing
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: ") and "4 unreadable run(s) moved to runs/.broken/" in err[0]
    assert sorted(p.name for p in (root / "runs" / ".broken").iterdir()) == sorted(ids[:4])
    assert (root / "runs" / ".broken" / ids[0] / "WHY").read_text().startswith("participants: ")
    assert list(read_results(root)[0].run_id) == [ids[4]]

    healed = run_sweep(scenario(), seeds(5), tmp_path, backend="serial", run_fn=FakeRun(log), progress=False)
    assert healed.attrs == {"skipped": 1, "ran": 4} and sorted(logged_seeds(log)) == [0, 0, 1, 1, 2, 2, 3, 3, 4]
    assert table_bytes(root) == clean_tables(tmp_path, 5)


def test_a_table_file_of_an_unfinished_run_is_tidied_by_the_next_sweep(tmp_path: Path) -> None:
    runs = run_sweep(scenario(), seeds(2), tmp_path, backend="serial", run_fn=FakeRun(tmp_path / "log"),
                     progress=False)
    root = tmp_path / "demo"
    (root / "runs" / runs.run_id[0] / "DONE").unlink()  # as if killed between its tables and DONE
    (root / "runs.parquet" / ".abc.parquet.x1y2.tmp").write_bytes(b"half a file")  # killed mid-write
    run_sweep(scenario(), {"seed": [1]}, tmp_path, backend="serial", run_fn=FakeRun(tmp_path / "log"),
              progress=False)
    assert sorted(p.name for p in (root / "runs.parquet").iterdir()) == [f"{runs.run_id[1]}.parquet"]


def start_sweep(tmp_path: Path, log: Path, sleep_s: float, n: int, backend: str, workers: int,
                *go: Path) -> subprocess.Popen:
    argv = [sys.executable, str(FAKES), str(tmp_path), str(log), str(sleep_s), str(n), backend, str(workers)]
    return subprocess.Popen(argv + [str(g) for g in go], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=subprocess_env(), start_new_session=True)


def wait_for(condition, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_two_concurrent_sweeps_into_one_folder_compute_every_run_once(tmp_path: Path) -> None:
    log, go, n = tmp_path / "calls.log", tmp_path / "go", 8
    sweeps = [start_sweep(tmp_path, log, 0.3, n, "serial", 1, go) for _ in range(2)]
    wait_for(lambda: len(list(tmp_path.glob("go.*.ready"))) == 2)
    go.touch()  # both start now
    outputs = [s.communicate(timeout=300) for s in sweeps]
    assert [s.returncode for s in sweeps] == [0, 0], outputs
    counts = [tuple(map(int, out.split())) for out, _ in outputs]
    assert [c[0] for c in counts] == [n, n]  # each sweep's table holds every run
    assert sum(c[1] for c in counts) == n and all(c[1] >= 1 for c in counts)  # they shared the work
    assert sorted(logged_seeds(log)) == list(range(n))  # ... and computed each run once
    runs, participants = read_results(tmp_path / "demo")
    assert len(runs) == n and len(participants) == 4 * n
    assert table_bytes(tmp_path / "demo") == clean_tables(tmp_path, n)


def test_kill_9_in_the_middle_of_a_sweep_then_resume_redoes_loses_and_corrupts_nothing(tmp_path: Path) -> None:
    log, n, root = tmp_path / "calls.log", 12, tmp_path / "demo"
    sweep = start_sweep(tmp_path, log, 0.4, n, "process", 2)
    wait_for(lambda: len(list(root.glob("runs/*/DONE"))) >= 3)
    os.killpg(sweep.pid, signal.SIGKILL)  # the sweep and its pool workers, mid-run
    sweep.wait()
    finished = {p.parent.name for p in root.glob("runs/*/DONE")}
    assert 3 <= len(finished) < n

    resumed = FakeRun(tmp_path / "resume.log")
    runs = run_sweep(scenario(), seeds(n), tmp_path, backend="serial", run_fn=resumed, progress=False)
    seed_of = dict(zip(runs.run_id, runs.seed, strict=True))
    assert runs.attrs == {"skipped": len(finished), "ran": n - len(finished)}
    assert not {seed_of[r] for r in finished} & set(logged_seeds(tmp_path / "resume.log"))  # nothing redone
    assert sorted(runs.seed) == list(range(n))  # nothing lost
    assert table_bytes(root) == clean_tables(tmp_path, n)  # nothing corrupt
    for table in ("runs", "participants"):  # no half-written or orphan file left behind
        assert sorted(os.listdir(root / f"{table}.parquet")) == sorted(f"{r}.parquet" for r in runs.run_id)


def test_a_folder_of_the_older_layout_is_set_aside_and_computed_again(tmp_path: Path, capsys) -> None:
    root = tmp_path / "demo"
    (root / "runs" / "0123456789ab").mkdir(parents=True)
    (root / "runs" / "0123456789ab" / "DONE").write_bytes(b"")  # fedsim 0.1: an empty marker, tables beside it
    pq.write_table(pa.table({"run_id": ["0123456789ab"]}), root / "runs.parquet")  # and one whole-table file
    runs = run_sweep(scenario(), seeds(2), tmp_path, backend="serial", run_fn=FakeRun(tmp_path / "log"),
                     progress=False)
    assert runs.attrs == {"skipped": 0, "ran": 2}
    assert len(read_results(root)[0]) == 2  # the reader sets the old run aside (the sweep left it alone)
    assert sorted(p.name for p in (root / "runs" / ".broken").iterdir()) == ["0123456789ab", "runs.parquet"]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("warning: ") for line in err)
