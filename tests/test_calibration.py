"""Calibration: measured device tables interpolate and drive the engine; the loopback link fit; profile files
next to the shipped profiles; direct links cross the medium once; the probes really run (tiny model)."""

import math

import numpy as np
import pytest
import yaml

from fedsim.common.errors import UserError
from fedsim.common.schema import validate
from fedsim.experiment.config import validate_scenario
from fedsim.experiment.run import run_scenario
from fedsim.experiment.timing import calibrate, error, report
from fedsim.fedattn.costs import LayerCost
from fedsim.real.calibrate import QUICK, fit_line, share_spread
from fedsim.sim.devices import MeasuredDevice
from fedsim.sim.profiles import load_library

TABLES = {"kind": "measured", "name": "m", "description": "d", "source": "s", "model": "tiny-random", "threads": 1,
          "processes": 1, "mem_bytes": 1e9, "queries": [10, 20], "keys_before": [0, 100],
          "pre_s": [1.0, 2.0], "post_s": [[10.0, 20.0], [30.0, 60.0]], "decode_keys": [100, 300],
          "decode_s": [0.5, 1.5], "lm_head_s": 0.25}


def test_measured_device_interpolates_its_tables():
    device = validate(MeasuredDevice, TABLES, "test")
    local = LayerCost(n_queries=15, attended_pairs=15 * 16 // 2, own_pairs=15 * 16 // 2)
    times = device.block_times(local)
    assert times.pre == pytest.approx(1.5) and times.post == pytest.approx(20.0) and times.post_own == 0.0
    sync = LayerCost(n_queries=20, attended_pairs=20 * 50 + 210, own_pairs=210)  # 50 keys before its own chunk
    assert device.block_times(sync).post == pytest.approx(45.0)
    assert device.decode_time(LayerCost(cache_keys=200)) == pytest.approx(1.0)
    assert device.decode_time(LayerCost(cache_keys=0)) == pytest.approx(0.25)  # the first token: LM head only
    assert device.block_times(LayerCost(n_queries=40, attended_pairs=820, own_pairs=820)).pre == pytest.approx(4.0)


def test_measured_device_rejects_tables_that_do_not_fit_their_grids():
    with pytest.raises(UserError, match="post_s"):
        validate(MeasuredDevice, {**TABLES, "post_s": [[10.0], [30.0, 60.0]]}, "test")
    with pytest.raises(UserError, match="queries must increase"):
        validate(MeasuredDevice, {**TABLES, "queries": [20, 10]}, "test")


def test_fit_line_recovers_rate_and_latency():
    rate, latency = fit_line({size: 0.002 + size / 2.5e6 for size in (1000, 65536, 262144, 1048576)})
    assert rate == pytest.approx(2.5e6) and latency == pytest.approx(0.002)


def test_the_share_spread_reproduces_the_first_of_two_it_was_solved_from():
    """Two equal messages started together with weights exp(sigma Z): the first finishes at (1 + w_min/w_max)/2
    of the time both take; a Monte Carlo of that model gives back the fraction sigma was solved from."""
    z = np.random.default_rng(0).standard_normal((2, 200_000))
    for first in (0.95, 0.85, 0.7):
        sigma = share_spread(first)
        w = np.exp(sigma * z)
        assert np.mean((1 + w.min(axis=0) / w.max(axis=0)) / 2) == pytest.approx(first, abs=0.003)
    assert share_spread(1.0) == share_spread(1.2) == 0.0  # equal shares, or noise above them
    assert share_spread(0.4) == 8.0  # one after the other: capped


def test_a_profile_file_extends_the_shipped_library(tmp_path):
    path = tmp_path / "cal.yaml"
    link = {"description": "bus", "uplink_mbps": 8, "downlink_mbps": 8, "latency_ms": 1, "jitter_ms": 0,
            "shared_medium": True, "direct": True, "source": "test"}
    path.write_text(yaml.safe_dump({"devices": {"m": {k: v for k, v in TABLES.items() if k != "name"}},
                                    "links": {"bus": link}}))
    devices, links = load_library([path])
    assert isinstance(devices["m"], MeasuredDevice) and links["bus"].direct and "wifi6" in links
    path.write_text("links: [1, 2]\n")
    with pytest.raises(UserError, match="must map link names"):
        load_library([path])


def test_direct_links_cross_the_shared_medium_once_and_stars_still_relay(tmp_path):
    path = tmp_path / "bus.yaml"
    bus = {"description": "bus", "uplink_mbps": 8, "downlink_mbps": 8, "latency_ms": 0, "jitter_ms": 0,
           "shared_medium": True, "source": "test"}
    path.write_text(yaml.safe_dump({"links": {"bus": {**bus, "direct": True}, "ap": bus}}))

    def exchange(link: str, topology: str) -> float:
        sc = validate_scenario({"model": {"name": "tiny-random"}, "task": {"kind": "retrieval"},
                                "participants": {"n": 3, "device": "jetson-agx-orin"}, "schedule": {"H": 1},
                                "network": {"link": link, "topology": topology}, "profiles": [str(path)],
                                "decoding": {"max_new_tokens": 2}})
        rec = run_scenario(sc)
        return rec.summary["exchange_s"], rec.participants.bytes_sent.sum()

    mesh_bus, sent = exchange("bus", "mesh")
    mesh_ap, _ = exchange("ap", "mesh")
    star_bus, _ = exchange("bus", "star")
    assert mesh_bus == pytest.approx(mesh_ap / 2, rel=0.05)  # through an access point every copy crosses twice
    assert star_bus == pytest.approx(1.5 * mesh_bus, rel=0.05)  # a relay: N uploads + N(N-1) copies vs N(N-1)
    assert math.isclose(mesh_bus, sent / 8 / 1e6, rel_tol=0.05)  # a block's copies, once each, at 1e6 B/s


def test_a_stars_relay_time_delays_each_relayed_message_and_nothing_else(tmp_path):
    path = tmp_path / "bus.yaml"
    bus = {"description": "bus", "uplink_mbps": 8, "downlink_mbps": 8, "latency_ms": 1, "jitter_ms": 0,
           "shared_medium": True, "direct": True, "source": "test"}
    path.write_text(yaml.safe_dump({"links": {"bus": bus, "relayed": {**bus, "relay_ms": 7}}}))

    def exchange(link: str, topology: str) -> float:
        sc = validate_scenario({"model": {"name": "tiny-random"}, "task": {"kind": "retrieval"},
                                "participants": {"n": 2, "device": "jetson-agx-orin"}, "schedule": {"H": 1},
                                "network": {"link": link, "topology": topology}, "profiles": [str(path)],
                                "decoding": {"max_new_tokens": 2}})
        return run_scenario(sc).summary["exchange_s"]

    assert exchange("relayed", "star") == pytest.approx(exchange("bus", "star") + 0.007, abs=1e-9)
    assert exchange("relayed", "mesh") == exchange("bus", "mesh")  # no relay on a mesh
    path.write_text(yaml.safe_dump({"links": {"bus": {**bus, "relay_ms": -1}}}))
    with pytest.raises(UserError, match=r"bus\.relay_ms: must be >= 0"):
        load_library([path])


def test_the_probes_calibrate_a_device_and_the_loopback_link(tmp_path):
    """`fedsim calibrate`'s own code path, for real: probe processes and a gloo link, on the tiny model."""
    path = tmp_path / "calibration.yaml"
    calibrate(path, [None], True, 300, model="tiny-random", processes=1, name="tiny-machine")
    devices, links = load_library([path])
    device = devices["tiny-machine"]
    assert isinstance(device, MeasuredDevice) and device.model == "tiny-random"
    assert list(device.queries) == list(QUICK.queries) and all(t > 0 for t in device.pre_s)
    assert links["loopback"].shared_medium and links["loopback"].direct and links["loopback"].uplink_Bps > 1e6
    assert links["loopback"].relay_s >= 0 and "through the star's relay" in links["loopback"].note
    assert links["loopback"].share_spread >= 0 and "first arrived at" in links["loopback"].note
    sc = validate_scenario({"model": {"name": "tiny-random"}, "task": {"kind": "retrieval"},
                            "participants": {"device": "tiny-machine"}, "network": {"link": "loopback"},
                            "profiles": [str(path)], "decoding": {"max_new_tokens": 3}})
    rec = run_scenario(sc)
    assert rec.summary["prefill_s"] > 0 and rec.summary["decode_s_per_token"] > 0
    other = validate_scenario({"participants": {"device": "tiny-machine"}, "profiles": [str(path)]})
    with pytest.raises(UserError, match="measured with tiny-random"):
        run_scenario(other)


def test_the_timing_report_states_each_metric_and_the_last_line():
    rows = [{"point": f"p{i}", "who": "", "metric": m, "measured_s": 1.0, "simulated_s": 1.0 + 0.1 * i,
             "naive_s": 2.0} for i in range(2) for m in ("prefill", "ttft", "exchange", "decode")]
    lines = report(rows)
    assert lines[-1] == "mean abs error: 5.0% (naive: 100.0%)"
    assert [line.split()[0] for line in lines[1:-1]] == ["prefill", "ttft", "exchange", "decode"]
    assert error(rows[-1], "simulated_s") == pytest.approx(0.1)


def test_an_exchange_starts_when_its_last_sender_is_ready_not_while_a_straggler_computes(tmp_path):
    """Both sides define one exchange alike: from the moment the last sender had its K/V ready to the last
    delivery. A slow participant's extra compute is waiting (prefill), not communication."""
    path = tmp_path / "bus.yaml"
    bus = {"description": "bus", "uplink_mbps": 8, "downlink_mbps": 8, "latency_ms": 0, "jitter_ms": 0,
           "shared_medium": False, "source": "test"}
    path.write_text(yaml.safe_dump({"links": {"wire": bus}}))

    def run(slow: str):
        sc = validate_scenario({"model": {"name": "tiny-random"}, "task": {"kind": "retrieval"},
                                "participants": {"n": 2, "device": "jetson-agx-orin",
                                                 "overrides": {0: {"device": slow}}}, "schedule": {"H": 1},
                                "network": {"link": "wire", "topology": "mesh"}, "profiles": [str(path)],
                                "decoding": {"max_new_tokens": 2}})
        return run_scenario(sc)

    alike = run("jetson-agx-orin")
    straggled = run("raspberry-pi-5")
    slow, fast = straggled.participants.prefill_compute_s, alike.participants.prefill_compute_s
    assert slow[0] > 100 * fast[0]  # participant 0 computes far longer: the other waits for its K/V
    assert straggled.participants.prefill_s.max() > alike.participants.prefill_s.max()
    assert straggled.summary["exchange_s"] == pytest.approx(alike.summary["exchange_s"], rel=0.01)


def test_a_measured_exchange_leaves_out_the_skew_before_the_last_sender():
    from fedsim.experiment.real_records import block_exchange_s

    def rank(pre_end: float, xchg_end: float, sent: int) -> dict:
        return {"role": "participant", "blocks": [{"pre_end": pre_end, "xchg_end": xchg_end, "sent": sent}]}

    relay = {"role": "relay"}
    records = [rank(1.0, 5.2, 100), rank(5.0, 5.3, 100), relay]  # rank 0 waited 4 s for a slower rank 1
    assert block_exchange_s(records, 0) == pytest.approx(0.3)
    publisher_block = [rank(1.0, 1.5, 100), rank(0.5, 1.6, 0), relay]  # only rank 0 sends
    assert block_exchange_s(publisher_block, 0) == pytest.approx(0.6)
    assert math.isnan(block_exchange_s([rank(1.0, 1.0, 0)], 0))
