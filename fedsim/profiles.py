"""Device and link profiles: the hardware numbers the SimPy engine turns into time.

The numbers live in `fedsim/profiles/{devices,links}.yaml`, each with a cited source. They are
validated once, here, so the engine can trust every field (positive rates, efficiency in (0, 1],
...), and the YAML's network units (Mbit/s, ms) are converted once to SI (bytes/s, s).
Every problem is a `ProfileError` with one line naming the profile, the field and the fix.
"""

from __future__ import annotations

import bisect
import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import yaml

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

PRECISIONS = ("fp16", "fp32", "bf16", "int8")
_SEE_LISTING = "(see `run_sim.py profiles`)"
_LINK_YAML_KEYS = ("description", "uplink_mbps", "downlink_mbps", "latency_ms", "jitter_ms",
                   "shared_medium", "source", "note", "rate_trace")
_LINK_YAML_OPTIONAL = ("note", "rate_trace")


class ProfileError(ValueError):
    """A bad profile name, file, key or value; the message is one line that says how to fix it."""


def _did_you_mean(word: str, choices: list[str]) -> str:
    """' did you mean X?' for the closest choice, so a typo costs one glance, not a doc search."""
    close = difflib.get_close_matches(word, choices, n=1)
    return f" did you mean {close[0]!r}?" if close else f" choose one of: {', '.join(choices)}"


def _is_number(value: object) -> bool:
    # bool is an int subclass; `efficiency: yes` must not pass as 1.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _need_text(owner: str, field: str, value: object, fix: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ProfileError(f"{owner}: {field!r} must be a non-empty string ({fix})")


def _need_rate(owner: str, field: str, value: object, unit: str) -> None:
    """A throughput or capacity: > 0; +inf allowed so tests can model an ideal device or link."""
    if not _is_number(value) or not value > 0:
        raise ProfileError(f"{owner}: {field!r} must be a number > 0 in {unit}, got {value!r}")


def _need_duration(owner: str, field: str, value: object) -> None:
    if not _is_number(value) or not (math.isfinite(value) and value >= 0):
        raise ProfileError(f"{owner}: {field!r} must be a finite number >= 0 in seconds, got {value!r}")


@dataclass(frozen=True)
class DeviceProfile:
    """One device's compute/memory roofline plus its per-message software cost."""

    kind: ClassVar[str] = "device"

    name: str
    description: str
    peak_flops: float  # FLOP/s, dense, at `precision`
    precision: str  # one of PRECISIONS
    mem_bandwidth: float  # bytes/s
    mem_bytes: float  # bytes
    efficiency: float  # achieved fraction of peak_flops on transformer layers, (0, 1]
    msg_overhead_s: float  # per-message software overhead (serialisation, syscall, driver)
    source: str  # citation: URL + what was read there
    note: str = ""  # derivations and estimates behind the numbers

    def __post_init__(self) -> None:
        owner = f"device {self.name!r}"
        _need_text(owner, "name", self.name, "profiles are looked up by name")
        _need_text(owner, "description", self.description, "say what hardware and mode this is")
        _need_text(owner, "source", self.source, "cite a URL and the number read there")
        if not isinstance(self.note, str):
            raise ProfileError(f"{owner}: 'note' must be a string, got {self.note!r}")
        if self.precision not in PRECISIONS:
            raise ProfileError(
                f"{owner}: 'precision' must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        _need_rate(owner, "peak_flops", self.peak_flops, "FLOP/s")
        _need_rate(owner, "mem_bandwidth", self.mem_bandwidth, "bytes/s")
        _need_rate(owner, "mem_bytes", self.mem_bytes, "bytes")
        if not _is_number(self.efficiency) or not 0 < self.efficiency <= 1:
            raise ProfileError(f"{owner}: 'efficiency' must be in (0, 1] (achieved fraction of "
                               f"peak_flops), got {self.efficiency!r}")
        _need_duration(owner, "msg_overhead_s", self.msg_overhead_s)

    def compute_time(self, flops: float, bytes_moved: float) -> float:
        """Roofline time (s): the slower of achieved compute and memory traffic.

        Prefill GEMMs are compute-bound; one-token decode reads every weight for little math, so it
        is memory-bound. Taking the max lets one formula cover both.
        """
        return max(flops / (self.peak_flops * self.efficiency), bytes_moved / self.mem_bandwidth)


@dataclass(frozen=True)
class LinkProfile:
    """One network link technology, in SI units (bytes/s, seconds)."""

    kind: ClassVar[str] = "link"

    name: str
    description: str
    uplink_Bps: float  # bytes/s, device -> network
    downlink_Bps: float  # bytes/s, network -> device
    latency_s: float  # one-way, per traversal of the link (device <-> AP / base station / switch)
    jitter_s: float  # standard deviation of latency_s; the engine draws it with its seeded RNG
    shared_medium: bool  # Wi-Fi: one half-duplex channel through the access point, airtime shared
    source: str  # citation: URL + what was read there
    note: str = ""  # derivations and estimates behind the numbers
    rate_trace: tuple[tuple[float, float], ...] = ()  # (time_s, bandwidth factor), times increasing

    def __post_init__(self) -> None:
        owner = f"link {self.name!r}"
        _need_text(owner, "name", self.name, "profiles are looked up by name")
        _need_text(owner, "description", self.description, "say what technology and setting this is")
        _need_text(owner, "source", self.source, "cite a URL and the number read there")
        if not isinstance(self.note, str):
            raise ProfileError(f"{owner}: 'note' must be a string, got {self.note!r}")
        _need_rate(owner, "uplink_Bps", self.uplink_Bps, "bytes/s")
        _need_rate(owner, "downlink_Bps", self.downlink_Bps, "bytes/s")
        _need_duration(owner, "latency_s", self.latency_s)
        _need_duration(owner, "jitter_s", self.jitter_s)
        if not isinstance(self.shared_medium, bool):
            raise ProfileError(f"{owner}: 'shared_medium' must be true or false, got {self.shared_medium!r}")
        # Normalise lists (from YAML or overrides) to tuples so the profile stays hashable.
        object.__setattr__(self, "rate_trace", _checked_trace(owner, self.rate_trace))

    def rate_factor(self, t: float) -> float:
        """Bandwidth multiplier in force at time `t`: piecewise constant, 1.0 before the first point."""
        i = bisect.bisect_right(self.rate_trace, t, key=lambda point: point[0])
        return self.rate_trace[i - 1][1] if i else 1.0


def _checked_trace(owner: str, trace: object) -> tuple[tuple[float, float], ...]:
    fix = "give a list of [time_s, factor] pairs with increasing times >= 0 and factors > 0"
    if not isinstance(trace, (list, tuple)):
        raise ProfileError(f"{owner}: 'rate_trace' must be a list ({fix}), got {trace!r}")
    points: list[tuple[float, float]] = []
    for point in trace:
        ok = isinstance(point, (list, tuple)) and len(point) == 2 and all(map(_is_number, point))
        if not ok or not (math.isfinite(point[0]) and point[0] >= 0):
            raise ProfileError(f"{owner}: bad 'rate_trace' point {point!r} ({fix})")
        if points and point[0] <= points[-1][0]:
            raise ProfileError(f"{owner}: 'rate_trace' times must increase, {point[0]!r} follows "
                               f"{points[-1][0]!r} ({fix})")
        if not (math.isfinite(point[1]) and point[1] > 0):
            raise ProfileError(f"{owner}: 'rate_trace' factor at t={point[0]!r} must be finite and > 0, "
                               f"got {point[1]!r} (model outages with faults, not a zero rate)")
        points.append((float(point[0]), float(point[1])))
    return tuple(points)


Profile = TypeVar("Profile", DeviceProfile, LinkProfile)


def with_overrides(profile: Profile, **fields: Any) -> Profile:
    """A validated copy of `profile` with some fields replaced (scenario overrides, sweeps, tests)."""
    valid = [f.name for f in dataclasses.fields(profile)]
    for key in fields:
        if key not in valid:
            raise ProfileError(f"{profile.kind} {profile.name!r}: unknown field {key!r} to override;"
                               f"{_did_you_mean(key, valid)} (fields are SI: FLOP/s, bytes, bytes/s, s)")
    return dataclasses.replace(profile, **fields)


# ---- loading ---------------------------------------------------------------------------------

def _read_table(path: Path | Traversable, kind: str) -> dict[str, dict[str, Any]]:
    """Parse a profile YAML file into {name: raw fields}, rejecting anything not of that shape."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"cannot read {kind} profiles from {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict) or not data:
        raise ProfileError(f"{path}: expected a non-empty mapping of {kind} name -> fields")
    for name, entry in data.items():
        if not isinstance(name, str) or not isinstance(entry, dict):
            raise ProfileError(f"{path}: {kind} {name!r} must be a name mapping to a table of fields")
    return data


def _check_keys(
    owner: str, entry: Mapping[str, Any], keys: tuple[str, ...], optional: tuple[str, ...]
) -> None:
    """Unknown keys are typos until proven otherwise; missing ones would fail later, less clearly."""
    for key in entry:
        if key not in keys:
            raise ProfileError(f"{owner}: unknown key {key!r};{_did_you_mean(str(key), list(keys))}")
    for key in keys:
        if key not in entry and key not in optional:
            required = ", ".join(k for k in keys if k not in optional)
            raise ProfileError(f"{owner}: missing key {key!r} (required: {required})")


def _yaml_number(owner: str, key: str, value: object) -> float:
    """YAML 1.1 reads `1e12` (no dot, no exponent sign) as a string; accept it as the number meant."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if not _is_number(value):
        raise ProfileError(f"{owner}: {key!r} must be a number, got {value!r}")
    return float(value)


def _device_from_yaml(name: str, entry: Mapping[str, Any]) -> DeviceProfile:
    owner = f"device {name!r}"
    keys = tuple(f.name for f in dataclasses.fields(DeviceProfile) if f.name != "name")
    _check_keys(owner, entry, keys, optional=("note",))
    numeric = ("peak_flops", "mem_bandwidth", "mem_bytes", "efficiency", "msg_overhead_s")
    values = {k: _yaml_number(owner, k, v) if k in numeric else v for k, v in entry.items()}
    return DeviceProfile(name=name, **values)


def _link_from_yaml(name: str, entry: Mapping[str, Any]) -> LinkProfile:
    owner = f"link {name!r}"
    _check_keys(owner, entry, _LINK_YAML_KEYS, optional=_LINK_YAML_OPTIONAL)
    return LinkProfile(
        name=name,
        description=entry["description"],
        uplink_Bps=_yaml_number(owner, "uplink_mbps", entry["uplink_mbps"]) * 1e6 / 8,
        downlink_Bps=_yaml_number(owner, "downlink_mbps", entry["downlink_mbps"]) * 1e6 / 8,
        latency_s=_yaml_number(owner, "latency_ms", entry["latency_ms"]) / 1e3,
        jitter_s=_yaml_number(owner, "jitter_ms", entry["jitter_ms"]) / 1e3,
        shared_medium=entry["shared_medium"],
        source=entry["source"],
        note=entry.get("note", ""),
        rate_trace=entry.get("rate_trace", ()),
    )


def _packaged(filename: str) -> Traversable:
    return resources.files("fedsim") / "profiles" / filename


@cache
def _packaged_devices() -> dict[str, DeviceProfile]:
    return {n: _device_from_yaml(n, e) for n, e in _read_table(_packaged("devices.yaml"), "device").items()}


@cache
def _packaged_links() -> dict[str, LinkProfile]:
    return {n: _link_from_yaml(n, e) for n, e in _read_table(_packaged("links.yaml"), "link").items()}


def load_devices(path: Path | None = None) -> dict[str, DeviceProfile]:
    """Device profiles by name from `path`, or the shipped library (parsed once per process)."""
    if path is None:
        return dict(_packaged_devices())
    return {n: _device_from_yaml(n, e) for n, e in _read_table(Path(path), "device").items()}


def load_links(path: Path | None = None) -> dict[str, LinkProfile]:
    """Link profiles by name from `path`, or the shipped library (parsed once per process)."""
    if path is None:
        return dict(_packaged_links())
    return {n: _link_from_yaml(n, e) for n, e in _read_table(Path(path), "link").items()}


def _lookup(kind: str, name: str, table: Mapping[str, Profile]) -> Profile:
    if name in table:
        return table[name]
    raise ProfileError(f"unknown {kind} {name!r}:{_did_you_mean(str(name), list(table))} {_SEE_LISTING}")


def get_device(name: str, devices: Mapping[str, DeviceProfile] | None = None) -> DeviceProfile:
    """The device profile called `name` (from `devices`, default the shipped library)."""
    return _lookup("device", name, load_devices() if devices is None else devices)


def get_link(name: str, links: Mapping[str, LinkProfile] | None = None) -> LinkProfile:
    """The link profile called `name` (from `links`, default the shipped library)."""
    return _lookup("link", name, load_links() if links is None else links)
