"""The scenario schema (docs/ARCHITECTURE.md): pydantic sections, loading, dotted overrides and the
run identity. Errors are one line each (fedsim.common.schema renders them)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import Field, PrivateAttr, Strict, field_validator

from fedsim.common.errors import UserError
from fedsim.common.schema import Section, models_at, suggest, unwrap_optional, validate
from fedsim.fedattn.partition import SCHEMES
from fedsim.fedattn.schedule import PHASES, PLACEMENTS
from fedsim.models.catalog import MODEL_NAMES
from fedsim.sim.network import TOPOLOGIES
from fedsim.sim.profiles import load_library
from fedsim.workloads.registry import WORKLOADS, TaskSection

# Keys that say where results go or how to sweep; they never change what a single run computes.
NOT_IN_HASH = ("output_dir", "sweep")
# A sweep axis may not move runs out of the sweep's own results directory or nest sweeps.
NOT_SWEEPABLE = ("name", "output_dir", "sweep")

# How the prompt becomes tokens (fedsim.experiment.prompt): the authors' one pass over the whole text, or
# each piece on its own.
TOKENIZATIONS = ("whole_prompt", "per_piece")

# YAML gives participant indices as ints, JSON (resolved configs) as strings: accept both as dict keys.
ParticipantIndex = Annotated[int, Strict(False), Field(ge=0)]


def _one_of(choices: Sequence[str]) -> str:
    return ", ".join(choices[:-1]) + f" or {choices[-1]}"


class ModelSection(Section):
    name: Literal[MODEL_NAMES] = Field("smollm2-135m-instruct", description=_one_of(MODEL_NAMES))
    kv_bytes_per_element: float = Field(
        2.0, gt=0, description="bytes per K/V element on the wire, e.g. 2 for fp16/bf16"
    )


class PartitionSection(Section):
    scheme: Literal[SCHEMES] = Field("contiguous", description="how prompt pieces are split: " + _one_of(SCHEMES))
    tokenization: Literal[TOKENIZATIONS] = Field(
        "whole_prompt", description="whole_prompt (tokenise once, cut at per-piece token counts: the authors') "
        "or per_piece (tokenise each piece alone and concatenate)"
    )


class ParticipantOverride(Section):
    device: str | None = Field(None, min_length=1, description="a device profile name (see `fedsim profiles`)")


class ParticipantsSection(Section):
    n: int = Field(4, ge=1, description="the number of participants, an integer >= 1")
    device: str = Field("jetson-orin-nano", min_length=1, description="a device profile name (`fedsim profiles`)")
    overrides: dict[ParticipantIndex, ParticipantOverride] = Field(
        default_factory=dict, description="per-participant settings, e.g. {0: {device: raspberry-pi-5}}"
    )


class LinkOverride(Section):
    link: str | None = Field(None, min_length=1, description="a link profile name (see `fedsim profiles`)")
    uplink_mbps: float | None = Field(None, gt=0, description="the uplink bandwidth in Mbit/s, a number > 0")
    downlink_mbps: float | None = Field(None, gt=0, description="the downlink bandwidth in Mbit/s, a number > 0")
    latency_ms: float | None = Field(None, ge=0, description="the one-way latency in ms, a number >= 0")
    jitter_ms: float | None = Field(None, ge=0, description="the latency jitter (std) in ms, a number >= 0")


class NetworkSection(Section):
    topology: Literal[TOPOLOGIES] = Field("star", description=_one_of(TOPOLOGIES))
    link: str = Field("wifi6", min_length=1, description="a link profile name (see `fedsim profiles`)")
    overrides: dict[ParticipantIndex, LinkOverride] = Field(
        default_factory=dict, description="per-participant link settings, e.g. {1: {uplink_mbps: 20}}"
    )


class ScheduleSection(Section):
    H: int = Field(4, ge=1, description="the sync interval in transformer blocks, an integer >= 1")
    phase: Literal[PHASES] = Field(
        "first", description="which block of each H-window syncs: first (authors' code) or last (paper)"
    )
    placement: Literal[PLACEMENTS] = Field("uniform", description=_one_of(PLACEMENTS))
    layers: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, description="an explicit list of sync layer indices, or null to derive them from H"
    )
    publisher_H: int | None = Field(
        None, ge=1, description="the publisher's extra-broadcast interval (any integer >= 1, e.g. 9 with H: 8) or null"
    )
    r_comp: float = Field(1.0, gt=0, le=1, description="the retention ratio of sparse attention, in (0, 1]")
    r_comm: float = Field(1.0, gt=0, le=1, description="the retention ratio of sparse K/V sync, in (0, 1]")
    r_comp_publisher: float | None = Field(
        None, gt=0, le=1, description="the publisher's own r_comp, in (0, 1], or null for the same as r_comp"
    )
    r_comm_publisher: float | None = Field(
        None, gt=0, le=1, description="the publisher's own r_comm, in (0, 1], or null for the same as r_comm"
    )
    publisher_dense: bool = Field(
        False, description="shorthand for r_comp_publisher: 1.0 and r_comm_publisher: 1.0 (true or false)"
    )


class DecodingSection(Section):
    max_new_tokens: int = Field(32, ge=0, description="the number of tokens to generate, an integer >= 0")
    greedy: bool = Field(True, description="true for argmax decoding, false to sample")
    temperature: float = Field(0.2, gt=0, description="the sampling temperature, a number > 0")
    top_k: int = Field(20, ge=0, description="top-k sampling cut-off, an integer >= 0 (0 = off)")
    top_p: float = Field(0.9, gt=0, le=1, description="nucleus sampling mass, in (0, 1]")
    sampler: Literal["authors", "transformers"] = Field(  # fedsim.fedattn.sampling.SAMPLERS
        "authors", description="the top-k/top-p rule when sampling: authors or transformers (docs/authors.md)"
    )
    responder: Literal["publisher"] | Annotated[int, Field(ge=0)] = Field(
        "publisher", description="who generates the answer: 'publisher' or a participant index"
    )


class Dropout(Section):
    participant: int | None = Field(None, ge=0, description="the participant that drops out")
    at_s: float | None = Field(None, ge=0, description="the simulated time of the dropout in seconds")
    probability: float | None = Field(None, ge=0, le=1, description="a per-participant dropout probability")


class FaultsSection(Section):
    deadline_s: float | None = Field(None, gt=0, description="the K/V arrival deadline in seconds, or null")
    dropout: Dropout | None = Field(
        None, description="{participant: 2, at_s: 0.1} or {probability: 0.2}, or null for none"
    )


class EngineSection(Section):
    overlap: bool = Field(False, description="whether compute overlaps the K/V exchange")
    trace: bool = Field(False, description="whether to record an event trace")


class Scenario(Section):
    """One validated scenario; `sweep` lists grid axes, every other key describes a single run."""

    name: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                      description="the results folder name: letters, digits, '.', '_' and '-'")
    seed: int = Field(0, ge=0, description="the random seed, an integer >= 0")
    model: ModelSection = Field(default_factory=ModelSection, description="a mapping, e.g. {name: qwen2.5-0.5b}")
    task: TaskSection = Field(default_factory=WORKLOADS["gsm8k"].params,
                              description="a mapping, e.g. {kind: gsm8k, shots: 4}")
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
    profiles: list[str] = Field(
        default_factory=list, description="extra device/link profile files (`devices:` and `links:` tables, as "
        "`fedsim calibrate` writes them), relative to the scenario file")

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

    def profile_files(self) -> list[Path]:
        """`profiles`, relative paths taken from the scenario file's folder."""
        here = Path(self._source).parent if Path(self._source).is_file() else Path()
        return [Path(p) if Path(p).is_absolute() else here / p for p in self.profiles]

    def resolved(self) -> dict[str, Any]:
        """Every key with its default filled in, as plain JSON types (what config.json stores)."""
        return self.model_dump(mode="json")


def config_hash(resolved: Mapping[str, Any]) -> str:
    """12 hex chars of sha256 over canonical JSON: the identity of a run (its results folder name)."""
    identity = {k: v for k, v in resolved.items() if k not in NOT_IN_HASH}
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def validate_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    """Validate a parsed scenario (a dict); every problem becomes one UserError line."""
    scenario = validate(Scenario, data, source)
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
        raise UserError(key or "''", "empty key segment", "write dotted keys like schedule.H", source)
    segments = key.split(".")
    annotation: Any = Scenario
    for i, segment in enumerate(segments):
        annotation = unwrap_optional(annotation)
        here = ".".join(segments[: i + 1])
        if models := models_at(annotation):  # a section, or any of the task kinds
            owners = [m for m in models if segment in m.model_fields]
            if not owners:
                keys = dict.fromkeys(k for m in models for k in m.model_fields)
                raise UserError(here, f"unknown key '{segment}'", suggest(segment, keys, "valid keys here"), source)
            annotation = owners[0].model_fields[segment].annotation
        elif get_origin(annotation) is dict:
            if not segment.isdigit():
                raise UserError(here, f"'{segment}' is not a participant index",
                                "use participant numbers, e.g. participants.overrides.0.device", source)
            segments[i] = str(int(segment))  # same key as the resolved config's "0"
            annotation = get_args(annotation)[1]
        else:
            parent = ".".join(segments[:i])
            raise UserError(here, f"'{parent}' holds a single value, not a mapping", f"set '{parent}' itself", source)
    return segments


def _check_semantics(s: Scenario) -> None:
    """Cross-field rules pydantic cannot express per field; raises the first violation."""
    try:
        _check_cross_fields(s)
    except UserError as err:
        raise err.at(s.source) from None


def _check_cross_fields(s: Scenario) -> None:
    n = s.participants.n
    last = f"participants are numbered 0..{n - 1} (participants.n = {n})"
    for section in ("participants", "network"):
        for index in getattr(s, section).overrides:
            if index >= n:
                raise UserError(f"{section}.overrides.{index}", "no such participant", last)
    if isinstance(s.decoding.responder, int) and s.decoding.responder >= n:
        raise UserError("decoding.responder", f"no such participant (got {s.decoding.responder})", last)
    s.task.check()
    drop = s.faults.dropout
    if drop is not None:
        fix = "write {participant: 2, at_s: 0.1} or {probability: 0.2}"
        if (drop.participant is None) == (drop.probability is None):
            raise UserError("faults.dropout", "give exactly one of participant or probability", fix)
        if drop.participant is not None and drop.at_s is None:
            raise UserError("faults.dropout.at_s", "missing: when does the participant drop out?", fix)
        if drop.probability is not None and drop.at_s is not None:
            raise UserError("faults.dropout.at_s", "only applies to a named participant", fix)
        if drop.participant is not None and drop.participant >= n:
            raise UserError("faults.dropout.participant", f"no such participant (got {drop.participant})", last)
    for key, values in s.sweep.items():
        try:
            path = check_dotted_key(key, "")
        except UserError as err:
            raise UserError(f"sweep.{err.field}", err.problem, err.fix) from None
        if path[0] in NOT_SWEEPABLE:
            raise UserError(f"sweep.{key}", f"'{path[0]}' cannot be swept",
                            "sweep over run settings such as schedule.H or participants.n")
        if not values:
            raise UserError(f"sweep.{key}", "needs at least one value", "e.g. sweep: {schedule.H: [1, 2, 4]}")
    _check_profile_names(s)


def _check_profile_names(s: Scenario) -> None:
    """Unknown device/link names fail here, before any run starts, with the nearest known name."""
    devices, links = load_library(s.profile_files())
    known = {"device": list(devices), "link": list(links)}
    used = [("device", "participants.device", s.participants.device), ("link", "network.link", s.network.link)]
    used += [("device", f"participants.overrides.{i}.device", o.device) for i, o in s.participants.overrides.items()]
    used += [("link", f"network.overrides.{i}.link", o.link) for i, o in s.network.overrides.items()]
    for kind, field, name in used:
        if name is not None and name not in known[kind]:
            raise UserError(field, f"unknown {kind} profile '{name}'",
                            suggest(name, known[kind], f"known {kind}s (see `fedsim profiles`)"))
