"""Results on disk: atomic writes, one directory per run, and the tidy tables gathered from them.

Layout (see `run_dir`):
    results/<scenario name>/runs.parquet              every finished run, one row each (rewritten by sweeps)
    results/<scenario name>/participants.parquet      every finished run x participant
    results/<scenario name>/layers.parquet            every finished run x layer x participant (if reported)
    results/<scenario name>/runs/<config_hash>/       config.json, versions.json, participants.parquet,
                                                      [layers.parquet], summary.json, [trace.json],
                                                      DONE (written last)
A run directory without DONE is unfinished (interrupted or crashed) and is never read.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import io
import json
import math
import platform
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import fedsim
from fedsim.common.errors import UserError
from fedsim.common.files import atomic_write

DONE = "DONE"
RUNS_TABLE = "runs"
RUN_TABLES = ("participants", "layers")  # per-run tables, each also aggregated at the scenario root
_VERSIONED = ("torch", "numpy", "pandas", "simpy")


def run_dir(root: Path, run_id: str) -> Path:
    """Where one run's files live under a scenario results directory."""
    return root / "runs" / run_id


def is_finished(directory: Path) -> bool:
    """True once a run wrote its DONE marker, i.e. all of its files are complete."""
    return (directory / DONE).is_file()


def write_json(path: Path, obj: Any) -> None:
    """JSON in the dict's own (deterministic) order, so tables rebuilt from files keep their column order.

    NaN becomes null so the files stay standard JSON.
    """
    text = json.dumps(_nan_to_none(obj), indent=2, allow_nan=False) + "\n"
    atomic_write(path, text.encode())


def read_json(path: Path) -> Any:
    """Counterpart of `write_json` (nulls stay None)."""
    return json.loads(path.read_text(encoding="utf-8"))


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


def parquet_available() -> bool:
    """Parquet needs pyarrow; without it tables fall back to CSV rather than failing the run."""
    return importlib.util.find_spec("pyarrow") is not None


def write_table(path: Path, df: pd.DataFrame) -> Path:
    """Write `df` to `path` with suffix .parquet, or .csv when pyarrow is missing; returns the path written."""
    df = _arrow_safe(df.reset_index(drop=True))
    if parquet_available():
        target, buffer = path.with_suffix(".parquet"), io.BytesIO()
        df.to_parquet(buffer, index=False)
        data = buffer.getvalue()
    else:
        target = path.with_suffix(".csv")
        data = df.to_csv(index=False).encode()
    atomic_write(target, data)
    return target


def read_table(path: Path) -> pd.DataFrame:
    """Read a table written by `write_table` (either format), given its path with or without suffix."""
    parquet, csv = path.with_suffix(".parquet"), path.with_suffix(".csv")
    if parquet.is_file():
        return pd.read_parquet(parquet)
    if csv.is_file():
        return pd.read_csv(csv)
    raise FileNotFoundError(f"{parquet}: no such table (nor {csv.name})")


def _arrow_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns mixing types (e.g. responder 'publisher' or 2) become strings; Arrow rejects them."""
    df = df.copy()
    for column in [c for c in df.columns if pd.api.types.is_object_dtype(df[c])]:
        values = df[column].dropna()
        if len({type(v) for v in values}) > 1 or any(isinstance(v, (dict, list)) for v in values):
            df[column] = df[column].map(lambda v: v if isinstance(v, str) else json.dumps(v), na_action="ignore")
    return df


def versions() -> dict[str, str | None]:
    """Versions that can change the numbers; read from package metadata, so torch is never imported."""
    found: dict[str, str | None] = {"python": platform.python_version(), "fedsim": fedsim.__version__}
    for name in _VERSIONED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def start_run(directory: Path, resolved: Mapping[str, Any]) -> None:
    """Clear leftovers of an unfinished attempt, then record what is about to run and with which versions."""
    if directory.exists():
        shutil.rmtree(directory)
    write_json(directory / "config.json", resolved)
    write_json(directory / "versions.json", versions())


@dataclass(frozen=True)
class FinishedRun:
    """What a finished run contributes to the scenario tables: its runs-table row and its per-run tables."""

    row: dict[str, Any]
    tables: dict[str, pd.DataFrame]  # "participants", and "layers" when the runner reports per-layer rows


def write_run(directory: Path, run: FinishedRun, trace: Mapping[str, Any] | None) -> None:
    """Write a finished run's records, then DONE: a crash before the marker leaves the run unfinished."""
    for name, table in run.tables.items():
        write_table(directory / name, table)
    write_json(directory / "summary.json", run.row)
    if trace is not None:
        write_json(directory / "trace.json", trace)
    atomic_write(directory / DONE, b"")


def read_run(directory: Path) -> FinishedRun:
    """A finished run as stored; sweeps use this form even for fresh runs, so tables built from runs just
    finished and from runs read back after a resume are the same bytes."""
    tables = {name: read_table(directory / name) for name in RUN_TABLES if any(directory.glob(f"{name}.*"))}
    return FinishedRun(read_json(directory / "summary.json"), tables)


def load_finished_runs(root: Path) -> dict[str, FinishedRun]:
    """{run_id: FinishedRun} for every finished run under a scenario results directory."""
    runs = root / "runs"
    directories = sorted(runs.iterdir()) if runs.is_dir() else []
    return {d.name: read_run(d) for d in directories if is_finished(d)}


def build_tables(finished: Mapping[str, FinishedRun]) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The runs table and the concatenated per-run tables, rows ordered by config (numbers numerically).

    The order depends only on which runs exist, never on when they finished, so identical sweeps give
    byte-identical tables. `finished` must not be empty.
    """
    run_ids = sorted(finished)
    rows = [finished[r].row for r in run_ids]
    columns = _ordered_columns(rows)
    order = [run_ids[i] for i in sorted(range(len(rows)), key=lambda i: _row_key(rows[i], columns))]
    runs = _arrow_safe(pd.DataFrame([finished[r].row for r in order], columns=columns))  # as stored in Parquet
    tables = {name: pd.concat([finished[r].tables[name] for r in order if name in finished[r].tables],
                              ignore_index=True)
              for name in RUN_TABLES if any(name in finished[r].tables for r in order)}
    return runs, tables


def _ordered_columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Union of row keys in first-seen order, so configs with extra keys (overrides) still line up."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def _row_key(row: Mapping[str, Any], columns: list[str]) -> tuple:
    def key(value: Any) -> tuple:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return (0, 0.0, "")
        if isinstance(value, (bool, int, float)):
            return (1, float(value), "")
        return (2, 0.0, value if isinstance(value, str) else json.dumps(value, sort_keys=True))

    return tuple(key(row.get(c)) for c in columns if c != "run_id") + (row.get("run_id", ""),)


def write_aggregates(root: Path, finished: Mapping[str, FinishedRun]) -> None:
    """Rewrite `<root>/runs.parquet` and `<root>/participants.parquet` (+ layers) from the finished runs."""
    runs, tables = build_tables(finished)
    write_table(root / RUNS_TABLE, runs)
    for name, table in tables.items():
        write_table(root / name, table)


def read_results(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, participants) tables of every finished run under a scenario results directory."""
    root = Path(path)
    if not root.is_dir():
        raise UserError("", "no such results directory", "give results/<scenario name>", str(root))
    finished = load_finished_runs(root)
    if not finished:
        raise UserError("", "no finished runs", f"expected {root}/runs/<config_hash>/DONE", str(root))
    runs, tables = build_tables(finished)
    return runs, tables["participants"]
