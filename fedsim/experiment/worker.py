"""What runs on a worker: one run of a sweep into its folder, with its tables typed and DONE written last.

Every run uses THREADS_PER_RUN torch threads, whatever the backend or the number of workers: how many threads
share a matrix product changes the last bits of its sums, and results must not depend on `--workers`. One
thread per run costs a lone run the speed-up of more cores; a sweep gets it back by running one run per core.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import pyarrow as pa

from fedsim.common.errors import UserError
from fedsim.experiment.config import Scenario
from fedsim.experiment.identity import check_identity
from fedsim.experiment.results import ResultsFolder
from fedsim.experiment.tables import config_types, config_values, frame_table, row_table

THREADS_PER_RUN = 1
_ONE_RUN = threading.Lock()  # one run at a time per process, even on a Dask worker with several threads


class RunRecordsLike(Protocol):
    """What a run function returns (fedsim.experiment.records.RunRecords); an optional `layers` table is
    kept too."""

    participants: pd.DataFrame
    summary: dict[str, Any]
    trace: dict[str, Any] | None


# run_fn(scenario, setup): setup is the point's prepared RunSetup (None when a custom run_fn is given)
RunFn = Callable[[Scenario, Any], RunRecordsLike]
_CONTEXT: Any = None  # this worker's RunContext (fedsim.experiment.run), built on its first run


@dataclass(frozen=True)
class Job:
    """One pending run, as shipped to a worker: `root` is absolute and `identity` is what its key was made of."""

    run_id: str
    scenario: Scenario
    setup: Any
    root: Path
    identity: dict[str, Any]


def execute_run(job: Job, run_fn: RunFn | None) -> pa.Table:
    """One run into its folder, DONE last; returns its runs-table row. Module-level so that process pools
    and Dask can ship it."""
    folder = ResultsFolder(job.root)
    if not folder.root.is_dir():
        raise UserError("--out", f"{folder.root} does not exist on worker {socket.gethostname()}",
                        "run folders must be on a filesystem that every worker shares, at the same path")
    resolved = job.scenario.resolved()
    check_identity(job.identity, resolved, socket.gethostname())
    with _ONE_RUN:
        folder.start_run(job.run_id, resolved, job.identity)
        records = (run_fn or _run_in_worker)(job.scenario, job.setup)
        tables = run_tables(job.run_id, resolved, records)
        folder.finish_run(job.run_id, tables, records.trace)
    return tables["runs"]


def run_tables(run_id: str, resolved: Mapping[str, Any], records: RunRecordsLike) -> dict[str, pa.Table]:
    """A run's typed tables. The runs row is run_id + the config columns (the same for every run function)
    + the run's measurements; config-like keys in the run's own summary are left to the config."""
    measured = {k: v for k, v in records.summary.items()
                if k != "run_id" and k.split(".")[0] not in Scenario.model_fields}
    tables = {"runs": row_table({"run_id": run_id, **config_values(resolved), **measured}, config_types())}
    for name, frame in (("participants", records.participants), ("layers", getattr(records, "layers", None))):
        if frame is not None:
            tables[name] = frame_table(frame, run_id)  # the run key is the run's id, whatever the frame said
    return tables


def worker_context() -> Any:
    """This process's RunContext: the caches every run it executes shares (built on first use)."""
    global _CONTEXT
    if _CONTEXT is None:
        from fedsim.experiment.run import RunContext  # lazy: torch loads only where runs execute

        _CONTEXT = RunContext()
    return _CONTEXT


def _run_in_worker(scenario: Scenario, setup: Any) -> RunRecordsLike:
    import torch

    from fedsim.experiment.run import run_scenario

    before = torch.get_num_threads()
    torch.set_num_threads(THREADS_PER_RUN)
    try:
        return run_scenario(scenario, setup, worker_context())
    finally:
        torch.set_num_threads(before)
