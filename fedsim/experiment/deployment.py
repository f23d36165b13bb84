"""The deployment of a run: each participant's device and link, and the engine's options (topology,
faults, who publishes and who responds)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedsim.common.errors import UserError
from fedsim.experiment.config import Scenario
from fedsim.sim.devices import Device, MeasuredDevice
from fedsim.sim.engine import EngineOptions
from fedsim.sim.profiles import LinkProfile, get_device, get_link, load_library, override_link


@dataclass(frozen=True)
class Deployment:
    devices: tuple[Device, ...]
    links: tuple[LinkProfile, ...]
    # n_decode is set by the run: it times as many tokens as the centralized reference generates
    engine: EngineOptions


def build_deployment(sc: Scenario, publisher: int) -> Deployment:
    n, responder = sc.participants.n, sc.decoding.responder
    responder = publisher if responder == "publisher" else int(responder)
    if responder >= n:
        raise UserError("decoding.responder", f"{responder} but there are only {n} participants (0..{n - 1})",
                        "use 'publisher' or a smaller index")
    engine = EngineOptions(publisher=publisher, responder=responder, n_decode=0, seed=sc.seed,
                           topology=sc.network.topology, overlap=sc.engine.overlap, deadline_s=sc.faults.deadline_s,
                           dropout=_dropouts(sc), trace=sc.engine.trace)
    devices, links = load_library(sc.profile_files())
    chosen = tuple(_device(sc, p, devices) for p in range(n))
    for p, device in enumerate(chosen):
        if isinstance(device, MeasuredDevice) and device.model != sc.model.name:
            raise UserError(f"participants.device of participant {p}", f"'{device.name}' was measured with "
                            f"{device.model}, not {sc.model.name}", "calibrate this model, or use a roofline device")
    return Deployment(chosen, tuple(_link(sc, p, links) for p in range(n)), engine)


def _device(sc: Scenario, p: int, devices: dict[str, Device]) -> Device:
    over = sc.participants.overrides.get(p)
    return get_device(over.device if over and over.device else sc.participants.device, devices)


def _link(sc: Scenario, p: int, links: dict[str, LinkProfile]) -> LinkProfile:
    over = sc.network.overrides.get(p)
    link = get_link(over.link if over and over.link else sc.network.link, links)
    if over is None:
        return link
    return override_link(link, uplink_mbps=over.uplink_mbps, downlink_mbps=over.downlink_mbps,
                         latency_ms=over.latency_ms, jitter_ms=over.jitter_ms)


def _dropouts(sc: Scenario) -> tuple[tuple[int, float], ...]:
    """(participant, time) pairs: a named one, or each participant with the seeded probability."""
    d = sc.faults.dropout
    if d is None:
        return ()
    at = d.at_s or 0.0
    if d.participant is not None:
        return ((d.participant, at),)
    rng = np.random.default_rng([sc.seed, 1])
    return tuple((p, at) for p in range(sc.participants.n) if rng.random() < (d.probability or 0.0))
