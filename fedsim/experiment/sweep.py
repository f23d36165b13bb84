"""Sweeps: expand grid axes into scenarios and run each point once, resumably.

A run's directory is named by the hash of its resolved config, so a point that already has a DONE marker
is skipped without any model work, and an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
from tqdm import tqdm

from fedsim.common.errors import UserError
from fedsim.common.files import load_yaml
from fedsim.experiment.config import NOT_IN_HASH, Scenario, check_dotted_key, config_hash, with_overrides
from fedsim.experiment.destination import make_destination
from fedsim.experiment.results import (
    FinishedRun,
    build_tables,
    load_finished_runs,
    read_run,
    run_dir,
    start_run,
    write_aggregates,
    write_run,
)

BACKENDS = ("process", "ray", "serial")


class RunRecordsLike(Protocol):
    """What a run function returns (fedsim.experiment.records.RunRecords); an optional `layers` table is
    kept too."""

    participants: pd.DataFrame
    summary: dict[str, Any]
    trace: dict[str, Any] | None


# run_fn(scenario, setup): setup is the point's prepared RunSetup (None when a custom run_fn is given)
RunFn = Callable[[Scenario, Any], RunRecordsLike]
# (run_id, scenario, prepared setup or None, run directory) for one pending run
Job = tuple[str, Scenario, Any, Path]
_CONTEXT: Any = None  # this worker's RunContext (fedsim.experiment.run), built on its first run


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


def flatten_config(resolved: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Resolved config as dotted columns ('schedule.H': 4) for the runs table."""
    flat: dict[str, Any] = {}
    for key, value in resolved.items():
        if not prefix and key in NOT_IN_HASH:
            continue
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def run_sweep(
    scenario: Scenario,
    axes: Mapping[str, Sequence[Any]] | None = None,
    out_dir: str | Path | None = None,
    workers: int | None = None,
    backend: str = "process",
    run_fn: RunFn | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run every grid point that has not finished yet; returns the runs table of this grid.

    Everything is validated before the first directory is created. Finished points are skipped (counted in
    `.attrs["skipped"]`, the runs done now in `.attrs["ran"]`). After each finished run the scenario's
    `runs.parquet` / `participants.parquet` are rewritten, so an interrupt loses only unfinished runs.
    `run_fn(scenario, setup)` defaults to fedsim.experiment.run.run_scenario.
    """
    points = expand_grid(scenario, axes)
    if backend not in BACKENDS:
        raise UserError("--backend", f"unknown backend {backend!r}", f"choose one of {', '.join(BACKENDS)}")
    if backend == "ray":
        _import_ray()
    setups = prepare_points(points) if run_fn is None else [None] * len(points)
    root = results_root(scenario, out_dir)
    make_destination(root, "output_dir" if out_dir is None else "--out")
    ids = [config_hash(p.resolved()) for p in points]
    finished = load_finished_runs(root)
    todo = [(i, p, setup, run_dir(root, i)) for i, p, setup in zip(ids, points, setups, strict=True)
            if i not in finished]
    skipped = len(points) - len(todo)
    if todo:
        executors = {"serial": _run_serial, "process": _run_pool, "ray": _run_ray}
        workers = workers or min(2, os.cpu_count() or 1)
        bar = tqdm(total=len(todo), desc=f"{scenario.name} ({skipped} already done)", unit="run",
                   disable=not progress)
        try:
            with bar:
                for run_id, run in executors[backend](todo, workers, run_fn):
                    finished[run_id] = run
                    write_aggregates(root, finished)
                    bar.update()
        except BaseException:  # interrupted or a run failed: tables still cover every run that finished
            if on_disk := load_finished_runs(root):
                write_aggregates(root, on_disk)
            raise
    else:
        write_aggregates(root, finished)  # keeps the tables in step even if they were deleted
    runs, _ = build_tables({i: finished[i] for i in ids})
    runs.attrs.update(skipped=skipped, ran=len(todo))
    return runs


def execute_run(run_id: str, scenario: Scenario, setup: Any, directory: Path, run_fn: RunFn | None) -> FinishedRun:
    """One run into its directory (DONE last); module-level so process pools and Ray can ship it.

    The runs-table row is run_id + the flattened config (the same columns for every run function) + the
    run's measurements; config-like keys in the run's own summary are left to the config.
    """
    resolved = scenario.resolved()
    start_run(directory, resolved)
    records = (run_fn or _run_in_worker)(scenario, setup)
    measured = {k: v for k, v in records.summary.items()
                if k != "run_id" and k.split(".")[0] not in Scenario.model_fields}
    tables = {}
    for name, table in (("participants", records.participants), ("layers", getattr(records, "layers", None))):
        if table is not None:
            table = table.drop(columns="run_id", errors="ignore")  # the config hash is the run's id
            table.insert(0, "run_id", run_id)
            tables[name] = table
    write_run(directory, FinishedRun({"run_id": run_id, **flatten_config(resolved), **measured}, tables),
              records.trace)
    return read_run(directory)


def worker_context() -> Any:
    """This process's RunContext: the caches every run it executes shares (built on first use)."""
    global _CONTEXT
    if _CONTEXT is None:
        from fedsim.experiment.run import RunContext  # lazy: torch loads only where runs execute

        _CONTEXT = RunContext()
    return _CONTEXT


def _run_in_worker(scenario: Scenario, setup: Any) -> RunRecordsLike:
    from fedsim.experiment.run import run_scenario

    return run_scenario(scenario, setup, worker_context())


def _run_serial(jobs: list[Job], workers: int, run_fn: RunFn | None) -> Iterator[tuple[str, FinishedRun]]:
    for run_id, scenario, setup, directory in jobs:
        yield run_id, execute_run(run_id, scenario, setup, directory, run_fn)


def _run_pool(jobs: list[Job], workers: int, run_fn: RunFn | None) -> Iterator[tuple[str, FinishedRun]]:
    """Local processes, at most `workers` runs submitted at a time: after Ctrl-C no queued run starts."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_limit_threads, initargs=(threads,))
    queue: list[Job] = list(jobs)
    pending: dict[Future[FinishedRun], str] = {}
    try:
        while queue or pending:
            while queue and len(pending) < workers:
                run_id, scenario, setup, directory = queue.pop(0)
                pending[pool.submit(execute_run, run_id, scenario, setup, directory, run_fn)] = run_id
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield pending.pop(future), future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        fix = "pip install 'fedsim[ray]' (or use --backend process)"
        raise UserError("--backend", "backend 'ray' needs Ray", fix) from None
    return ray


def _run_ray(jobs: list[Job], workers: int, run_fn: RunFn | None) -> Iterator[tuple[str, FinishedRun]]:
    """Ray tasks, at most `workers` in flight; run directories must be on a filesystem all nodes share."""
    ray = _import_ray()
    ray.init(ignore_reinit_error=True)
    remote = ray.remote(execute_run)
    queue: list[Job] = list(jobs)
    pending: dict[Any, str] = {}  # Ray ObjectRef -> run_id
    try:
        while queue or pending:
            while queue and len(pending) < workers:
                run_id, scenario, setup, directory = queue.pop(0)
                pending[remote.remote(run_id, scenario, setup, directory, run_fn)] = run_id
            done, _ = ray.wait(list(pending), num_returns=1)
            yield pending.pop(done[0]), ray.get(done[0])
    finally:
        for ref in pending:
            ray.cancel(ref)


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


def _limit_threads(n: int) -> None:
    """Pool initializer: `workers` processes x n torch threads = the machine's cores, not more."""
    import torch

    torch.set_num_threads(n)
