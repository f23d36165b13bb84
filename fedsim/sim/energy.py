"""Energy per participant: what one device and its radio spend on one FedAttn request, in joules.

The model, over the participant's own part of the request (from time 0 to the end of its prefill, and for
the responder on to the end of its last decoded token, or to its dropout):

- **Compute (device).** The device draws `active_power_w` while it computes (prefill blocks; the
  responder's decode tokens) and `idle_power_w` while it waits for K/V:
  `energy_compute_j = active_power_w x (prefill_compute_s + decode_s) + idle_power_w x prefill_wait_s`.
  Both powers are whole-device figures (SoC, memory, board), so the idle power also covers the radio's
  standby while nothing is sent.
- **Radio.** Every bit the participant's link carries for it costs that link's energy per bit: sent
  bits (its own K/V, ring forwards) at `uplink_j_per_bit`, received bits at `downlink_j_per_bit`:
  `energy_radio_j = 8 x (bytes_sent x uplink_j_per_bit + bytes_received x downlink_j_per_bit)`.
  The per-bit figures are the radio's power while transferring divided by the link's nominal rate
  (fedsim/sim/data/links.yaml), so they add the radio's active power on top of the device's.
- `energy_j = energy_compute_j + energy_radio_j`.

Not counted: the access point, base station or switch; radio tail and power-state transitions; a
participant's power after its own part ended (a collaborator idles while the responder decodes: that
depends on what else the device does). Profiles without power or energy-per-bit figures give NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedsim.sim.devices import Device
from fedsim.sim.outcome import ParticipantResult
from fedsim.sim.profiles import LinkProfile

BITS_PER_BYTE = 8


@dataclass(frozen=True)
class Energy:
    compute_j: float  # device: active power while computing, idle power while waiting
    radio_j: float  # link: energy per bit sent and received

    @property
    def total_j(self) -> float:
        return self.compute_j + self.radio_j


def participant_energy(device: Device, link: LinkProfile, result: ParticipantResult) -> Energy:
    """The energy of one participant's part of a simulated request (model: this module's docstring)."""
    compute_s = result.prefill_compute_s + sum(result.decode_token_s)
    if device.active_power_w is None or device.idle_power_w is None:
        compute = math.nan
    else:
        compute = device.active_power_w * compute_s + device.idle_power_w * result.prefill_wait_s
    if link.uplink_j_per_bit is None or link.downlink_j_per_bit is None:
        radio = math.nan
    else:
        radio = BITS_PER_BYTE * (result.bytes_sent * link.uplink_j_per_bit
                                 + result.bytes_received * link.downlink_j_per_bit)
    return Energy(compute, radio)
