"""Profiles: the shipped library loads, units convert once, the roofline is right, bad input fails clearly."""

import math
from pathlib import Path

import pytest
import yaml

from fedsim.common.errors import UserError
from fedsim.common.schema import validate
from fedsim.sim.profiles import (
    DeviceProfile,
    LinkProfile,
    get_device,
    get_link,
    load_devices,
    load_links,
    with_overrides,
)

REQUIRED_DEVICES = {"jetson-orin-nano", "jetson-orin-nano-super", "jetson-agx-orin", "raspberry-pi-5",
                    "snapdragon-8-gen3", "apple-m2", "laptop-cpu"}
REQUIRED_LINKS = {"wifi6", "5g", "lte", "ethernet-1g"}


def make_device(**fields: object) -> DeviceProfile:
    """A hand-numbered device: 1 TFLOP/s at 50% efficiency, 100 GB/s, validated as profile files are."""
    base: dict[str, object] = dict(
        name="test-gpu", description="hand numbers", peak_flops=1e12, precision="fp16", mem_bandwidth=1e11,
        mem_bytes=8e9, efficiency=0.5, msg_overhead_s=0.0, source="test: hand-picked numbers")
    return validate(DeviceProfile, {**base, **fields}, "device 'test-gpu'")


def make_link(**fields: object) -> LinkProfile:
    base: dict[str, object] = dict(
        name="test-link", description="hand numbers", uplink_Bps=1e6, downlink_Bps=1e7, latency_s=0.01,
        jitter_s=0.0, shared_medium=False, source="test: hand-picked numbers")
    return validate(LinkProfile, {**base, **fields}, "link 'test-link'")


LINK_ENTRY = {"description": "test link", "uplink_mbps": 100, "downlink_mbps": 400, "latency_ms": 5,
              "jitter_ms": 1, "shared_medium": False, "source": "test"}
DEVICE_ENTRY = {"description": "test device", "peak_flops": 1e12, "precision": "fp16", "mem_bandwidth": 1e11,
                "mem_bytes": 8e9, "efficiency": 0.5, "msg_overhead_s": 1e-4, "source": "test"}


def write_yaml(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "profiles.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def raises_one_line(fn, *args, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---- shipped library ---------------------------------------------------------------------------

def test_every_shipped_device_loads_with_a_cited_source() -> None:
    devices = load_devices()
    assert REQUIRED_DEVICES <= devices.keys()
    for name, device in devices.items():
        assert device.name == name
        assert "http" in device.source, name
        assert math.isfinite(device.peak_flops) and device.compute_time(1e9, 1e6) > 0


def test_every_shipped_link_loads_with_a_cited_source() -> None:
    links = load_links()
    assert REQUIRED_LINKS <= links.keys()
    for name, link in links.items():
        assert link.name == name
        assert "http" in link.source, name


def test_shipped_links_have_the_modelled_shape() -> None:
    links = load_links()
    assert links["wifi6"].shared_medium and not links["ethernet-1g"].shared_medium
    for cellular in ("5g", "lte"):
        assert links[cellular].uplink_Bps < links[cellular].downlink_Bps
    assert links["ethernet-1g"].latency_s < links["wifi6"].latency_s < links["5g"].latency_s < links["lte"].latency_s


def test_super_mode_is_faster_than_the_15w_orin_nano() -> None:
    nano, super_ = get_device("jetson-orin-nano"), get_device("jetson-orin-nano-super")
    assert super_.peak_flops > nano.peak_flops and super_.mem_bandwidth == pytest.approx(102e9)


def test_default_library_is_a_fresh_dict_each_call() -> None:
    load_devices().pop("apple-m2")
    assert "apple-m2" in load_devices()


# ---- roofline ----------------------------------------------------------------------------------

def test_roofline_compute_bound() -> None:
    # 1e9 FLOP at 0.5 x 1e12 FLOP/s = 2 ms; 1e6 bytes at 1e11 B/s = 10 us.
    assert make_device().compute_time(1e9, 1e6) == pytest.approx(2e-3)


def test_roofline_memory_bound() -> None:
    # 1e6 FLOP -> 2 us of compute; 1e9 bytes at 1e11 B/s = 10 ms (decode reads all weights).
    assert make_device().compute_time(1e6, 1e9) == pytest.approx(1e-2)


def test_ideal_device_takes_no_time() -> None:
    ideal = make_device(peak_flops=math.inf, mem_bandwidth=math.inf)
    assert ideal.compute_time(1e15, 1e12) == 0.0


# ---- YAML loading and units --------------------------------------------------------------------

def test_link_units_convert_once_on_load(tmp_path: Path) -> None:
    link = load_links(write_yaml(tmp_path, {"l": LINK_ENTRY}))["l"]
    assert link.uplink_Bps == pytest.approx(12.5e6)
    assert link.downlink_Bps == pytest.approx(50e6)
    assert link.latency_s == pytest.approx(0.005)
    assert link.jitter_s == pytest.approx(0.001)


def test_device_yaml_accepts_exponent_written_without_dot(tmp_path: Path) -> None:
    # YAML 1.1 reads `1e12` as the string "1e12"; the loader takes it as the number meant.
    entry = {**DEVICE_ENTRY, "peak_flops": "PEAK"}
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump({"d": entry}).replace("PEAK", "1e12"), encoding="utf-8")
    assert yaml.safe_load(path.read_text())["d"]["peak_flops"] == "1e12"
    assert load_devices(path)["d"].peak_flops == 1e12


def test_rate_trace_is_piecewise_constant(tmp_path: Path) -> None:
    entry = {**LINK_ENTRY, "rate_trace": [[1.0, 0.5], [3.0, 2.0]]}
    link = load_links(write_yaml(tmp_path, {"l": entry}))["l"]
    assert link.rate_trace == ((1.0, 0.5), (3.0, 2.0))
    assert [link.rate_factor(t) for t in (0.0, 1.0, 2.9, 3.0, 100.0)] == [1.0, 0.5, 0.5, 2.0, 2.0]
    assert make_link().rate_factor(5.0) == 1.0


def test_unknown_yaml_key_names_the_nearest_valid_key(tmp_path: Path) -> None:
    entry = {**DEVICE_ENTRY, "peak_flop": 1.0}
    message = raises_one_line(load_devices, write_yaml(tmp_path, {"d": entry}))
    assert "d.peak_flop: unknown key 'peak_flop'" in message and "did you mean 'peak_flops'" in message


def test_unknown_link_key_names_the_nearest_valid_key(tmp_path: Path) -> None:
    entry = {**LINK_ENTRY, "uplink_mbit": 1.0}
    message = raises_one_line(load_links, write_yaml(tmp_path, {"l": entry}))
    assert "l.uplink_mbit" in message and "did you mean 'uplink_mbps'" in message


def test_missing_source_is_rejected(tmp_path: Path) -> None:
    entry = {k: v for k, v in DEVICE_ENTRY.items() if k != "source"}
    message = raises_one_line(load_devices, write_yaml(tmp_path, {"d": entry}))
    assert "d.source: is required" in message


def test_non_numeric_yaml_value_is_rejected(tmp_path: Path) -> None:
    entry = {**LINK_ENTRY, "latency_ms": "fast"}
    message = raises_one_line(load_links, write_yaml(tmp_path, {"l": entry}))
    assert "l.latency_ms: must be a number (got 'fast')" in message


@pytest.mark.parametrize("data", [[], {}, {"d": 3}])
def test_malformed_file_is_rejected(tmp_path: Path, data: object) -> None:
    raises_one_line(load_devices, write_yaml(tmp_path, data))


def test_missing_file_is_rejected(tmp_path: Path) -> None:
    assert "cannot read" in raises_one_line(load_links, tmp_path / "nope.yaml")


# ---- lookup by name ----------------------------------------------------------------------------

def test_unknown_device_suggests_the_closest_name() -> None:
    message = raises_one_line(get_device, "jetson-nano")
    assert message == "device 'jetson-nano': unknown profile; did you mean 'jetson-orin-nano'?"


def test_unknown_link_without_close_match_lists_the_choices() -> None:
    message = raises_one_line(get_link, "carrier-pigeon", {"wifi6": make_link(name="wifi6")})
    assert "link 'carrier-pigeon': unknown profile" in message and "wifi6" in message


def test_lookup_in_a_custom_table() -> None:
    table = {"mine": make_device(name="mine")}
    assert get_device("mine", table) is table["mine"]
    assert isinstance(raises_one_line(get_device, "apple-m2", table), str)


# ---- validation ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "value"), [
    ("peak_flops", 0.0), ("peak_flops", -1e12), ("peak_flops", math.nan), ("peak_flops", "1e12"),
    ("mem_bandwidth", 0.0), ("mem_bytes", -1.0), ("efficiency", 0.0), ("efficiency", 1.5),
    ("efficiency", True), ("msg_overhead_s", -1e-3), ("msg_overhead_s", math.inf), ("precision", "fp8"),
    ("source", ""), ("source", "   "), ("description", None),
])
def test_bad_device_values_are_rejected(field: str, value: object) -> None:
    message = raises_one_line(make_device, **{field: value})
    assert message.startswith(f"device 'test-gpu': {field}: ")


@pytest.mark.parametrize(("field", "value"), [
    ("uplink_Bps", 0.0), ("downlink_Bps", -5.0), ("latency_s", -0.001), ("jitter_s", math.nan),
    ("shared_medium", "yes"), ("source", ""), ("rate_trace", [[0.0, 0.0]]), ("rate_trace", [[2.0, 1.0], [1.0, 1.0]]),
    ("rate_trace", [[-1.0, 1.0]]), ("rate_trace", [[1.0]]), ("rate_trace", 3),
])
def test_bad_link_values_are_rejected(field: str, value: object) -> None:
    message = raises_one_line(make_link, **{field: value})
    assert message.startswith(f"link 'test-link': {field}: ")


def test_efficiency_of_exactly_one_is_allowed() -> None:
    assert make_device(efficiency=1).compute_time(1e12, 0.0) == pytest.approx(1.0)


# ---- overrides -----------------------------------------------------------------------------------

def test_override_returns_a_modified_copy() -> None:
    nano = get_device("jetson-orin-nano")
    slow = with_overrides(nano, efficiency=0.1, name="nano-slow")
    assert (slow.efficiency, slow.name, slow.peak_flops) == (0.1, "nano-slow", nano.peak_flops)
    assert nano.efficiency == 0.3 and get_device("jetson-orin-nano") == nano


def test_override_of_a_link_normalises_the_trace() -> None:
    link = with_overrides(get_link("wifi6"), rate_trace=[[0.5, 0.25]])
    assert link.rate_trace == ((0.5, 0.25),) and link.rate_factor(1.0) == 0.25
    assert hash(link)  # still usable as a dict key / in sets


def test_override_is_validated() -> None:
    message = raises_one_line(with_overrides, get_link("5g"), uplink_Bps=-1.0)
    assert message.startswith("link profile '5g': uplink_Bps: must be > 0")


def test_override_of_an_unknown_field_suggests_the_nearest() -> None:
    message = raises_one_line(with_overrides, make_device(), efficency=0.4)
    assert "efficency: unknown key" in message and "did you mean 'efficiency'" in message
