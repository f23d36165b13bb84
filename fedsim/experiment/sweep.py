"""Sweeps: expand grid axes into scenarios and run each point once, resumably, on a sweep backend.

A run's folder is named by its key (its config plus the versions that compute it: fedsim.experiment.identity),
so a point whose run is finished is skipped without any model work and an interrupted sweep resumes where it
stopped. Each run is computed under its lock (fedsim.experiment.results), so a second sweep into the same
folder never computes a run that the first is computing: it takes the other runs and waits for those.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock
from tqdm import tqdm

from fedsim.common.errors import UserError
from fedsim.common.files import load_yaml
from fedsim.experiment.backends import check_backend, open_backend
from fedsim.experiment.config import Scenario, check_dotted_key, config_hash, with_overrides
from fedsim.experiment.identity import run_identity, run_key
from fedsim.experiment.results import ResultsFolder, RunTables, build_tables
from fedsim.experiment.worker import Job, RunFn, execute_run

_POLL_S = 0.5  # how often a sweep looks again at runs that another sweep is computing


def parse_set(arg: str) -> tuple[str, list[Any]]:
    """'schedule.H=1,2,4' -> ('schedule.H', [1, 2, 4]); values are YAML, so null, 1e-3, {p: 0.2} work."""
    key, sep, text = arg.partition("=")
    key = key.strip()
    if not sep or not key or not text.strip():
        raise UserError(arg, "expected KEY=VALUE[,VALUE...]", "e.g. --set schedule.H=1,2,4,8", "--set")
    check_dotted_key(key, "--set")
    try:
        values = load_yaml(f"[{text}]")
    except Exception:  # any YAML error: the message below says what was expected
        raise UserError(key, f"cannot parse the values {text!r}",
                        "separate YAML values with commas, e.g. 1,2,4 or null,{probability: 0.2}", "--set") from None
    return key, values


def expand_grid(scenario: Scenario, axes: Mapping[str, Sequence[Any]] | None = None) -> list[Scenario]:
    """Every point of the grid: the scenario's `sweep:` axes, overridden/extended by `axes`.

    Cartesian product with the first axis varying slowest; every point is validated (before anything
    runs) and has an empty `sweep`; duplicate points are dropped.
    """
    base = with_overrides(scenario, {"sweep": {**scenario.sweep, **{k: list(v) for k, v in (axes or {}).items()}}})
    keys = list(base.sweep)
    points: dict[str, Scenario] = {}
    for combo in itertools.product(*base.sweep.values()):
        setting = dict(zip(keys, combo, strict=True))
        label = f"{scenario.source} [sweep point {', '.join(f'{k}={v}' for k, v in setting.items())}]"
        point = with_overrides(base, {"sweep": {}, **setting}, source=label)
        points.setdefault(config_hash(point.resolved()), point)
    return list(points.values())


def results_root(scenario: Scenario, out_dir: str | Path | None = None) -> Path:
    """`<out_dir or scenario.output_dir>/<scenario name>`: where a scenario's runs and tables live."""
    return Path(scenario.output_dir if out_dir is None else out_dir) / scenario.name


def run_sweep(
    scenario: Scenario,
    axes: Mapping[str, Sequence[Any]] | None = None,
    out_dir: str | Path | None = None,
    workers: int | None = None,
    backend: str = "process",
    run_fn: RunFn | None = None,
    progress: bool = True,
    scheduler: str | None = None,
) -> pd.DataFrame:
    """Run every grid point that has not finished yet; returns the runs table of this grid.

    Everything is validated before the first folder is created. Finished points are skipped (counted in
    `.attrs["skipped"]`, the runs computed now in `.attrs["ran"]`). Each finished run adds its rows to the
    folder's tables, so an interrupt loses only unfinished runs. `run_fn(scenario, setup)` defaults to
    fedsim.experiment.run.run_scenario; `backend` and `scheduler` are described in fedsim.experiment.backends.
    """
    points = expand_grid(scenario, axes)
    check_backend(backend, scheduler)
    setups = prepare_points(points) if run_fn is None else [None] * len(points)
    folder = ResultsFolder(results_root(scenario, out_dir))
    identities = [run_identity(p.resolved()) for p in points]
    ids = [run_key(p.resolved(), identity) for p, identity in zip(points, identities, strict=True)]
    folder.tidy()
    found = folder.read_runs([i for i in ids if folder.is_finished(i)], ("runs",))
    jobs = [Job(i, p, setup, folder.root, identity)
            for i, p, setup, identity in zip(ids, points, setups, identities, strict=True) if i not in found]
    skipped, ran = len(found), 0
    if jobs:
        held: dict[str, FileLock] = {}  # released only once the backend has stopped every run it started
        bar = tqdm(total=len(jobs), desc=f"{scenario.name} ({skipped} already done)", unit="run",
                   disable=not progress)
        try:
            with open_backend(backend, workers, scheduler) as (executor, slots), bar:
                for run_id, tables, computed in _dispatch(folder, executor, slots, jobs, run_fn, held):
                    found[run_id] = tables
                    ran, skipped = ran + computed, skipped + (not computed)
                    bar.update()
        finally:
            for lock in held.values():
                lock.release()
    runs, _ = build_tables({i: found[i] for i in ids})
    runs.attrs.update(skipped=skipped, ran=ran)
    return runs


def _dispatch(folder: ResultsFolder, executor: Executor, slots: int, jobs: list[Job], run_fn: RunFn | None,
              held: dict[str, FileLock]) -> Iterator[tuple[str, RunTables, bool]]:
    """Submit at most `slots` runs at a time, each under its lock; yield (run_id, tables, computed here).

    A run whose lock another sweep holds goes back to the end of the queue; once that sweep has finished it,
    it is read instead of computed (or computed here, if that sweep died first)."""
    todo, running, told = deque(jobs), {}, False
    while todo or running:
        for _ in range(len(todo)):
            if len(running) >= slots:
                break
            job = todo.popleft()
            if (lock := folder.try_lock(job.run_id)) is None:
                todo.append(job)
                continue
            if folder.is_finished(job.run_id) and (done := folder.read_runs([job.run_id], ("runs",), locked=True)):
                lock.release()
                yield job.run_id, done[job.run_id], False
                continue
            held[job.run_id] = lock
            running[executor.submit(execute_run, job, run_fn)] = job.run_id
        if todo and not told and len(running) < slots:
            tqdm.write(f"waiting for {len(todo)} run(s) that another sweep into {folder.root} is computing",
                       file=sys.stderr)
            told = True
        if not running:
            time.sleep(_POLL_S)
            continue
        finished, _ = wait(running, timeout=_POLL_S if todo else None, return_when=FIRST_COMPLETED)
        for future in finished:
            run_id = running.pop(future)
            row = future.result()  # a run's error stops the sweep; finished runs stay finished
            held.pop(run_id).release()
            if not folder.is_finished(run_id):
                raise UserError("--backend", f"run {run_id} finished on a worker but {folder.run_dir(run_id)} has "
                                "no DONE here", "run folders must be on a filesystem that every worker shares, at "
                                "the same path")
            yield run_id, {"runs": row}, True


def prepare_points(points: Sequence[Scenario]) -> list[Any]:
    """Every point's RunSetup, before any results directory exists: what only the model can tell (missing
    model files, schedule, partition and responder errors) is one line naming the grid point."""
    from fedsim.experiment.setup import prepare  # lazy: validating a scenario file needs no torch

    setups = []
    for point in points:
        try:
            setups.append(prepare(point))
        except UserError as err:
            raise err.at(point.source) from None
    return setups
