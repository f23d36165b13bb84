"""Device and link profiles: the hardware numbers the SimPy engine turns into time.

The numbers live in `fedsim/sim/data/{devices,links}.yaml`, each with a cited source. They are pydantic
models, validated once on load (positive rates, efficiency in (0, 1], ...), so the engine can trust every
field; errors are one line, rendered like scenario errors. Link files use network units (Mbit/s, ms,
nJ/bit); `mbps`, `ms` and `nj` convert them to SI (bytes/s, s, J/bit), here and nowhere else. The power
and energy-per-bit fields feed fedsim.sim.energy; a profile without them gets NaN energy.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ConfigDict, Field, field_validator, model_validator

from fedsim.common.errors import UserError
from fedsim.common.files import load_yaml
from fedsim.common.schema import Section, suggest, validate
from fedsim.sim.devices import Device, DeviceProfile, MeasuredDevice, Text


def mbps(value: float) -> float:
    """Mbit/s (10^6 bit/s) -> bytes/s."""
    return value * 1e6 / 8


def ms(value: float) -> float:
    """Milliseconds -> seconds."""
    return value / 1e3


def nj(value: float | None) -> float | None:
    """Nanojoules (per bit) -> joules."""
    return None if value is None else value * 1e-9


class LinkProfile(Section):
    """One network link technology, in SI units (bytes/s, seconds)."""

    model_config = ConfigDict(allow_inf_nan=True)  # math.inf rates: an ideal link

    name: Text = Field(description="the profile's name")
    description: Text = Field(description="what technology and setting this is")
    uplink_Bps: float = Field(gt=0, description="device -> network throughput in bytes/s, a number > 0")
    downlink_Bps: float = Field(gt=0, description="network -> device throughput in bytes/s, a number > 0")
    latency_s: float = Field(ge=0, allow_inf_nan=False,
                             description="one-way latency per traversal of the link in s, a finite number >= 0")
    jitter_s: float = Field(ge=0, allow_inf_nan=False,
                            description="the standard deviation of latency_s in s, a finite number >= 0")
    relay_s: float = Field(0.0, ge=0, allow_inf_nan=False,
                           description="time a star's relay (access point, edge server) takes to forward one "
                           "message to this device beyond its two traversals, in s, a finite number >= 0")
    shared_medium: bool = Field(description="true for one half-duplex channel shared by every device (Wi-Fi)")
    share_spread: float = Field(0.0, ge=0, allow_inf_nan=False,
                                description="how unevenly transmissions at once share the link: the standard "
                                "deviation of the log of each transmission's weight (0: equal shares), >= 0")
    direct: bool = Field(False, description="true if devices reach each other without an access point or switch "
                         "(ad-hoc radio, a shared bus, a shaped loopback): a device-to-device transfer crosses "
                         "the medium once, on the sender's uplink")
    uplink_j_per_bit: float | None = Field(None, ge=0, allow_inf_nan=False,
                                           description="radio energy per bit sent in J, a finite number >= 0")
    downlink_j_per_bit: float | None = Field(None, ge=0, allow_inf_nan=False,
                                             description="radio energy per bit received in J, a finite number >= 0")
    source: Text = Field(description="a citation: URL + the numbers read there")
    note: str = Field("", description="derivations and estimates behind the numbers")
    rate_trace: tuple[tuple[float, float], ...] = Field(
        (), description="a list of [time_s, factor] pairs with increasing times >= 0 and factors > 0")

    @model_validator(mode="after")
    def _both_directions(self) -> LinkProfile:
        if (self.uplink_j_per_bit is None) != (self.downlink_j_per_bit is None):
            raise ValueError("give both uplink and downlink energy per bit, or neither")
        return self

    @field_validator("rate_trace", mode="before")
    @classmethod
    def _trace(cls, trace: Any) -> tuple[tuple[float, float], ...]:
        if not isinstance(trace, (list, tuple)):
            raise ValueError(f"must be a list of [time_s, factor] pairs (got {trace!r})")
        points: list[tuple[float, float]] = []
        for point in trace:
            ok = isinstance(point, (list, tuple)) and len(point) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in point)
            if not ok or not (math.isfinite(point[0]) and point[0] >= 0):
                raise ValueError(f"bad point {point!r}: give [time_s, factor] with a finite time >= 0")
            if points and point[0] <= points[-1][0]:
                raise ValueError(f"times must increase, {point[0]!r} follows {points[-1][0]!r}")
            if not (math.isfinite(point[1]) and point[1] > 0):
                raise ValueError(f"factor at t={point[0]!r} must be finite and > 0 (model outages with faults)")
            points.append((float(point[0]), float(point[1])))
        return tuple(points)

    def rate_factor(self, t: float) -> float:
        """Bandwidth multiplier in force at time `t`: piecewise constant, 1.0 before the first point."""
        i = bisect.bisect_right(self.rate_trace, t, key=lambda point: point[0])
        return self.rate_trace[i - 1][1] if i else 1.0


class _LinkEntry(Section):
    """A link as written in a profile file: network units, converted by `mbps` and `ms`."""

    description: Text = Field(description="what technology and setting this is")
    uplink_mbps: float = Field(gt=0, description="device -> network throughput in Mbit/s, a number > 0")
    downlink_mbps: float = Field(gt=0, description="network -> device throughput in Mbit/s, a number > 0")
    latency_ms: float = Field(ge=0, allow_inf_nan=False, description="one-way latency in ms, a finite number >= 0")
    jitter_ms: float = Field(ge=0, allow_inf_nan=False, description="latency jitter (std) in ms, a finite number >= 0")
    relay_ms: float = Field(0.0, ge=0, allow_inf_nan=False,
                            description="a star relay's forwarding time per message to this device in ms, >= 0")
    shared_medium: bool = Field(description="true for one half-duplex channel shared by every device (Wi-Fi)")
    share_spread: float = Field(0.0, ge=0, allow_inf_nan=False,
                                description="the std of the log of a transmission's share weight (0: equal), >= 0")
    direct: bool = Field(False, description="true if devices reach each other without an access point")
    uplink_nj_per_bit: float | None = Field(None, ge=0, description="radio energy per bit sent in nJ, >= 0")
    downlink_nj_per_bit: float | None = Field(None, ge=0, description="radio energy per bit received in nJ, >= 0")
    source: Text = Field(description="a citation: URL + the numbers read there")
    note: str = ""
    rate_trace: list[Any] = Field(default_factory=list, description="a list of [time_s, factor] pairs")

    def profile(self, name: str) -> LinkProfile:
        return LinkProfile(
            name=name, description=self.description, uplink_Bps=mbps(self.uplink_mbps),
            downlink_Bps=mbps(self.downlink_mbps), latency_s=ms(self.latency_ms), jitter_s=ms(self.jitter_ms),
            relay_s=ms(self.relay_ms),
            shared_medium=self.shared_medium, share_spread=self.share_spread, direct=self.direct,
            uplink_j_per_bit=nj(self.uplink_nj_per_bit),
            downlink_j_per_bit=nj(self.downlink_nj_per_bit), source=self.source, note=self.note,
            rate_trace=self.rate_trace)


Profile = TypeVar("Profile", DeviceProfile, MeasuredDevice, LinkProfile)


def with_overrides(profile: Profile, **fields: Any) -> Profile:
    """A validated copy of `profile` with some fields replaced (scenario overrides, sweeps, tests); fields
    are SI (FLOP/s, bytes, bytes/s, s)."""
    kind = "device" if isinstance(profile, DeviceProfile) else "link"
    return validate(type(profile), {**profile.model_dump(), **fields}, source=f"{kind} profile {profile.name!r}")


def override_link(link: LinkProfile, *, uplink_mbps: float | None = None, downlink_mbps: float | None = None,
                  latency_ms: float | None = None, jitter_ms: float | None = None) -> LinkProfile:
    """`link` with the given network-unit values replaced (a scenario's per-participant link overrides)."""
    changes = {"uplink_Bps": None if uplink_mbps is None else mbps(uplink_mbps),
               "downlink_Bps": None if downlink_mbps is None else mbps(downlink_mbps),
               "latency_s": None if latency_ms is None else ms(latency_ms),
               "jitter_s": None if jitter_ms is None else ms(jitter_ms)}
    changes = {k: v for k, v in changes.items() if v is not None}
    return with_overrides(link, **changes) if changes else link


# ---- loading ---------------------------------------------------------------------------------

def _read_table(path: Path | Any, kind: str) -> dict[str, dict[str, Any]]:
    """Parse a profile YAML file into {name: raw fields}, rejecting anything not of that shape."""
    source = str(path)
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError("", f"cannot read {kind} profiles: {exc.strerror}", "check the path", source) from None
    except Exception as exc:  # a YAML syntax error: its first line says where
        raise UserError("", f"invalid YAML: {str(exc).splitlines()[0]}", "check the file's syntax", source) from None
    if not isinstance(data, dict) or not data:
        raise UserError("", f"expected a non-empty mapping of {kind} name -> fields", "", source)
    for name, entry in data.items():
        if not isinstance(name, str) or not isinstance(entry, dict):
            raise UserError(str(name), f"a {kind} must be a name mapping to a table of fields", "", source)
        if "name" in entry:
            raise UserError(f"{name}.name", "unknown key 'name'", "the mapping key is the profile's name", source)
    return data


def _device(name: str, entry: dict[str, Any], source: str) -> Device:
    model = MeasuredDevice if entry.get("kind") == "measured" else DeviceProfile
    return validate(model, {"name": name, **entry}, source, [name])


def _devices_from(path: Path | Any) -> dict[str, Device]:
    return {n: _device(n, e, str(path)) for n, e in _read_table(path, "device").items()}


def _links_from(path: Path | Any) -> dict[str, LinkProfile]:
    return {n: validate(_LinkEntry, e, str(path), [n]).profile(n) for n, e in _read_table(path, "link").items()}


def _packaged(filename: str) -> Any:
    return resources.files("fedsim.sim") / "data" / filename


@cache
def _packaged_devices() -> dict[str, DeviceProfile]:
    return _devices_from(_packaged("devices.yaml"))


@cache
def _packaged_links() -> dict[str, LinkProfile]:
    return _links_from(_packaged("links.yaml"))


def load_devices(path: Path | None = None) -> dict[str, Device]:
    """Device profiles by name from `path`, or the shipped library (parsed once per process)."""
    return dict(_packaged_devices()) if path is None else _devices_from(Path(path))


def load_links(path: Path | None = None) -> dict[str, LinkProfile]:
    """Link profiles by name from `path`, or the shipped library (parsed once per process)."""
    return dict(_packaged_links()) if path is None else _links_from(Path(path))


def load_library(extra: Sequence[str | Path] = ()) -> tuple[dict[str, Device], dict[str, LinkProfile]]:
    """The shipped devices and links plus those of `extra` profile files (each a YAML mapping with `devices:`
    and/or `links:` tables, as `fedsim calibrate` writes them; a later entry replaces one of the same name)."""
    devices, links = load_devices(), load_links()
    for path in extra:
        source = str(path)
        try:
            data = load_yaml(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise UserError("profiles", f"cannot read {source}: {exc.strerror}", "give a profile file's path") \
                from None
        except Exception as exc:  # a YAML syntax error: its first line says where
            raise UserError("", f"invalid YAML: {str(exc).splitlines()[0]}", "check the file's syntax", source) \
                from None
        if not isinstance(data, dict) or not set(data) <= {"devices", "links"} or not data:
            raise UserError("", "a profile file is a mapping with `devices:` and/or `links:` tables",
                            "see `fedsim calibrate --help`", source)
        for name, entry in _entries(data.get("devices"), "device", source).items():
            devices[name] = _device(name, entry, source)
        for name, entry in _entries(data.get("links"), "link", source).items():
            links[name] = validate(_LinkEntry, entry, source, [name]).profile(name)
    return devices, links


def _entries(table: Any, kind: str, source: str) -> dict[str, dict[str, Any]]:
    if table is None:
        return {}
    if not isinstance(table, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in table.items()):
        raise UserError(f"{kind}s", f"must map {kind} names to tables of fields", "", source)
    return table


def _lookup(kind: str, name: str, table: Mapping[str, Profile]) -> Profile:
    if name in table:
        return table[name]
    raise UserError(f"{kind} {name!r}", "unknown profile",
                    suggest(str(name), list(table), f"known {kind}s (see `fedsim profiles`)"))


def get_device(name: str, devices: Mapping[str, Device] | None = None) -> Device:
    """The device profile called `name` (from `devices`, default the shipped library)."""
    return _lookup("device", name, load_devices() if devices is None else devices)


def get_link(name: str, links: Mapping[str, LinkProfile] | None = None) -> LinkProfile:
    """The link profile called `name` (from `links`, default the shipped library)."""
    return _lookup("link", name, load_links() if links is None else links)


def describe() -> str:
    """Every shipped device and link as aligned columns, each with its source on the line below."""
    devices = [(d.name, f"{d.peak_flops / 1e12:g} TFLOP/s {d.precision}", f"{d.mem_bandwidth / 1e9:g} GB/s",
                f"{d.mem_bytes / 2**30:.3g} GiB", f"{d.efficiency:g}", f"{d.msg_overhead_s * 1e6:g} us",
                f"{d.active_power_w:g} / {d.idle_power_w:g} W" if d.active_power_w is not None else "-", d.source)
               for d in load_devices().values()]
    links = [(k.name, f"{k.uplink_Bps * 8 / 1e6:g} Mbit/s", f"{k.downlink_Bps * 8 / 1e6:g} Mbit/s",
              f"{k.latency_s * 1e3:g} ms", f"{k.jitter_s * 1e3:g} ms", "shared" if k.shared_medium else "dedicated",
              _per_bit(k.uplink_j_per_bit, k.downlink_j_per_bit), k.source) for k in load_links().values()]
    return "\n".join([
        *_table("DEVICES", ("name", "peak compute", "memory bandwidth", "memory", "efficiency",
                            "per-message overhead", "power active / idle"), devices),
        "",
        *_table("LINKS", ("name", "uplink", "downlink", "latency (one way)", "jitter", "medium",
                          "radio energy up / down"), links),
    ])


def _per_bit(up: float | None, down: float | None) -> str:
    return "-" if up is None or down is None else f"{up * 1e9:g} / {down * 1e9:g} nJ/bit"


def _table(title: str, headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for *cells, source in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
        lines.append(f"    source: {' '.join(source.split())}")
    return lines
