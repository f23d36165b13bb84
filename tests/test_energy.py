"""Energy per participant: the model of fedsim.sim.energy, the profiles' power and energy-per-bit fields with
their sources, and the columns every run's records carry."""

from __future__ import annotations

import math

import pytest

from fedsim.common.errors import UserError
from fedsim.experiment.config import validate_scenario
from fedsim.experiment.run import run_scenario
from fedsim.sim.energy import participant_energy
from fedsim.sim.outcome import ParticipantResult
from fedsim.sim.profiles import get_device, get_link, load_devices, load_links, with_overrides


def result(compute_s: float, wait_s: float, decode: tuple[float, ...], sent: float,
           received: float) -> ParticipantResult:
    return ParticipantResult(
        participant=0, ttft_s=math.nan, prefill_s=compute_s + wait_s, prefill_compute_s=compute_s,
        prefill_wait_s=wait_s, prefill_comm_s=0.0, decode_s_per_token=math.nan, decode_token_s=decode,
        bytes_sent=sent, bytes_received=received, flops_prefill=0.0, flops_decode=0.0, exposed_layers=(),
        exposed_bytes=0.0, dropped=False, dropped_at_s=math.nan)


def test_active_power_computing_idle_power_waiting_energy_per_bit_on_the_radio() -> None:
    device = with_overrides(get_device("jetson-orin-nano"), active_power_w=10.0, idle_power_w=2.0)
    link = with_overrides(get_link("wifi6"), uplink_j_per_bit=4e-9, downlink_j_per_bit=1e-9)
    energy = participant_energy(device, link, result(0.5, 0.25, (0.125, 0.125), 1000.0, 3000.0))
    assert energy.compute_j == 10.0 * (0.5 + 0.25) + 2.0 * 0.25  # decode tokens are computed too
    assert energy.radio_j == pytest.approx(8 * (1000 * 4e-9 + 3000 * 1e-9), rel=1e-15)
    assert energy.total_j == energy.compute_j + energy.radio_j


def test_profiles_without_power_or_energy_figures_give_nan() -> None:
    device = with_overrides(get_device("jetson-orin-nano"), active_power_w=None, idle_power_w=None)
    link = with_overrides(get_link("wifi6"), uplink_j_per_bit=None, downlink_j_per_bit=None)
    energy = participant_energy(device, link, result(1.0, 1.0, (), 1.0, 1.0))
    assert math.isnan(energy.compute_j) and math.isnan(energy.radio_j) and math.isnan(energy.total_j)


@pytest.mark.parametrize(("fields", "message"), [
    ({"active_power_w": 1.0, "idle_power_w": 2.0}, "exceeds active_power_w"),
    ({"active_power_w": 1.0, "idle_power_w": None}, "or neither"),
    ({"active_power_w": -1.0}, "active_power_w"),
])
def test_bad_power_figures_are_one_clear_error(fields: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        with_overrides(get_device("raspberry-pi-5"), **fields)


def test_every_shipped_profile_has_energy_figures_with_their_source() -> None:
    for device in load_devices().values():
        assert 0 <= device.idle_power_w <= device.active_power_w
        assert "power" in device.source and "power_w" in device.note, device.name
    for link in load_links().values():
        assert link.uplink_j_per_bit > 0 and link.downlink_j_per_bit > 0
        assert "energy" in link.source and "nJ/bit" in link.note, link.name


def test_every_run_records_energy_per_participant_and_its_totals() -> None:
    scenario = validate_scenario({"name": "e", "model": {"name": "tiny-random"}, "task": {"kind": "retrieval"},
                                  "participants": {"n": 3}, "schedule": {"H": 2}, "decoding": {"max_new_tokens": 3}})
    rec = run_scenario(scenario)
    parts = rec.participants
    device, link = get_device("jetson-orin-nano"), get_link("wifi6")
    for row in parts.itertuples():
        decode = row.ttft_s - row.prefill_s + (row.decode_s_per_token * (row.n_generated - 1) if row.responder else 0)
        compute = device.active_power_w * (row.prefill_compute_s + (decode if row.responder else 0.0)) \
            + device.idle_power_w * row.prefill_wait_s
        radio = 8 * (row.bytes_sent * link.uplink_j_per_bit + row.bytes_received * link.downlink_j_per_bit)
        assert row.energy_compute_j == pytest.approx(compute, rel=1e-9)
        assert row.energy_radio_j == pytest.approx(radio, rel=1e-12)
        assert row.energy_j == pytest.approx(compute + radio, rel=1e-12)
    assert rec.summary["energy_j_total"] == pytest.approx(parts.energy_j.sum(), rel=1e-12)
    assert rec.summary["energy_j_per_participant"] == pytest.approx(parts.energy_j.mean(), rel=1e-12)
