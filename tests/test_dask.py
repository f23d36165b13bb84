"""The Dask backend on a real local cluster: a scheduler and two worker processes on loopback (real processes,
real sockets, no mocks). Its tables are the process pool's byte for byte, with resume and caching intact."""

import os
from pathlib import Path

import distributed
import pytest
from sweep_fakes import FakeRun, scenario, table_bytes

from fedsim.common.errors import UserError
from fedsim.experiment.config import validate_scenario
from fedsim.experiment.sweep import run_sweep

SCENARIO = {
    "name": "grid", "model": {"name": "tiny-random"}, "task": {"kind": "retrieval"},
    "participants": {"n": 2}, "decoding": {"max_new_tokens": 4},
    "sweep": {"schedule.H": [1, 2], "network.link": ["wifi6", "5g"]},
}


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as local:
        yield local


def test_dask_tables_are_the_process_pools_byte_for_byte(tmp_path: Path, cluster, monkeypatch) -> None:
    sc = validate_scenario(SCENARIO)
    run_sweep(sc, out_dir=tmp_path / "pool", workers=2, backend="process", progress=False)
    started_in = Path.cwd()  # the workers' working folder
    monkeypatch.chdir(tmp_path)  # a relative --out must reach the workers as an absolute path
    first = run_sweep(sc, out_dir="dask", backend="dask", scheduler=cluster.scheduler_address, progress=False)
    assert first.attrs == {"skipped": 0, "ran": 4} and not (started_in / "dask").exists()
    pool, dask = table_bytes(tmp_path / "pool" / "grid"), table_bytes(tmp_path / "dask" / "grid")
    assert len(pool) == 3 * 4 and dask == pool
    again = run_sweep(sc, out_dir="dask", backend="dask", scheduler=cluster.scheduler_address, progress=False)
    assert again.attrs == {"skipped": 4, "ran": 0}  # resume and caching: nothing is computed twice


def test_dask_spreads_runs_over_every_worker_of_the_cluster(tmp_path: Path, cluster) -> None:
    fake = FakeRun(tmp_path / "calls.log", sleep_s=0.5)
    runs = run_sweep(scenario(), {"seed": list(range(6))}, tmp_path, backend="dask",
                     scheduler=cluster.scheduler_address, run_fn=fake, progress=False)
    assert runs.attrs == {"skipped": 0, "ran": 6}
    with distributed.Client(cluster) as client:
        worker_pids = {str(pid) for pid in client.run(os.getpid).values()}
    assert {line.rsplit("pid=", 1)[1] for line in fake.calls()} == worker_pids and len(worker_pids) == 2


def test_an_unreachable_scheduler_is_one_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("fedsim.experiment.backends._CONNECT_TIMEOUT_S", 1)
    with pytest.raises(UserError, match=r"^--scheduler: cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        run_sweep(scenario(), None, tmp_path, backend="dask", scheduler="tcp://127.0.0.1:9",
                  run_fn=FakeRun(tmp_path / "calls.log"), progress=False)
