"""Typed Arrow tables of runs: config columns typed by the scenario schema, measurements by their values.

Every runs-table file written by one fedsim version has the same config columns with the same types: a
column for every key of the schema (all task kinds' keys, a section that is null gives nulls), so runs of
different scenarios and sweeps combine without casts. The rules:
  - int -> int64, float -> float64, bool -> bool, str and string Literals -> string;
  - a list of scalars -> a list column (`schedule.layers`, `exposed_layers`);
  - a key whose value may be a string or a number (`decoding.responder`: 'publisher' or 2) -> string;
  - a mapping whose keys vary by run (`participants.overrides`) -> one JSON string column;
  - a measurement that is missing or NaN is null; a column with no value at all is float64, never `null`;
    an empty list is a list of int64.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Annotated, Any, Literal, get_args, get_origin

import numpy as np
import pandas as pd
import pyarrow as pa

from fedsim.common.schema import models_at, unwrap_optional
from fedsim.experiment.config import NOT_IN_HASH, Scenario

_NUMBERS = (pa.int64(), pa.float64())
_NO_VALUE = pa.float64()  # the type of a column that holds no value at all


def config_types() -> dict[str, pa.DataType]:
    """Every config column any scenario can have, in schema order, with its Arrow type."""
    return dict(_config_types())


@lru_cache(maxsize=1)
def _config_types() -> tuple[tuple[str, pa.DataType], ...]:
    found: dict[str, pa.DataType] = {}
    _collect(Scenario, "", found)
    return tuple(found.items())


def _collect(annotation: Any, column: str, found: dict[str, pa.DataType]) -> None:
    models = models_at(unwrap_optional(_bare(annotation)))
    if not models:
        kind = _annotation_type(annotation)
        found[column] = kind if found.get(column, kind) == kind else pa.string()  # task kinds that disagree
        return
    for model in models:
        for name, field in model.model_fields.items():
            if not column and name in NOT_IN_HASH:
                continue
            _collect(field.annotation, f"{column}.{name}" if column else name, found)


def _bare(annotation: Any) -> Any:
    return get_args(annotation)[0] if get_origin(annotation) is Annotated else annotation


def _annotation_type(annotation: Any) -> pa.DataType:
    annotation = _bare(unwrap_optional(_bare(annotation)))
    origin = get_origin(annotation)
    if annotation in (bool, int, float, str):
        return {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}[annotation]
    if origin is Literal:
        values = get_args(annotation)
        ints = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
        return pa.int64() if ints else pa.string()
    if origin in (list, tuple, Sequence):
        element = _annotation_type(get_args(annotation)[0])
        return pa.list_(element) if not pa.types.is_nested(element) else pa.string()
    return pa.string()  # a union of kinds of values, a mapping or Any: one string (JSON for non-strings)


def config_values(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The config columns of one run: values from its resolved config, None for keys it does not have."""
    values = {}
    for column in config_types():
        value: Any = resolved
        for part in column.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        values[column] = value
    return values


def row_table(row: Mapping[str, Any], known: Mapping[str, pa.DataType]) -> pa.Table:
    """One row as a table: columns in `known` get that type, the others the type of their value."""
    schema = pa.schema([(column, known.get(column) or _common_type([value])) for column, value in row.items()])
    return pa.Table.from_pylist([{f.name: _plain(row[f.name], f.type) for f in schema}], schema=schema)


def frame_table(frame: pd.DataFrame, run_id: str) -> pa.Table:
    """A run's per-participant or per-layer rows as a typed table, led by a `run_id` column (the rules in the
    module docstring; a `run_id` the frame has is replaced)."""
    cells = frame.to_numpy(dtype=object)  # Python values, one array for all columns: much faster than per column
    fields, data = [pa.field("run_id", pa.string())], {"run_id": [run_id] * len(frame)}
    for j, (column, dtype) in enumerate(frame.dtypes.items()):
        if column == "run_id":
            continue
        values = cells[:, j].tolist()
        fields.append(pa.field(str(column), _column_type(dtype, values)))
        data[str(column)] = [_plain(v, fields[-1].type) for v in values]
    return pa.Table.from_pydict(data, pa.schema(fields))


def _column_type(dtype: Any, values: list[Any]) -> pa.DataType:
    if pd.api.types.is_bool_dtype(dtype):
        return pa.bool_()
    if pd.api.types.is_integer_dtype(dtype):
        return pa.int64()
    if pd.api.types.is_float_dtype(dtype):
        return pa.float64()
    return _common_type(values)


def _value_type(value: Any) -> pa.DataType | None:
    if _missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return pa.bool_()
    if isinstance(value, (int, np.integer)):
        return pa.int64()
    if isinstance(value, (float, np.floating)):
        return pa.float64()
    if isinstance(value, (list, tuple, np.ndarray)):
        element = _common_type(list(value), empty=pa.int64())
        return pa.list_(element) if not pa.types.is_nested(element) else pa.string()
    return pa.string()


def _common_type(values: Iterable[Any], empty: pa.DataType = _NO_VALUE) -> pa.DataType:
    kinds = {kind for kind in map(_value_type, values) if kind is not None}
    if not kinds:
        return empty
    if len(kinds) == 1:
        return kinds.pop()
    return pa.float64() if kinds <= set(_NUMBERS) else pa.string()


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, (float, np.floating)) and math.isnan(value)


def _plain(value: Any, kind: pa.DataType) -> Any:
    """A Python value Arrow accepts for `kind`: numpy scalars unwrapped, non-strings in string columns as JSON."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if not isinstance(value, (list, tuple)) and _missing(value):
        return None
    if pa.types.is_string(kind) and not isinstance(value, str):
        return json.dumps(value, sort_keys=True, default=str)
    if pa.types.is_list(kind):
        return [_plain(v, kind.value_type) for v in value]
    return value


def combine(tables: Sequence[pa.Table]) -> pa.Table:
    """One table from per-run tables; columns missing from a run are null, numbers that disagree become
    float64 and any other disagreement a string column (runs written by different run functions)."""
    if all(t.schema.equals(tables[0].schema) for t in tables):
        return pa.concat_tables(tables)
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    kinds: dict[str, set[pa.DataType]] = {}
    for table in tables:
        for field in table.schema:
            kinds.setdefault(field.name, set()).add(field.type)
    clashing = {name for name, found in kinds.items() if len(found - {pa.null()}) > 1}
    return pa.concat_tables([_stringify(t, clashing) for t in tables], promote_options="permissive")


def _stringify(table: pa.Table, columns: set[str]) -> pa.Table:
    for name in columns & set(table.column_names):
        index = table.column_names.index(name)
        text = pa.array([_plain(v, pa.string()) for v in table.column(name).to_pylist()], pa.string())
        table = table.set_column(index, name, text)
    return table


def to_frame(table: pa.Table) -> pd.DataFrame:
    """A combined table as pandas; list cells become tuples, so list columns can be grouped and compared."""
    frame = table.to_pandas()
    for field in table.schema:
        if pa.types.is_list(field.type):
            frame[field.name] = [None if v is None else tuple(v.tolist()) for v in frame[field.name]]
    return frame


def config_order(runs: pd.DataFrame) -> list[int]:
    """Row positions ordered by the config columns (numbers numerically, missing first), then run_id: an
    order that depends only on which runs exist, never on when they finished."""
    columns = [c for c in config_types() if c in runs.columns]
    rows = runs.to_dict("records")
    return sorted(range(len(rows)), key=lambda i: (*(_sort_key(rows[i][c]) for c in columns), rows[i]["run_id"]))


def _sort_key(value: Any) -> tuple:
    if isinstance(value, tuple):
        return (2, 0.0, json.dumps(value))
    if _missing(value):
        return (0, 0.0, "")
    if isinstance(value, (bool, int, float, np.integer, np.floating, np.bool_)):
        return (1, float(value), "")
    return (2, 0.0, str(value))

