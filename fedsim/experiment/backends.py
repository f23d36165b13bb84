"""Where a sweep's runs execute: a concurrent.futures executor, and how many runs it takes at once.

    process  local processes (the default): `--workers` of them (default: one per CPU core), spawned
    dask     a Dask distributed cluster: `--scheduler tcp://host:8786`, one run at a time per worker
             thread of the cluster (start workers with `--nthreads 1`), or, with no scheduler, a local
             cluster of `--workers` processes; run folders must be on a filesystem every worker shares
    serial   this process, one run at a time (tests, debugging)

Every backend gets the same absolute run folders and the same run function, so its tables are the same bytes.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any

from fedsim.common.errors import UserError

BACKENDS = ("process", "dask", "serial")
_DASK_FIX = "pip install 'fedsim[dask]' (or use --backend process)"
_CONNECT_TIMEOUT_S = 30


class InlineExecutor(Executor):
    """Runs each submitted call at once in this process; a Ctrl-C is not turned into a failed future."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as err:
            future.set_exception(err)
        return future


def default_workers() -> int:
    """One run per CPU core this process may use (each run uses one torch thread)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_backend(name: str, scheduler: str | None) -> None:
    """Refuse an unknown backend, a scheduler for a backend that takes none, or Dask when it is missing,
    before anything is written."""
    if name not in BACKENDS:
        raise UserError("--backend", f"unknown backend {name!r}", f"choose one of {', '.join(BACKENDS)}")
    if scheduler and name != "dask":
        raise UserError("--scheduler", f"backend {name!r} takes no scheduler address", "add --backend dask")
    if name == "dask":
        _distributed()


@contextmanager
def open_backend(name: str, workers: int | None, scheduler: str | None = None) -> Iterator[tuple[Executor, int]]:
    """(executor, slots): submit at most `slots` runs at a time. On exit, runs already running are waited for
    (neither a process pool nor Dask can stop one midway), so their locks are held until they end."""
    if name == "serial":
        yield InlineExecutor(), 1
    elif name == "process":
        workers = workers or default_workers()
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        try:
            yield pool, workers
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    else:
        with _dask_client(workers, scheduler) as client:
            slots = sum(client.nthreads().values())
            executor = client.get_executor(pure=False)
            try:
                yield executor, min(slots, workers) if workers and scheduler else slots
            finally:
                executor.shutdown(wait=True)


@contextmanager
def _dask_client(workers: int | None, scheduler: str | None) -> Iterator[Any]:
    distributed = _distributed()
    cluster = None
    if scheduler is None:
        cluster = distributed.LocalCluster(n_workers=workers or default_workers(), threads_per_worker=1,
                                           processes=True, host="127.0.0.1", dashboard_address=None)
    try:
        try:
            client = distributed.Client(scheduler or cluster, timeout=_CONNECT_TIMEOUT_S)
        except OSError as err:
            raise UserError("--scheduler", f"cannot reach the Dask scheduler at {scheduler}: {err}",
                            "start one with `dask scheduler` and workers with `dask worker ADDRESS --nthreads 1`",
                            ) from None
        try:
            try:
                client.wait_for_workers(1, timeout=_CONNECT_TIMEOUT_S)
            except TimeoutError:
                raise UserError("--scheduler", f"the Dask scheduler at {scheduler} has no workers",
                                "start them with `dask worker ADDRESS --nthreads 1`") from None
            yield client
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise UserError("--backend", "backend 'dask' needs Dask distributed", _DASK_FIX) from None
    return distributed
