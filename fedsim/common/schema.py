"""Pydantic models for hand-written input (scenarios, profiles) and the one renderer of their errors.

People write these files by hand, so every mistake must come back as one line that names the source, the
dotted field, what is wrong and how to fix it, instead of pydantic's multi-line report.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterable, Mapping, Sequence
from inspect import isclass
from typing import Any, Literal, NamedTuple, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from fedsim.common.errors import UserError

Model = TypeVar("Model", bound=BaseModel)


class Section(BaseModel):
    """Strict (`H: "4"` and `greedy: yes` are typos to report, not values to coerce), closed, immutable, and
    finite: `.inf` or `.nan` in any number field is an error (they pass `> 0` checks, then break runs)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


def validate(model: type[Model], data: Any, source: str, prefix: Sequence[str] = ()) -> Model:
    """`model` validated from `data`; the first problem is raised as one UserError line.

    `prefix` is prepended to field names (e.g. a profile's name in a file of many profiles)."""
    if not isinstance(data, Mapping):
        what = f"must be a mapping of keys (got {type(data).__name__})"
        raise UserError(".".join(prefix), what if prefix else f"the top level {what}", "write `key: value` lines",
                        source)
    try:
        return model.model_validate(dict(data))
    except ValidationError as err:
        raise render(err, model, source, prefix) from None


def unwrap_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def models_at(annotation: Any) -> list[type[BaseModel]]:
    """The model(s) at a schema position: one, the members of a union of models (task kinds), or none."""
    members = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    return [m for m in members if isclass(m) and issubclass(m, BaseModel)]


def kind_of(model: type[BaseModel]) -> Any:
    """The tag of a union member: the single value of its `kind` Literal."""
    return get_args(model.model_fields["kind"].annotation)[0]


def nearest(word: str, choices: Iterable[str]) -> str | None:
    """The closest choice, case-insensitive, or None when nothing is close."""
    lowered = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


def suggest(word: str, choices: Iterable[str], listing: str) -> str:
    """'did you mean X?' for the nearest choice, else the list of valid choices."""
    choices = list(choices)
    match = nearest(word, choices)
    return f"did you mean '{match}'?" if match else f"{listing}: {', '.join(choices)}"


def dotted(loc: Sequence[str | int]) -> str:
    return ".".join(str(s) for s in loc)


class _Place(NamedTuple):
    loc: list[str | int]  # the error location as the user wrote it (no pydantic union tags)
    annotation: Any  # the schema type there
    info: FieldInfo | None  # the innermost named field on the way (its description is the fix hint)
    owner: list[str | int]  # the location of that field
    complete: bool  # False if the location ended in tags of a union none of whose members matched


def _walk(root: type[BaseModel], loc: Sequence[str | int]) -> _Place:
    """Follow a pydantic error location through the schema, dropping tags such as 'retrieval' in
    ('task', 'retrieval', 'n_facts') or "literal['publisher']"."""
    annotation: Any = root
    info: FieldInfo | None = None
    clean: list[str | int] = []
    owner: list[str | int] = []
    for segment in loc:
        annotation = unwrap_optional(annotation)
        models = models_at(annotation)
        if len(models) > 1:  # a union of models: pydantic puts the member's tag in the location
            member = next((m for m in models if kind_of(m) == segment), None)
            if member is None:
                return _Place(clean, annotation, info, owner, False)
            annotation = member
            continue
        if models and segment in models[0].model_fields:
            info = models[0].model_fields[segment]
            annotation = info.annotation
            owner = [*clean, segment]
        elif get_origin(annotation) in (dict, list, tuple):
            annotation = get_args(annotation)[-1] if get_args(annotation) else Any
        else:
            return _Place(clean, annotation, info, owner, False)
        clean.append(segment)
    return _Place(clean, annotation, info, owner, True)


def _number(value: Any) -> Any:
    """1.0 -> 1 in messages: 'must be > 0', not 'must be > 0.0'."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


_PROBLEMS = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "string_too_short": "must not be empty",
    "string_unicode": "must be valid Unicode text (a lone surrogate such as \\ud83d is not)",
    "string_too_long": "must have at most {max_length} characters",
    "too_long": "must have at most {max_length} items",
    "string_pattern_mismatch": "has characters that are not allowed",
    "literal_error": "must be one of {expected}",
    "list_type": "must be a list, e.g. [1, 2, 4]",
    "tuple_type": "must be a list",
    "dict_type": "must be a mapping (key: value)",
    "model_type": "must be a mapping (key: value)",
    "model_attributes_type": "must be a mapping (key: value)",
    "missing": "is required",
    "value_error": "{error}",
}


def _shown(value: Any, limit: int = 60) -> str:
    """A value as it appears in an error line: its repr, cut short (a pasted book must not flood the line)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def render(err: ValidationError, root: type[BaseModel], source: str, prefix: Sequence[str] = ()) -> UserError:
    """The first pydantic error as one UserError; further problems are only counted."""
    errors = err.errors()
    first = errors[0]
    loc, kind, value = first["loc"], first["type"], first["input"]
    more = len({dotted(_walk(root, e["loc"]).loc) for e in errors}) - 1
    tail = f" ({more} more problem{'s' * (more > 1)} after this one)" if more > 0 else ""
    pre = list(prefix)
    if kind == "extra_forbidden":
        parent = _walk(root, loc[:-1])
        keys = list(unwrap_optional(parent.annotation).model_fields)
        return UserError(dotted([*pre, *parent.loc, loc[-1]]), f"unknown key '{loc[-1]}'",
                         suggest(str(loc[-1]), keys, "valid keys here") + tail, source)
    if loc and loc[-1] == "[key]":
        return UserError(dotted([*pre, *loc[:-2]]), f"key {loc[-2]!r} is not a participant index",
                         "use participant numbers 0..n-1 as keys, e.g. {0: {device: raspberry-pi-5}}" + tail, source)
    if kind == "union_tag_invalid":  # an unknown kind of a tagged union
        tags = [kind_of(m) for m in models_at(_walk(root, loc).annotation)]
        return UserError(dotted([*pre, *loc, "kind"]), f"unknown kind {first['ctx']['tag']!r}",
                         suggest(str(first["ctx"]["tag"]), tags, "valid kinds") + tail, source)
    place = _walk(root, loc)
    if not place.complete:  # the value matched none of a union's members
        problem = "invalid value"
    else:
        ctx = {k: _number(v) for k, v in first.get("ctx", {}).items()}
        problem = _PROBLEMS.get(kind, first["msg"]).format(**ctx)
    if not isinstance(value, (dict, list)):
        problem += f" (got {_shown(value)})"
    fix = f"{dotted([*pre, *place.owner])} is {place.info.description}" if place.info and place.info.description \
        else ""
    if get_origin(place.annotation) is Literal and isinstance(value, str):
        match = nearest(value, get_args(place.annotation))
        fix = f"did you mean '{match}'?" if match else fix
    return UserError(dotted([*pre, *place.loc]), problem, fix + tail, source)
