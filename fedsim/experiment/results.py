"""Results on disk: a folder per scenario, a folder per run, and tables that grow by one file per run.

    results/<name>/runs.parquet/<run_id>.parquet           the run's row of the runs table
    results/<name>/participants.parquet/<run_id>.parquet   its rows, one per participant
    results/<name>/layers.parquet/<run_id>.parquet         one per block and participant (when reported)
    results/<name>/runs/<run_id>/                          config.json, versions.json, [trace.json], DONE
    results/<name>/runs/.broken/<run_id>/                  a run that could not be read back, set aside
    results/<name>/.locks/<run_id>.lock                    held by the sweep that is computing the run

Each `<table>.parquet` folder is one Parquet dataset (`pd.read_parquet("results/default/runs.parquet")` reads
every run), so a finished run adds its files instead of rewriting whole tables. DONE is written last and lists
the run's tables: a run without it is unfinished and is never read. A finished run whose files cannot be read
is moved to runs/.broken/ with a one-line warning, and the next sweep computes it again.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from fedsim.common.errors import UserError
from fedsim.common.files import atomic_write
from fedsim.experiment.tables import combine, config_order, to_frame

DONE = "DONE"
RUN_TABLES = ("runs", "participants", "layers")
_REQUIRED = ("runs", "participants")
_WRITE_ORDER = ("layers", "participants", "runs")  # the runs row last: it never names a run missing its rows
RunTables = dict[str, pa.Table]


class BrokenRun(Exception):
    """A finished run whose files cannot be read back."""


def write_json(path: Path, obj: Any) -> None:
    """JSON in the dict's own (deterministic) order; NaN becomes null so the files stay standard JSON."""
    text = json.dumps(_nan_to_none(obj), indent=2, allow_nan=False) + "\n"
    atomic_write(path, text.encode())


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, Mapping):
        return {str(k): _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, (np.generic, np.ndarray)):  # numpy values from pandas rows or traces
        return _nan_to_none(obj.tolist())
    return obj


def warn(message: str) -> None:
    """One line on stderr: something was repaired and the user should know."""
    print(f"warning: {' '.join(message.split())}", file=sys.stderr)


# A run's tables are small (one row, or N x blocks rows) and read whole: column statistics, dictionaries and
# compression cost more to write than they save to read, and change nothing a reader sees. Without them a tiny
# run's three tables wrote 28% faster side by side, and benchmarks/bench_aggregation.py's share fell from
# 10.4% to 8.8%.
_PARQUET = {"write_statistics": False, "use_dictionary": False, "compression": "none"}


class ResultsFolder:
    """One scenario's results folder (`results/<name>`); its root is absolute, so workers anywhere that share
    the filesystem write to the same place."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def table_file(self, table: str, run_id: str) -> Path:
        return self.root / f"{table}.parquet" / f"{run_id}.parquet"

    def is_finished(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / DONE).is_file()

    def finished(self) -> list[str]:
        """The run ids with a DONE marker, sorted."""
        runs = self.root / "runs"
        names = [e.name for e in os.scandir(runs) if not e.name.startswith(".")] if runs.is_dir() else []
        return sorted(n for n in names if self.is_finished(n))

    def try_lock(self, run_id: str) -> FileLock | None:
        """The run's lock if no other sweep holds it (an OS lock: a killed holder releases it)."""
        (self.root / ".locks").mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.root / ".locks" / f"{run_id}.lock")
        try:
            lock.acquire(blocking=False)
        except Timeout:
            return None
        return lock

    # Writing a run; the caller holds its lock.
    def start_run(self, run_id: str, resolved: Mapping[str, Any], identity: Mapping[str, Any]) -> None:
        """Clear leftovers of an unfinished attempt, then record what is about to run and with which versions."""
        self.clear(run_id)
        write_json(self.run_dir(run_id) / "config.json", resolved)
        write_json(self.run_dir(run_id) / "versions.json", identity)

    def finish_run(self, run_id: str, tables: Mapping[str, pa.Table], trace: Mapping[str, Any] | None) -> None:
        """Write a finished run's tables, then DONE (listing them): a crash before DONE leaves it unfinished."""
        if trace is not None:
            write_json(self.run_dir(run_id) / "trace.json", trace)
        for name in _WRITE_ORDER:
            if name in tables:
                atomic_write(self.table_file(name, run_id), lambda f, t=tables[name]: pq.write_table(t, f, **_PARQUET))
        listed = [name for name in RUN_TABLES if name in tables]
        atomic_write(self.run_dir(run_id) / DONE, json.dumps({"tables": listed}).encode())

    def clear(self, run_id: str) -> None:
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)
        for name in RUN_TABLES:
            self.table_file(name, run_id).unlink(missing_ok=True)

    # Reading.
    def read_run(self, run_id: str, tables: Collection[str] = RUN_TABLES) -> RunTables:
        """A finished run's `tables`, checked: each file parses and its rows carry this run's id (of the
        tables not asked for, only the run_id column is read)."""
        try:
            listed = json.loads((self.run_dir(run_id) / DONE).read_bytes())["tables"]
            if not set(_REQUIRED) <= set(listed) <= set(RUN_TABLES):
                raise ValueError(listed)
        except (OSError, ValueError, KeyError, TypeError):
            raise BrokenRun("its DONE marker does not list its tables (written by an older fedsim?)") from None
        found = {}
        for name in listed:
            columns = None if name in tables or name == "runs" else ["run_id"]
            try:
                with pq.ParquetFile(self.table_file(name, run_id)) as file:
                    table = file.read(columns=columns)
            except Exception as err:  # missing, truncated or garbled: any failure means "cannot be read"
                raise BrokenRun(f"{name}: {' '.join(str(err).split())[:200]}") from None
            if not _all_rows_are(table, run_id):
                raise BrokenRun(f"{name}: its rows do not all carry run_id {run_id}")
            if columns is None:
                found[name] = table
        if found["runs"].num_rows != 1:
            raise BrokenRun(f"runs: {found['runs'].num_rows} rows instead of one")
        return found

    def read_runs(self, run_ids: Iterable[str], tables: Collection[str] = RUN_TABLES,
                  locked: bool = False) -> dict[str, RunTables]:
        """The readable ones of these finished runs (`tables` as in read_run); the others are set aside with one
        warning line (`locked`: the caller holds their locks; else a run that another sweep holds is left alone)."""
        found, broken = {}, {}
        for run_id in run_ids:
            try:
                found[run_id] = self.read_run(run_id, tables)
            except BrokenRun as err:
                broken[run_id] = str(err)
        moved = [run_id for run_id, why in broken.items() if self._set_aside(run_id, why, locked)]
        if moved:
            first = moved[0]
            warn(f"{self.root}: {len(moved)} unreadable run(s) moved to runs/.broken/ and left to be computed "
                 f"again ({first}: {broken[first]})")
        return found

    def _set_aside(self, run_id: str, why: str, locked: bool) -> bool:
        lock = None if locked else self.try_lock(run_id)
        if not locked and lock is None:
            return False  # another sweep is computing it right now
        try:
            if not self.is_finished(run_id):
                return False
            target = self.root / "runs" / ".broken" / run_id
            for n in range(1, 1000):
                if not target.exists():
                    break
                target = target.with_name(f"{run_id}.{n}")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.run_dir(run_id), target)
            for name in RUN_TABLES:
                if self.table_file(name, run_id).is_file():
                    os.replace(self.table_file(name, run_id), target / f"{name}.parquet")
            atomic_write(target / "WHY", (why + "\n").encode())
            return True
        finally:
            if lock is not None:
                lock.release()

    def tidy(self) -> None:
        """Before a sweep: set aside whole-table files of fedsim 0.1 (their runs are set aside when read) and
        drop the table files of runs that never finished (a killed sweep's), so that `pd.read_parquet` on a
        table folder sees finished runs only."""
        for name in RUN_TABLES:
            folder = self.root / f"{name}.parquet"
            if folder.is_file() and not folder.is_symlink():
                (self.root / "runs" / ".broken").mkdir(parents=True, exist_ok=True)
                os.replace(folder, self.root / "runs" / ".broken" / folder.name)
                warn(f"{folder}: a whole table written by an older fedsim, moved to runs/.broken/")
            elif folder.is_dir():
                for entry in os.scandir(folder):
                    run_id = entry.name.lstrip(".").split(".")[0]
                    if not self.is_finished(run_id) and (lock := self.try_lock(run_id)):
                        try:
                            if not self.is_finished(run_id):
                                Path(entry.path).unlink(missing_ok=True)
                        finally:
                            lock.release()


def _all_rows_are(table: pa.Table, run_id: str) -> bool:
    ids = table.column("run_id") if "run_id" in table.column_names else None
    if ids is None or ids.type != pa.string() or ids.null_count:
        return False
    return bool(pc.all(pc.equal(ids, run_id), min_count=0).as_py())


def build_tables(runs: Mapping[str, RunTables]) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The runs table (rows ordered by config, numbers numerically) and the per-run tables concatenated in
    that order. The order depends only on which runs exist, so identical sweeps give identical tables."""
    frame = to_frame(combine([runs[r]["runs"] for r in sorted(runs)]))
    frame = frame.iloc[config_order(frame)].reset_index(drop=True)
    order = list(frame["run_id"])
    tables = {name: to_frame(combine([runs[r][name] for r in order if name in runs[r]]))
              for name in RUN_TABLES[1:] if any(name in runs[r] for r in order)}
    return frame, tables


def read_results(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, participants) of every finished run in a scenario results folder; unreadable runs are set aside."""
    folder = ResultsFolder(path)
    if not folder.root.is_dir():
        raise UserError("", "no such results directory", "give results/<scenario name>", str(path))
    found = folder.read_runs(folder.finished(), ("runs", "participants"))
    if not found:
        raise UserError("", "no finished runs", f"expected {Path(path)}/runs/<run id>/DONE", str(path))
    runs, tables = build_tables(found)
    return runs, tables["participants"]
