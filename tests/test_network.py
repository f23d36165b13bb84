"""Network model: exact transfer times, shared airtime, relays, topologies' byte counts, jitter, failures."""

import math

import numpy as np
import pytest
import simpy

from fedsim.sim.channel import Channel, Rate
from fedsim.sim.network import Network, NetworkOptions
from fedsim.sim.profiles import LinkProfile

INF = math.inf


def link(up: float = INF, down: float = INF, latency: float = 0.0, *, shared: bool = False, jitter: float = 0.0,
         trace: tuple = (), spread: float = 0.0) -> LinkProfile:
    return LinkProfile(name="test", description="hand numbers", uplink_Bps=up, downlink_Bps=down, latency_s=latency,
                       jitter_s=jitter, shared_medium=shared, source="test", rate_trace=trace, share_spread=spread)


def all_gather(net: Network, senders: dict[int, float], receivers) -> dict[tuple[int, int], simpy.Event]:
    """Every sender sends its bytes to every other receiver, all starting now; {(s, r): delivery}."""
    return {(s, r): ev for s in sorted(senders) for r, ev in net.send(s, senders[s], set(receivers), "L0").items()}


def run(links, topology, sends, *, options=None, overheads=None, rng=None, fail=()):
    """Start every (origin, bytes, receivers) in `sends` at t=0, optionally fail (participant, t); run to the
    end. Returns {(origin, receiver): arrival time or None} and the network."""
    env = simpy.Environment()
    net = Network(env, links, topology, options=options, overheads_s=overheads, rng=rng)
    events = {}
    for origin, nbytes, receivers in sends:
        for r, ev in net.send(origin, nbytes, receivers, "t").items():
            events[(origin, r)] = ev

    def failer(p, at):
        yield env.timeout(at)
        net.fail(p)

    for p, at in fail:
        env.process(failer(p, at))
    env.run()
    return {k: ev.value for k, ev in events.items()}, net


@pytest.mark.parametrize("nbytes", [1000.0, 10e6])  # one chunk, and many 64 KiB chunks
def test_transfer_takes_bytes_over_rate_plus_latency(nbytes):
    lat = 0.25
    arrivals, net = run([link(up=nbytes, latency=lat), link()], "mesh", [(0, nbytes, [1])])
    assert arrivals[(0, 1)] == pytest.approx(1.0 + lat, rel=1e-12)
    assert net.bytes_sent == pytest.approx([nbytes, 0.0])
    assert net.bytes_received == pytest.approx([0.0, nbytes])
    assert net.comm_s(0) == pytest.approx(1.0) and net.comm_s(1) == 0.0  # latency is not wire time


def test_device_to_device_pays_both_link_latencies():
    arrivals, _ = run([link(latency=0.1), link(latency=0.02)], "mesh", [(0, 1.0, [1])])
    assert arrivals[(0, 1)] == pytest.approx(0.12)


def test_rate_trace_is_integrated_across_changes():
    # R bytes at rate R for 0.5 s, then at R/2: 0.5 R bytes left take 1 s more.
    r = 1000.0
    arrivals, _ = run([link(up=r, trace=((0.5, 0.5),)), link()], "mesh", [(0, r, [1])])
    assert arrivals[(0, 1)] == pytest.approx(1.5)


def test_star_relay_is_pipelined_per_chunk():
    r, chunk = 1e6, 1000.0
    links = [link(up=r, down=r), link(up=r, down=r)]
    arrivals, net = run(links, "star", [(0, 4 * chunk, [1])], options=NetworkOptions(chunk_bytes=chunk))
    assert arrivals[(0, 1)] == pytest.approx(5 * chunk / r)  # upload, plus the last chunk's download
    assert net.hub_bytes_relayed == pytest.approx(4 * chunk)


def test_shared_medium_two_senders_take_twice_one():
    r, b = 1e6, 3e5
    wifi = [link(up=r, down=r, shared=True) for _ in range(3)]
    one, _ = run(wifi, "star", [(0, b, [2])])
    two, _ = run(wifi, "star", [(0, b, [2]), (1, b, [2])])
    assert one[(0, 2)] == pytest.approx(2 * b / r)  # every byte crosses the air twice
    assert two[(0, 2)] == pytest.approx(2 * one[(0, 2)])
    assert two[(1, 2)] == pytest.approx(2 * one[(0, 2)])  # processor sharing: they finish together
    dedicated = [link(up=r, down=INF) for _ in range(3)]
    two_dedicated, _ = run(dedicated, "star", [(0, b, [2]), (1, b, [2])])
    assert two_dedicated[(0, 2)] == pytest.approx(b / r)  # separate uplinks do not interfere


def test_a_heavier_transmission_gets_a_proportional_share_and_the_channel_stays_full():
    env, r, b = simpy.Environment(), 1e6, 3e5
    channel = Channel(env)
    heavy, light = (channel.transmit(b, Rate([(r, link())]), weight) for weight in (3.0, 1.0))
    env.run()
    # 3:1 shares: the heavy one is done when the light one has sent b/3; the light one then has the channel
    assert (heavy.done.value, light.done.value) == (b, b)
    assert env.now == pytest.approx(2 * b / r)
    env2 = simpy.Environment()
    ch2 = Channel(env2)
    first = ch2.transmit(b, Rate([(r, link())]), 3.0)
    ch2.transmit(b, Rate([(r, link())]), 1.0)
    env2.run(until=first.done)
    assert env2.now == pytest.approx(b / (0.75 * r))


def test_a_share_spread_makes_concurrent_messages_finish_apart_seeded_and_conserving():
    r, b = 1e6, 3e5
    uneven = [link(up=r, down=INF, shared=True, spread=1.0) for _ in range(2)] + [link(down=INF)]
    sends = [(0, b, [2]), (1, b, [2])]

    def arrivals(seed):
        return run(uneven, "star", sends, rng=np.random.default_rng(seed))[0]

    assert arrivals(4) == arrivals(4)
    draws = [arrivals(seed) for seed in range(10)]
    for a in draws:  # work-conserving: the last one still needs the time of both; the first is earlier
        assert max(a.values()) == pytest.approx(2 * b / r)
        assert min(a.values()) < 2 * b / r * 0.999
    assert len({min(a, key=a.get) for a in draws}) == 2  # which one gets ahead changes with the draws
    even, _ = run([link(up=r, down=INF, shared=True) for _ in range(2)] + [link(down=INF)], "star", sends)
    assert even[(0, 2)] == even[(1, 2)] == pytest.approx(2 * b / r)
    with pytest.raises(ValueError, match="share_spread"):
        Network(simpy.Environment(), uneven, "star")


def test_shared_medium_slow_station_takes_more_airtime():
    # Equal throughput per transmission: a station at R/3 occupies 3x the air per byte.
    r, b = 1e6, 1e5
    wifi = [link(up=r, down=INF, shared=True), link(up=r / 3, down=INF, shared=True), link(down=INF)]
    arrivals, _ = run(wifi, "star", [(0, b, [2]), (1, b, [2])])
    # both progress at x with x/r + x/(r/3) = 1, i.e. x = r/4, until both finish at b/x
    assert arrivals[(0, 2)] == pytest.approx(4 * b / r)
    assert arrivals[(1, 2)] == pytest.approx(4 * b / r)


@pytest.mark.parametrize("multicast, airtimes, relayed", [(False, 4, 3), (True, 2, 1)])
def test_ap_multicast_counts_once_on_the_downlink(multicast, airtimes, relayed):
    r, b = 1e6, 2e5
    wifi = [link(up=r, down=r, shared=True) for _ in range(4)]
    arrivals, net = run(wifi, "star", [(3, b, [0, 1, 2])], options=NetworkOptions(multicast=multicast))
    assert max(arrivals.values()) == pytest.approx(airtimes * b / r)
    assert net.hub_bytes_relayed == pytest.approx(relayed * b)
    assert net.bytes_received[:3] == pytest.approx([b, b, b])


@pytest.mark.parametrize("topology, sent, relayed", [("star", 1, 12), ("mesh", 3, 0), ("ring", 3, 0)])
def test_all_gather_byte_counts(topology, sent, relayed):
    b = 5e4
    env = simpy.Environment()
    net = Network(env, [link(up=1e6, down=1e6) for _ in range(4)], topology)
    events = all_gather(net, {p: b for p in range(4)}, range(4))
    env.run()
    assert set(events) == {(s, r) for s in range(4) for r in range(4) if s != r}
    assert all(ev.value is not None for ev in events.values())
    assert net.bytes_sent == pytest.approx([sent * b] * 4)
    assert net.bytes_received == pytest.approx([3 * b] * 4)
    assert net.hub_bytes_relayed == pytest.approx(relayed * b)


def test_mesh_uplink_is_shared_by_outgoing_copies_star_uploads_once():
    r, b = 1e6, 1e5
    links = [link(up=r), link(), link(), link()]
    mesh, _ = run(links, "mesh", [(0, b, [1, 2, 3])])
    star, _ = run(links, "star", [(0, b, [1, 2, 3])])
    assert all(t == pytest.approx(3 * b / r) for t in mesh.values())
    assert all(t == pytest.approx(b / r) for t in star.values())


def test_message_overhead_is_paid_per_message_serially():
    arrivals, _ = run([link() for _ in range(4)], "mesh", [(0, 1.0, [1, 2, 3])], overheads=[0.01, 0, 0, 0])
    assert sorted(arrivals.values()) == pytest.approx([0.01, 0.02, 0.03])


def test_ring_all_gather_takes_n_minus_1_steps():
    r, b = 1e6, 1e5
    links = [link(up=r) for _ in range(3)]
    env = simpy.Environment()
    net = Network(env, links, "ring", options=NetworkOptions(chunk_bytes=b))
    events = all_gather(net, {p: b for p in range(3)}, range(3))
    env.run()
    for (s, r_), ev in events.items():
        steps = (r_ - s) % 3  # hops along the ring 0 -> 1 -> 2 -> 0
        assert ev.value == pytest.approx(steps * b / r)


def test_broadcast_reaches_everyone_and_counts_one_upload():
    env = simpy.Environment()
    net = Network(env, [link(up=1e6, down=1e6) for _ in range(3)], "star")
    events = all_gather(net, {2: 1e4}, range(3))
    env.run()
    assert set(events) == {(2, 0), (2, 1)} and all(ev.value > 0 for ev in events.values())
    assert net.bytes_sent == pytest.approx([0, 0, 1e4])


def test_jitter_is_seeded_and_never_negative():
    links = [link(up=1e6, latency=0.001, jitter=0.01) for _ in range(3)]

    def arrivals(seed, dist="normal"):
        out, _ = run(links, "mesh", [(0, 1e3, [1, 2])], rng=np.random.default_rng(seed),
                     options=NetworkOptions(jitter=dist))
        return out

    assert arrivals(1) == arrivals(1)
    assert arrivals(1) != arrivals(2)
    for dist in ("normal", "exponential"):
        assert all(t >= 1e3 / 1e6 for seed in range(20) for t in arrivals(seed, dist).values())
    with pytest.raises(ValueError, match="rng"):
        Network(simpy.Environment(), links, "mesh")


def test_jitter_of_a_message_does_not_depend_on_other_senders():
    # Draws are keyed by (sender, its message number): an extra message from participant 1 leaves
    # participant 0's latencies untouched (common random numbers across scenarios).
    links = [link(latency=0.001, jitter=0.01) for _ in range(3)]
    alone, _ = run(links, "mesh", [(0, 1.0, [2])], rng=np.random.default_rng(3))
    crowded, _ = run(links, "mesh", [(1, 1.0, [2]), (0, 1.0, [2])], rng=np.random.default_rng(3))
    assert crowded[(0, 2)] == alone[(0, 2)]


def test_failed_sender_loses_what_had_not_left():
    r, b = 1e3, 1e3
    arrivals, net = run([link(up=r), link(), link()], "mesh", [(0, b, [1, 2])], fail=[(0, 1.0)])
    assert arrivals == {(0, 1): None, (0, 2): None}
    assert net.bytes_sent[0] == pytest.approx(r * 1.0)  # bytes on the wire before the failure


def test_star_hub_still_delivers_after_the_sender_left():
    r, b = 1e6, 1e5
    links = [link(up=r, down=r / 10), link(up=r, down=r / 10), link(up=r, down=r / 10)]
    arrivals, _ = run(links, "star", [(0, b, [1, 2])], fail=[(0, 2 * b / r)], options=NetworkOptions(chunk_bytes=b))
    assert arrivals[(0, 1)] == pytest.approx(b / r + 10 * b / r)


def test_ring_relay_failure_cuts_off_downstream_only():
    b = 1e5
    links = [link(up=1e6) for _ in range(4)]
    arrivals, _ = run(links, "ring", [(0, b, [1, 2, 3])], fail=[(1, 0.5 * b / 1e6)])
    assert arrivals == {(0, 1): None, (0, 2): None, (0, 3): None}
    arrivals, _ = run(links, "ring", [(0, b, [1, 2, 3])], fail=[(2, 1.5 * b / 1e6)],
                      options=NetworkOptions(chunk_bytes=b))
    assert arrivals[(0, 1)] == pytest.approx(b / 1e6)
    assert arrivals[(0, 2)] is None and arrivals[(0, 3)] is None


def test_bad_options_fail_clearly():
    with pytest.raises(ValueError, match="topology"):
        Network(simpy.Environment(), [link()], "bus")
    with pytest.raises(ValueError, match="jitter"):
        NetworkOptions(jitter="uniform")
