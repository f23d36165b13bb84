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

from fedsim.config import (
    NOT_IN_HASH,
    Scenario,
    ScenarioError,
    check_dotted_key,
    config_hash,
    load_yaml,
    with_overrides,
)
from fedsim.results import (
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
    """What a run function returns (fedsim.runner.RunRecords); an optional `layers` table is kept too."""

    participants: pd.DataFrame
    summary: dict[str, Any]
    trace: dict[str, Any] | None


RunFn = Callable[[Scenario, Path], RunRecordsLike]
# (run_id, scenario, run directory) for one pending run
Job = tuple[str, Scenario, Path]


class BackendError(RuntimeError):
    """The requested execution backend cannot run here (unknown name, or Ray not installed)."""


def parse_set(arg: str) -> tuple[str, list[Any]]:
    """'schedule.H=1,2,4' -> ('schedule.H', [1, 2, 4]); values are YAML, so null, 1e-3, {p: 0.2} work."""
    key, sep, text = arg.partition("=")
    key = key.strip()
    if not sep or not key or not text.strip():
        raise ScenarioError("--set", arg, "expected KEY=VALUE[,VALUE...]", "e.g. --set schedule.H=1,2,4,8")
    check_dotted_key(key, "--set")
    try:
        values = load_yaml(f"[{text}]")
    except Exception:  # any YAML error: the message below says what was expected
        raise ScenarioError("--set", key, f"cannot parse the values {text!r}",
                            "separate YAML values with commas, e.g. 1,2,4 or null,{probability: 0.2}") from None
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
    `run_fn(scenario, run_dir)` defaults to fedsim.runner.run_scenario.
    """
    points = expand_grid(scenario, axes)
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "ray":
        _import_ray()
    if run_fn is None:
        check_points(points)
    root = results_root(scenario, out_dir)
    ids = [config_hash(p.resolved()) for p in points]
    finished = load_finished_runs(root)
    todo = [(i, p, run_dir(root, i)) for i, p in zip(ids, points, strict=True) if i not in finished]
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


def execute_run(run_id: str, scenario: Scenario, directory: Path, run_fn: RunFn | None) -> FinishedRun:
    """One run into its directory (DONE last); module-level so process pools and Ray can ship it.

    The runs-table row is run_id + the flattened config (the same columns for every run function) + the
    run's measurements; config-like keys in the run's own summary are left to the config.
    """
    if run_fn is None:
        from fedsim.runner import run_scenario  # lazy: torch and the model load only where runs execute

        run_fn = run_scenario
    resolved = scenario.resolved()
    start_run(directory, resolved)
    records = run_fn(scenario, directory)
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


def _run_serial(jobs: list[Job], workers: int, run_fn: RunFn | None) -> Iterator[tuple[str, FinishedRun]]:
    for run_id, scenario, directory in jobs:
        yield run_id, execute_run(run_id, scenario, directory, run_fn)


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
                run_id, scenario, directory = queue.pop(0)
                pending[pool.submit(execute_run, run_id, scenario, directory, run_fn)] = run_id
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield pending.pop(future), future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BackendError("backend 'ray' needs Ray: pip install 'fedsim[ray]' (or use --backend process)") from None
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
                run_id, scenario, directory = queue.pop(0)
                pending[remote.remote(run_id, scenario, directory, run_fn)] = run_id
            done, _ = ray.wait(list(pending), num_returns=1)
            yield pending.pop(done[0]), ray.get(done[0])
    finally:
        for ref in pending:
            ray.cancel(ref)


def check_points(points: Sequence[Scenario]) -> None:
    """Everything the real runner would reject, before any results directory exists: missing model files,
    then schedule, partition and responder errors (these need the model's depth and tokenizer)."""
    _check_model_files(points)
    _check_runs(points)


def _check_runs(points: Sequence[Scenario]) -> None:
    """Schedule, partition and responder errors need the model's depth and tokenizer: find them before any
    results directory exists, as one line naming the grid point."""
    from fedsim.runner import check_scenario

    for point in points:
        try:
            check_scenario(point)
        except ValueError as err:
            raise ScenarioError(point.source, "", str(err)) from None


def _limit_threads(n: int) -> None:
    """Pool initializer: `workers` processes x n torch threads = the machine's cores, not more."""
    import torch

    torch.set_num_threads(n)


def _check_model_files(points: Sequence[Scenario]) -> None:
    """Fail on a missing model file before any results directory exists (ModelFileError says how to fix)."""
    from fedsim.model_files import KNOWN_MODELS, locate_model_file

    for name in sorted({p.model.name for p in points}):
        if name in KNOWN_MODELS:  # others (tiny-random) are built in memory
            locate_model_file(name)
