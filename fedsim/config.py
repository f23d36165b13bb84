"""Scenario schema (docs/ARCHITECTURE.md) as pydantic models, with one-line, fixable error messages.

Users write scenarios by hand, so every mistake must come back as a single line that names the file, the
dotted field, what is wrong and how to fix it, instead of pydantic's multi-line report.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import types
from collections.abc import Iterable, Mapping, Sequence
from inspect import isclass
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, Strict, ValidationError, field_validator
from pydantic.fields import FieldInfo

from fedsim.profiles import load_devices, load_links
from fedsim.workloads.retrieval import DEFAULTS as RETRIEVAL
from fedsim.workloads.retrieval import FILLERS as RETRIEVAL_FILLERS
from fedsim.workloads.retrieval import NAMES as RETRIEVAL_NAMES

# Keys that say where results go or how to sweep; they never change what a single run computes.
NOT_IN_HASH = ("output_dir", "sweep")
# A sweep axis may not move runs out of the sweep's own results directory or nest sweeps.
NOT_SWEEPABLE = ("name", "output_dir", "sweep")

# YAML gives participant indices as ints, JSON (resolved configs) as strings: accept both as dict keys.
ParticipantIndex = Annotated[int, Strict(False), Field(ge=0)]


class ScenarioError(ValueError):
    """A user mistake in a scenario, rendered as one line: '<source>: <field>: <problem>; <fix>'."""

    def __init__(self, source: str, field: str, problem: str, fix: str = "") -> None:
        super().__init__(source, field, problem, fix)  # args == init params, so it pickles across processes
        self.source, self.field, self.problem, self.fix = source, field, problem, fix

    def __str__(self) -> str:
        parts = [p for p in (self.source, self.field, self.problem) if p]
        return ": ".join(parts) + (f"; {self.fix}" if self.fix else "")


class _Section(BaseModel):
    # strict: `H: "4"` or `greedy: yes` are typos to report, not values to coerce silently.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ModelSection(_Section):
    name: Literal["smollm2-135m-instruct", "qwen2.5-0.5b", "tiny-random"] = Field(
        "smollm2-135m-instruct", description="smollm2-135m-instruct, qwen2.5-0.5b or tiny-random (tests)"
    )
    kv_bytes_per_element: float = Field(
        2.0, gt=0, description="bytes per K/V element on the wire, e.g. 2 for fp16/bf16"
    )


class _TaskBase(_Section):
    kind: str  # each workload narrows it to its own name (and this keeps `kind` first in resolved configs)
    chat: bool = Field(False, description="whether to wrap the prompt in the model's chat template")


class Gsm8kTask(_TaskBase):
    kind: Literal["gsm8k"] = "gsm8k"
    # 8 public exemplars, used leave-one-out: question i is exemplar i, the prompt uses up to 7 others
    shots: int = Field(7, ge=0, le=7, description="the number of in-context exemplars, 0..7")
    question_index: int = Field(0, ge=0, le=7, description="which of the 8 exemplar questions is asked, 0..7")


class RetrievalTask(_TaskBase):
    kind: Literal["retrieval"]
    n_facts: int = Field(RETRIEVAL["n_facts"], ge=1, le=len(RETRIEVAL_NAMES),
                         description=f"the number of facts (1 queried + distractors), 1..{len(RETRIEVAL_NAMES)}")
    fact_piece: Literal["random"] | Annotated[int, Field(ge=0)] = Field(
        RETRIEVAL["fact_piece"], description="the context piece holding the queried fact: 'random' or an index"
    )
    n_context_pieces: int = Field(RETRIEVAL["n_context_pieces"], ge=1, le=64,
                                  description="the number of context pieces, 1..64")
    filler_sentences: int = Field(RETRIEVAL["filler_sentences"], ge=0, le=len(RETRIEVAL_FILLERS),
                                  description=f"filler sentences per context piece, 0..{len(RETRIEVAL_FILLERS)}")


class TextTask(_TaskBase):
    kind: Literal["text"]
    text: str = Field(min_length=1, description="the prompt text shared out as context")
    question: str | None = Field(None, description="an optional question, held by the task publisher")
    answer: str | None = Field(None, description="an optional gold answer to score the generation against")


class ShareGptTask(_TaskBase):
    kind: Literal["sharegpt"]


# `kind` picks the model, so each workload accepts exactly its own parameters.
TaskSection = Annotated[Gsm8kTask | RetrievalTask | TextTask | ShareGptTask, Field(discriminator="kind")]


class PartitionSection(_Section):
    scheme: Literal["contiguous", "question_exclusive", "exemplars", "exemplars_question_exclusive"] = Field(
        "contiguous",
        description="how prompt pieces are split: contiguous, question_exclusive, exemplars or "
        "exemplars_question_exclusive",
    )


class ParticipantOverride(_Section):
    device: str | None = Field(None, min_length=1, description="a device profile name (see `fedsim profiles`)")


class ParticipantsSection(_Section):
    n: int = Field(4, ge=1, description="the number of participants, an integer >= 1")
    device: str = Field("jetson-orin-nano", min_length=1, description="a device profile name (`fedsim profiles`)")
    overrides: dict[ParticipantIndex, ParticipantOverride] = Field(
        default_factory=dict, description="per-participant settings, e.g. {0: {device: raspberry-pi-5}}"
    )


class LinkOverride(_Section):
    link: str | None = Field(None, min_length=1, description="a link profile name (see `fedsim profiles`)")
    uplink_mbps: float | None = Field(None, gt=0, description="the uplink bandwidth in Mbit/s, a number > 0")
    downlink_mbps: float | None = Field(None, gt=0, description="the downlink bandwidth in Mbit/s, a number > 0")
    latency_ms: float | None = Field(None, ge=0, description="the one-way latency in ms, a number >= 0")
    jitter_ms: float | None = Field(None, ge=0, description="the latency jitter (std) in ms, a number >= 0")


class NetworkSection(_Section):
    topology: Literal["star", "mesh", "ring"] = Field("star", description="star, mesh or ring")
    link: str = Field("wifi6", min_length=1, description="a link profile name (see `fedsim profiles`)")
    overrides: dict[ParticipantIndex, LinkOverride] = Field(
        default_factory=dict, description="per-participant link settings, e.g. {1: {uplink_mbps: 20}}"
    )


class ScheduleSection(_Section):
    H: int = Field(4, ge=1, description="the sync interval in transformer blocks, an integer >= 1")
    phase: Literal["first", "last"] = Field(
        "first", description="which block of each H-window syncs: first (authors' code) or last (paper)"
    )
    placement: Literal["uniform", "shallow_half", "deep_half", "progressive", "regressive", "none"] = Field(
        "uniform", description="uniform, shallow_half, deep_half, progressive, regressive or none"
    )
    layers: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, description="an explicit list of sync layer indices, or null to derive them from H"
    )
    publisher_H: int | None = Field(None, ge=1, description="the publisher-broadcast interval, an integer >= 1 or null")
    r_comp: float = Field(1.0, gt=0, le=1, description="the retention ratio of sparse attention, in (0, 1]")
    r_comm: float = Field(1.0, gt=0, le=1, description="the retention ratio of sparse K/V sync, in (0, 1]")
    publisher_dense: bool = Field(False, description="whether the publisher keeps dense attention")


class DecodingSection(_Section):
    max_new_tokens: int = Field(32, ge=0, description="the number of tokens to generate, an integer >= 0")
    greedy: bool = Field(True, description="true for argmax decoding, false to sample")
    temperature: float = Field(1.0, gt=0, description="the sampling temperature, a number > 0")
    top_k: int = Field(0, ge=0, description="top-k sampling cut-off, an integer >= 0 (0 = off)")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass, in (0, 1]")
    responder: Literal["publisher"] | Annotated[int, Field(ge=0)] = Field(
        "publisher", description="who generates the answer: 'publisher' or a participant index"
    )


class Dropout(_Section):
    participant: int | None = Field(None, ge=0, description="the participant that drops out")
    at_s: float | None = Field(None, ge=0, description="the simulated time of the dropout in seconds")
    probability: float | None = Field(None, ge=0, le=1, description="a per-participant dropout probability")


class FaultsSection(_Section):
    deadline_s: float | None = Field(None, gt=0, description="the K/V arrival deadline in seconds, or null")
    dropout: Dropout | None = Field(
        None, description="{participant: 2, at_s: 0.1} or {probability: 0.2}, or null for none"
    )


class EngineSection(_Section):
    overlap: bool = Field(False, description="whether compute overlaps the K/V exchange")
    trace: bool = Field(False, description="whether to record an event trace")


class Scenario(_Section):
    """One validated scenario; `sweep` lists grid axes, every other key describes a single run."""

    name: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                      description="the results folder name: letters, digits, '.', '_' and '-'")
    seed: int = Field(0, ge=0, description="the random seed, an integer >= 0")
    model: ModelSection = Field(default_factory=ModelSection, description="a mapping, e.g. {name: qwen2.5-0.5b}")
    task: TaskSection = Field(default_factory=Gsm8kTask, description="a mapping, e.g. {kind: gsm8k, shots: 8}")
    partition: PartitionSection = Field(default_factory=PartitionSection, description="a mapping")
    participants: ParticipantsSection = Field(default_factory=ParticipantsSection, description="a mapping")
    network: NetworkSection = Field(default_factory=NetworkSection, description="a mapping")
    schedule: ScheduleSection = Field(default_factory=ScheduleSection, description="a mapping, e.g. {H: 4}")
    decoding: DecodingSection = Field(default_factory=DecodingSection, description="a mapping")
    faults: FaultsSection = Field(default_factory=FaultsSection, description="a mapping")
    engine: EngineSection = Field(default_factory=EngineSection, description="a mapping")
    sweep: dict[str, list[Any]] = Field(
        default_factory=dict, description="a mapping of dotted keys to value lists, e.g. {schedule.H: [1, 2, 4]}"
    )
    output_dir: str = Field("results", min_length=1, description="the folder that receives results/<name>/")

    _source: str = PrivateAttr("<scenario>")

    @field_validator("task", mode="before")
    @classmethod
    def _default_task_kind(cls, value: Any) -> Any:
        """`task: {shots: 4}` means gsm8k, the default kind."""
        return {"kind": "gsm8k", **value} if isinstance(value, Mapping) and "kind" not in value else value

    @property
    def source(self) -> str:
        """Where this scenario came from (a file name), used to label errors."""
        return self._source

    def resolved(self) -> dict[str, Any]:
        """Every key with its default filled in, as plain JSON types (what config.json stores)."""
        return self.model_dump(mode="json")


def config_hash(resolved: Mapping[str, Any]) -> str:
    """12 hex chars of sha256 over canonical JSON: the identity of a run (its results folder name)."""
    identity = {k: v for k, v in resolved.items() if k not in NOT_IN_HASH}
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` as a number (YAML 1.1 wants `1.0e-3`; users do not)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """Parse YAML text the way scenario files and `--set` values are parsed."""
    return yaml.load(text, Loader=_YamlLoader)  # safe: _YamlLoader is a SafeLoader


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file; FileNotFoundError propagates, everything else is a ScenarioError."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except IsADirectoryError:
        raise ScenarioError(source, "", "is a directory", "give the path of a scenario .yaml file") from None
    except UnicodeDecodeError:
        raise ScenarioError(source, "", "is not UTF-8 text", "save the scenario as a UTF-8 YAML file") from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as err:
        raise _yaml_error(source, err) from None
    if data is None:
        raise ScenarioError(source, "", "the file is empty", "write a YAML mapping, e.g. `schedule: {H: 4}`, "
                            "or `{}` for all defaults")
    return validate_scenario(data, source=source)


def validate_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    """Validate a parsed scenario (a dict); every problem becomes one ScenarioError line."""
    if not isinstance(data, Mapping):
        raise ScenarioError(source, "", f"the top level must be a mapping of keys (got {type(data).__name__})",
                            "write `key: value` lines, e.g. `schedule: {H: 4}`")
    try:
        scenario = Scenario.model_validate(dict(data))
    except ValidationError as err:
        raise _from_validation_error(err, source) from None
    scenario._source = source
    _check_semantics(scenario)
    return scenario


def with_overrides(scenario: Scenario, overrides: Mapping[str, Any], source: str | None = None) -> Scenario:
    """A new, validated scenario with dotted keys set, e.g. {"schedule.H": 4}; errors are labelled `source`."""
    label = scenario.source if source is None else source
    # Start from what the user wrote, not the resolved defaults: setting task.kind must not drag along
    # the previous kind's defaulted parameters.
    data = scenario.model_dump(mode="json", exclude_unset=True)
    for key, value in overrides.items():
        path = check_dotted_key(key, label)
        node = data
        for segment in path[:-1]:
            if node.get(segment) is None:  # an unset section (e.g. faults.dropout) or a new override entry
                node[segment] = {}
            node = node[segment]
        node[path[-1]] = value
    result = validate_scenario(data, source=label)
    result._source = scenario.source
    return result


def check_dotted_key(key: str, source: str) -> list[str]:
    """Split a dotted key and check it names a scenario field (an unknown key errors like one in YAML)."""
    if not key or any(not s for s in key.split(".")):
        raise ScenarioError(source, key or "''", "empty key segment", "write dotted keys like schedule.H")
    segments = key.split(".")
    annotation: Any = Scenario
    for i, segment in enumerate(segments):
        annotation = _unwrap_optional(annotation)
        here = ".".join(segments[: i + 1])
        if models := _models(annotation):  # a section, or any of the task kinds
            owners = [m for m in models if segment in m.model_fields]
            if not owners:
                keys = dict.fromkeys(k for m in models for k in m.model_fields)
                raise ScenarioError(source, here, f"unknown key '{segment}'",
                                    _suggest(segment, keys, "valid keys here"))
            annotation = owners[0].model_fields[segment].annotation
        elif get_origin(annotation) is dict:
            if not segment.isdigit():
                raise ScenarioError(source, here, f"'{segment}' is not a participant index",
                                    "use participant numbers, e.g. participants.overrides.0.device")
            segments[i] = str(int(segment))  # same key as the resolved config's "0"
            annotation = get_args(annotation)[1]
        else:
            parent = ".".join(segments[:i])
            raise ScenarioError(source, here, f"'{parent}' holds a single value, not a mapping",
                                f"set '{parent}' itself")
    return segments


def _yaml_error(source: str, err: yaml.YAMLError) -> ScenarioError:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    if mark is None:
        return ScenarioError(source, "", f"invalid YAML: {problem}", "check the file's syntax")
    line = mark.line + 1
    return ScenarioError(source, f"line {line}", f"invalid YAML: {problem} (column {mark.column + 1})",
                         f"check indentation, ':' after keys and quoting on or just before line {line}")


def _unwrap_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _is_model(annotation: Any) -> bool:
    return isclass(annotation) and issubclass(annotation, BaseModel)


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The section model(s) at a schema position: one, the members of the task-kind union, or none."""
    members = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    return [m for m in members if _is_model(m)]


class _Place(NamedTuple):
    loc: list[str | int]  # the error location as the user wrote it (no pydantic union tags)
    annotation: Any  # the schema type there
    info: FieldInfo | None  # the innermost named field on the way (its description is the fix hint)
    owner: list[str | int]  # the location of that field
    complete: bool  # False if the location ended in tags of a union none of whose members matched


def _walk(loc: Sequence[str | int]) -> _Place:
    """Follow a pydantic error location through the schema, dropping tags such as 'retrieval' in
    ('task', 'retrieval', 'n_facts') or "literal['publisher']"."""
    annotation: Any = Scenario
    info: FieldInfo | None = None
    clean: list[str | int] = []
    owner: list[str | int] = []
    for segment in loc:
        annotation = _unwrap_optional(annotation)
        models = _models(annotation)
        if len(models) > 1:  # the task-kind union: pydantic puts the kind in the location
            member = next((m for m in models if get_args(m.model_fields["kind"].annotation) == (segment,)), None)
            if member is None:
                return _Place(clean, annotation, info, owner, False)
            annotation = member
            continue
        if models and segment in models[0].model_fields:
            info = models[0].model_fields[segment]
            annotation = info.annotation
            owner = [*clean, segment]
        elif get_origin(annotation) in (dict, list):
            annotation = get_args(annotation)[-1]
        else:
            return _Place(clean, annotation, info, owner, False)
        clean.append(segment)
    return _Place(clean, annotation, info, owner, True)


def _nearest(word: str, choices: Iterable[str]) -> str | None:
    lowered = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


def _suggest(word: str, choices: Iterable[str], listing: str) -> str:
    """'did you mean X?' for the nearest choice (case-insensitive), else the list of valid choices."""
    choices = list(choices)
    match = _nearest(word, choices)
    return f"did you mean '{match}'?" if match else f"{listing}: {', '.join(choices)}"


def _dotted(loc: Sequence[str | int]) -> str:
    return ".".join(str(s) for s in loc)


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
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "string_too_short": "must not be empty",
    "string_pattern_mismatch": "has characters that are not allowed",
    "literal_error": "must be one of {expected}",
    "list_type": "must be a list, e.g. [1, 2, 4]",
    "dict_type": "must be a mapping (key: value)",
    "model_type": "must be a mapping (key: value)",
    "model_attributes_type": "must be a mapping (key: value)",
    "missing": "is required",
}


def _from_validation_error(err: ValidationError, source: str) -> ScenarioError:
    """The first pydantic error as one line; further problems are only counted."""
    errors = err.errors()
    first = errors[0]
    loc, kind, value = first["loc"], first["type"], first["input"]
    more = len({_dotted(_walk(e["loc"]).loc) for e in errors}) - 1
    tail = f" ({more} more problem{'s' * (more > 1)} after this one)" if more > 0 else ""
    if kind == "extra_forbidden":
        parent = _walk(loc[:-1])
        keys = list(_unwrap_optional(parent.annotation).model_fields)
        return ScenarioError(source, _dotted([*parent.loc, loc[-1]]), f"unknown key '{loc[-1]}'",
                             _suggest(str(loc[-1]), keys, "valid keys here") + tail)
    if loc and loc[-1] == "[key]":
        return ScenarioError(source, _dotted(loc[:-2]), f"key {loc[-2]!r} is not a participant index",
                             "use participant numbers 0..n-1 as keys, e.g. {0: {device: raspberry-pi-5}}" + tail)
    if kind == "union_tag_invalid":  # an unknown task kind
        tags = [get_args(m.model_fields["kind"].annotation)[0] for m in _models(_walk(loc).annotation)]
        return ScenarioError(source, _dotted([*loc, "kind"]), f"unknown kind {first['ctx']['tag']!r}",
                             _suggest(str(first["ctx"]["tag"]), tags, "valid kinds") + tail)
    place = _walk(loc)
    if not place.complete:  # the value matched none of a union's members
        problem = "invalid value"
    else:
        ctx = {k: _number(v) for k, v in first.get("ctx", {}).items()}
        problem = _PROBLEMS.get(kind, first["msg"]).format(**ctx)
    if not isinstance(value, (dict, list)):
        problem += f" (got {value!r})"
    fix = f"{_dotted(place.owner)} is {place.info.description}" if place.info and place.info.description else ""
    if get_origin(place.annotation) is Literal and isinstance(value, str):
        match = _nearest(value, get_args(place.annotation))
        fix = f"did you mean '{match}'?" if match else fix
    return ScenarioError(source, _dotted(place.loc), problem, fix + tail)


def _check_semantics(s: Scenario) -> None:
    """Cross-field rules pydantic cannot express per field; raises the first violation."""
    src, n = s.source, s.participants.n
    last = f"participants are numbered 0..{n - 1} (participants.n = {n})"
    for section in ("participants", "network"):
        for index in getattr(s, section).overrides:
            if index >= n:
                raise ScenarioError(src, f"{section}.overrides.{index}", "no such participant", last)
    if isinstance(s.decoding.responder, int) and s.decoding.responder >= n:
        raise ScenarioError(src, "decoding.responder", f"no such participant (got {s.decoding.responder})", last)
    task = s.task
    if isinstance(task, RetrievalTask) and task.fact_piece != "random" and task.fact_piece >= task.n_context_pieces:
        raise ScenarioError(src, "task.fact_piece", f"no such context piece (got {task.fact_piece})",
                            f"pieces are numbered 0..{task.n_context_pieces - 1} (task.n_context_pieces)")
    drop = s.faults.dropout
    if drop is not None:
        fix = "write {participant: 2, at_s: 0.1} or {probability: 0.2}"
        if (drop.participant is None) == (drop.probability is None):
            raise ScenarioError(src, "faults.dropout", "give exactly one of participant or probability", fix)
        if drop.participant is not None and drop.at_s is None:
            raise ScenarioError(src, "faults.dropout.at_s", "missing: when does the participant drop out?", fix)
        if drop.probability is not None and drop.at_s is not None:
            raise ScenarioError(src, "faults.dropout.at_s", "only applies to a named participant", fix)
        if drop.participant is not None and drop.participant >= n:
            raise ScenarioError(src, "faults.dropout.participant", f"no such participant (got {drop.participant})",
                                last)
    for key, values in s.sweep.items():
        try:
            path = check_dotted_key(key, src)
        except ScenarioError as err:
            raise ScenarioError(src, f"sweep.{err.field}", err.problem, err.fix) from None
        if path[0] in NOT_SWEEPABLE:
            raise ScenarioError(src, f"sweep.{key}", f"'{path[0]}' cannot be swept",
                                "sweep over run settings such as schedule.H or participants.n")
        if not values:
            raise ScenarioError(src, f"sweep.{key}", "needs at least one value", "e.g. sweep: {schedule.H: [1, 2, 4]}")
    _check_profile_names(s)


def _check_profile_names(s: Scenario) -> None:
    """Unknown device/link names fail here, before any run starts, with the nearest known name."""
    known = {"device": list(load_devices()), "link": list(load_links())}
    used = [("device", "participants.device", s.participants.device), ("link", "network.link", s.network.link)]
    used += [("device", f"participants.overrides.{i}.device", o.device) for i, o in s.participants.overrides.items()]
    used += [("link", f"network.overrides.{i}.link", o.link) for i, o in s.network.overrides.items()]
    for kind, field, name in used:
        if name is not None and name not in known[kind]:
            raise ScenarioError(s.source, field, f"unknown {kind} profile '{name}'",
                                _suggest(name, known[kind], f"known {kind}s (see `fedsim profiles`)"))
