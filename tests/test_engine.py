"""Engine invariants with a fake LayerMath whose costs are closed-form, so every expected time is hand-computable."""

import json
import math
from dataclasses import dataclass

import pytest

from fedsim.sim.devices import DeviceProfile
from fedsim.sim.engine import EngineOptions, simulate
from fedsim.sim.profiles import LinkProfile

INF = math.inf


@dataclass(frozen=True)
class Cost:
    flops_pre: float = 0.0
    flops_post: float = 0.0
    bytes_pre: float = 0.0
    bytes_post: float = 0.0
    send_bytes: float = 0.0
    flops_post_own: float = 0.0


class FakeMath:
    """Participant p holds tokens[p] tokens. pre = tok FLOPs, post = 2 tok (+ tok per other included
    participant at sync blocks), own attention = 0.5 tok, K/V = kv_per_token x tok bytes when it sends.
    Records every advance(layer, included) and every send_bytes it reports."""

    def __init__(self, kinds, tokens, *, kv_per_token=100.0, decode_bytes=0.0):
        self.kinds, self.tokens = list(kinds), list(tokens)
        self.n_layers, self.n_participants = len(self.kinds), len(self.tokens)
        self.kv_per_token, self.decode_bytes = kv_per_token, decode_bytes
        self.advanced: list[tuple[int, frozenset[int]]] = []
        self.reported_send: dict[tuple[int, int], float] = {}

    def layer_kind(self, layer):
        return self.kinds[layer]

    def layer_cost(self, layer, p, included):
        tok, kind = self.tokens[p], self.kinds[layer]
        sends = kind == "sync" or (kind == "publisher" and p == self.n_participants - 1)
        send = self.kv_per_token * tok if sends else 0.0
        self.reported_send[(layer, p)] = send
        extra = tok * len(included - {p}) if kind == "sync" else 0.0
        return Cost(flops_pre=tok, flops_post=2 * tok + extra, flops_post_own=0.5 * tok,
                    send_bytes=send)

    def advance(self, layer, included):
        self.advanced.append((layer, included))

    def decode_step_cost(self, step):
        # like the real math: decode costs depend on the final K/V caches, so prefill must be complete
        assert len(self.advanced) == self.n_layers, "decode cost asked before every block ran"
        return Cost(flops_post=1.0, bytes_post=self.decode_bytes)


def device(flops: float = 1.0, *, mem_bw: float = INF, name: str = "dev") -> DeviceProfile:
    """compute_time = flops / `flops` (FLOP/s) when memory is infinitely fast."""
    return DeviceProfile(name=name, description="hand numbers", peak_flops=flops, precision="fp32",
                         mem_bandwidth=mem_bw, mem_bytes=1e9, efficiency=1.0, msg_overhead_s=0.0, source="test")


def link(up: float = INF, down: float = INF, latency: float = 0.0, *, shared: bool = False,
         jitter: float = 0.0) -> LinkProfile:
    return LinkProfile(name="link", description="hand numbers", uplink_Bps=up, downlink_Bps=down, latency_s=latency,
                       jitter_s=jitter, shared_medium=shared, source="test")


def sim(fake, devices, links, topology="star", **kw):
    kw.setdefault("responder", fake.n_participants - 1)
    kw.setdefault("n_decode", 0)
    kw.setdefault("publisher", fake.n_participants - 1)
    kw["dropout"] = tuple(kw.get("dropout", ()))
    result = simulate(fake, devices, links, EngineOptions(topology=topology, **kw))
    assert [layer for layer, _ in fake.advanced] == list(range(fake.n_layers))  # once per block, in order
    assert [inc for _, inc in fake.advanced] == [lr.included for lr in result.layers]
    for p in result.participants:
        if not p.dropped:
            assert p.prefill_s == pytest.approx(p.prefill_compute_s + p.prefill_wait_s)
    return result


KINDS = ["local", "sync", "local", "publisher", "sync", "local"]


def test_ideal_network_prefill_equals_slowest_compute():
    fake = FakeMath(KINDS, [3, 5, 4])
    devices = [device(2.0), device(1.0), device(3.0)]  # participant 1 is slowest everywhere
    result = sim(fake, devices, [link() for _ in range(3)])
    slowest = result.participants[1]
    assert slowest.prefill_wait_s == 0.0
    assert max(p.prefill_s for p in result.participants) == pytest.approx(slowest.prefill_compute_s)
    # closed form: pre + post per block, +tok per other participant at the two sync blocks
    assert slowest.prefill_compute_s == pytest.approx(6 * 3 * 5 + 2 * 2 * 5)
    assert all(lr.included == {0, 1, 2} for lr in result.layers)


def test_single_participant_has_no_communication():
    fake = FakeMath(KINDS, [7])
    result = sim(fake, [device()], [link(1e3, 1e3, 0.1)], responder=0, n_decode=3)
    (p,) = result.participants
    assert (p.bytes_sent, p.bytes_received, p.prefill_comm_s, p.prefill_wait_s) == (0, 0, 0, 0)
    assert (p.exposed_layers, p.exposed_bytes) == ((), 0)
    assert result.trace is None  # not traced
    assert p.prefill_s == pytest.approx(6 * 3 * 7)


@pytest.mark.parametrize("topology", ["star", "mesh", "ring"])
def test_bytes_sent_match_exposed_send_bytes(topology):
    fake = FakeMath(KINDS, [3, 5, 4])
    result = sim(fake, [device() for _ in range(3)], [link(1e4, 1e4, 1e-3) for _ in range(3)], topology)
    exposed = {(layer, p) for layer, kind in enumerate(KINDS) for p in range(3)
               if kind == "sync" or (kind == "publisher" and p == 2)}
    reported = sum(fake.reported_send[key] for key in exposed)
    copies = {"star": 1, "mesh": 2, "ring": 2}[topology]  # mesh: a copy per receiver; ring: forwards
    assert sum(p.bytes_sent for p in result.participants) == pytest.approx(copies * reported)
    assert sum(p.exposed_bytes for p in result.participants) == pytest.approx(reported)
    assert [p.exposed_layers for p in result.participants] == [(1, 4), (1, 4), (1, 3, 4)]
    assert result.hub_bytes_relayed == pytest.approx(2 * reported if topology == "star" else 0.0)


def test_exchange_timing_and_comm_accounting():
    # Two equal participants, one sync block, mesh, receivers' downlinks infinitely fast:
    # the K/V (100 x 4 bytes at 400 B/s) takes 1 s + both link latencies.
    fake = FakeMath(["sync"], [4, 4])
    result = sim(fake, [device(), device()], [link(up=400.0, latency=0.05) for _ in range(2)], "mesh")
    for p in result.participants:
        assert p.prefill_wait_s == pytest.approx(1.1)
        assert p.prefill_s == pytest.approx(4 + 1.1 + 12)  # pre, exchange, post (2*4 + 4 for the other)
        assert p.prefill_comm_s == pytest.approx(1.0)  # its upload; the download is instantaneous
        assert p.bytes_sent == p.bytes_received == pytest.approx(400.0)


@pytest.mark.parametrize("rate, wait", [(400.0, 1.1 - 2.0), (100.0, 4.1 - 2.0)])
def test_overlap_hides_the_exchange_behind_own_attention(rate, wait):
    # own attention = 0.5 x 4 = 2 s of compute runs while the K/V is in flight (1.1 s or 4.1 s).
    fake = FakeMath(["sync"], [4, 4])
    links = [link(up=rate, latency=0.05) for _ in range(2)]
    plain = sim(FakeMath(["sync"], [4, 4]), [device(), device()], links, "mesh").participants[0]
    hidden = sim(fake, [device(), device()], links, "mesh", overlap=True).participants[0]
    assert hidden.prefill_wait_s == pytest.approx(max(0.0, wait))
    assert hidden.prefill_compute_s == pytest.approx(plain.prefill_compute_s)
    assert hidden.prefill_s == pytest.approx(plain.prefill_s - min(2.0, plain.prefill_wait_s))


def test_publisher_does_not_wait_collaborators_do():
    fake = FakeMath(["publisher"], [1, 1, 1])
    result = sim(fake, [device() for _ in range(3)], [link(up=50.0) for _ in range(3)], "star")
    assert result.participants[2].prefill_wait_s == 0.0
    assert [p.prefill_wait_s for p in result.participants[:2]] == pytest.approx([2.0, 2.0])  # 100 B at 50 B/s
    assert result.participants[0].bytes_sent == 0.0


def test_deadline_excludes_a_slow_participant_and_the_math_runs_without_it():
    fake = FakeMath(["local", "sync", "local", "sync"], [2, 2, 2])
    devices = [device(1.0), device(0.1), device(1.0)]  # participant 1 is 10x slower
    result = sim(fake, devices, [link() for _ in range(3)], deadline_s=0.5)
    assert [lr.included for lr in result.layers] == [{0, 1, 2}, {0, 2}, {0, 1, 2}, {0, 2}]
    # first sync: 0 and 2 reach it at t=8 (block 0: 2 + 4, then pre: 2), the cutoff is 8.5; participant 1
    # reaches it at t=80
    assert result.layers[1].decided_s == pytest.approx(8.5)
    fast = result.participants[0]
    assert fast.prefill_wait_s == pytest.approx(2 * 0.5)
    assert fast.prefill_s == pytest.approx(4 * 2 * 3 + 2 * 2 + 2 * 0.5)  # + 1 other's K/V at each sync
    slow = result.participants[1]
    assert slow.exposed_layers == () and slow.bytes_sent == 0  # reached after the decision: never sent
    assert slow.bytes_received > 0 and not math.isnan(slow.prefill_s)
    # without a deadline everyone waits for participant 1 and it is included everywhere
    no_deadline = sim(FakeMath(fake.kinds, fake.tokens), devices, [link() for _ in range(3)])
    assert all(lr.included == {0, 1, 2} for lr in no_deadline.layers)
    # participant 0 waits for participant 1 to reach the last sync at t=240, then runs its post (8 s)
    assert no_deadline.participants[0].prefill_s == pytest.approx(248.0)


def test_deadline_does_not_bind_when_everything_arrives_in_time():
    fake = FakeMath(KINDS, [3, 5, 4])
    devices = [device() for _ in range(3)]
    with_deadline = sim(fake, devices, [link(1e4, 1e4, 1e-3) for _ in range(3)], deadline_s=100.0)
    assert all(lr.included == {0, 1, 2} for lr in with_deadline.layers)


def test_dropout_stops_a_participant_and_later_blocks_run_without_it():
    fake = FakeMath(["sync", "local", "sync", "publisher", "sync"], [2, 2, 2])
    devices = [device() for _ in range(3)]
    result = sim(fake, devices, [link(1e4, 1e4) for _ in range(3)], dropout=[(0, 10.0)], n_decode=2)
    # it drops during block 0's post part: in block 0, out of every later block
    assert [lr.included for lr in result.layers] == [{0, 1, 2}, {1, 2}, {1, 2}, {1, 2}, {1, 2}]
    gone = result.participants[0]
    assert gone.dropped and gone.dropped_at_s == 10.0
    assert math.isnan(gone.prefill_s) and math.isnan(gone.ttft_s)
    assert gone.exposed_layers == (0,)  # only the first sync's K/V left it
    assert gone.prefill_compute_s + gone.prefill_wait_s == pytest.approx(10.0)
    responder = result.participants[2]
    assert not responder.dropped and math.isfinite(responder.ttft_s)
    assert len(responder.decode_token_s) == 2


def test_dropout_mid_transfer_excludes_the_sender():
    # participant 0's K/V takes 2 s; it drops 1 s into the transfer: the others continue without it.
    fake = FakeMath(["sync", "local"], [1, 1, 1])
    links = [link(up=50.0), link(), link()]
    result = sim(fake, [device() for _ in range(3)], links, "mesh", dropout=[(0, 2.0)])
    assert result.layers[0].included == {1, 2}
    # pre 1 s, wait until the loss at t=2, post 2 + 1 (one other's K/V), then a local block of 3 s
    assert [p.prefill_s for p in result.participants[1:]] == pytest.approx([8.0, 8.0])


def test_dropout_at_time_zero():
    fake = FakeMath(KINDS, [1, 1, 1])
    result = sim(fake, [device() for _ in range(3)], [link() for _ in range(3)], dropout=[(1, 0.0)])
    assert all(lr.included == {0, 2} for lr in result.layers)
    assert result.participants[1].prefill_compute_s == 0.0


def test_decode_is_memory_bound_and_ttft_adds_the_first_token():
    fake = FakeMath(["local"], [1, 1], decode_bytes=1e9)
    devices = [device(), device(1e6, mem_bw=1e10)]
    result = sim(fake, devices, [link(), link()], n_decode=4)
    resp = result.participants[1]
    assert resp.decode_token_s == pytest.approx((0.1,) * 4)
    assert resp.decode_s_per_token == pytest.approx(0.1)
    assert resp.ttft_s == pytest.approx(resp.prefill_s + 0.1)
    assert resp.flops_decode == 4.0
    assert result.participants[0].ttft_s == result.participants[0].prefill_s
    assert math.isnan(result.participants[0].decode_s_per_token)


def test_responder_dropout_during_decode_keeps_finished_tokens():
    fake = FakeMath(["local"], [1, 1], decode_bytes=1e9)
    devices = [device(), device(1e6, mem_bw=1e10)]  # responder: prefill ends at 2e-6 s, 0.1 s per token
    result = sim(fake, devices, [link(), link()], n_decode=4, dropout=[(1, 0.25)], trace=True)
    resp = result.participants[1]
    assert resp.decode_token_s == pytest.approx((0.1, 0.1))
    assert resp.dropped and resp.dropped_at_s == 0.25
    assert math.isfinite(resp.ttft_s)
    decode = [e for e in result.trace_events if e.track == 1 and e.name.startswith("decode")]
    assert [e.name for e in decode] == ["decode 0", "decode 1", "decode 2 (dropped)"]


def test_same_seed_same_result_different_seed_differs():
    def run(seed):
        fake = FakeMath(KINDS, [3, 5, 4])
        links = [link(1e4, 1e4, 0.01, jitter=0.005) for _ in range(3)]
        return sim(fake, [device() for _ in range(3)], links, seed=seed, trace=True)

    assert repr(run(7)) == repr(run(7))  # repr: NaN fields compare equal
    assert repr(run(7).participants) != repr(run(8).participants)


@pytest.mark.parametrize("overlap, blocks_per_exchange", [(False, 2), (True, 3)])
def test_trace_has_one_event_per_compute_block(overlap, blocks_per_exchange):
    fake = FakeMath(KINDS, [3, 5, 4])
    result = sim(fake, [device() for _ in range(3)], [link(1e4, 1e4) for _ in range(3)], trace=True,
                 overlap=overlap, n_decode=2)
    doc = json.loads(json.dumps(result.trace))  # the JSON document a run stores
    xs = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    for p in range(3):
        compute = [e for e in xs if e["pid"] == p and e["cat"] == "compute"]
        waits_at = [k for k in KINDS if k == "sync" or (k == "publisher" and p != 2)]
        expected = 2 * len(KINDS) + (blocks_per_exchange - 2) * len(waits_at) + (2 if p == 2 else 0)
        assert len(compute) == expected
        assert all(e["tid"] == 0 and e["dur"] >= 0 for e in compute)
    transfers = [e for e in xs if e["cat"] == "transfer"]
    assert {e["pid"] for e in transfers} == {0, 1, 2, 3}  # three senders and the hub
    names = {e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "process_name"}
    assert names == {"P0 dev", "P1 dev", "P2 dev", "hub"}


def test_wifi_shared_medium_all_gather_is_slower_than_dedicated_links():
    fake = FakeMath(["sync"], [4, 4, 4])
    wifi = sim(fake, [device() for _ in range(3)], [link(1e3, 1e3, shared=True) for _ in range(3)])
    fake = FakeMath(["sync"], [4, 4, 4])
    wired = sim(fake, [device() for _ in range(3)], [link(1e3, 1e3) for _ in range(3)])
    # Wi-Fi: 3 uploads + 6 unicast downloads of 400 B share 1000 B/s of air: 3.6 s
    assert wifi.participants[0].prefill_wait_s == pytest.approx(3.6)
    # dedicated: each 400 B upload takes 0.4 s on its own uplink, then each downlink receives 800 B: 0.8 s
    assert wired.participants[0].prefill_wait_s == pytest.approx(1.2)


def test_bad_arguments_fail_clearly():
    fake = FakeMath(["local"], [1, 1])
    ok = EngineOptions(publisher=1, responder=0, n_decode=0)
    with pytest.raises(ValueError, match="responder"):
        simulate(fake, [device()] * 2, [link()] * 2, EngineOptions(publisher=1, responder=5, n_decode=0))
    with pytest.raises(ValueError, match="publisher"):
        simulate(fake, [device()] * 2, [link()] * 2, EngineOptions(publisher=2, responder=0, n_decode=0))
    with pytest.raises(ValueError, match="devices"):
        simulate(fake, [device()], [link()] * 2, ok)
    with pytest.raises(ValueError, match="dropout"):
        simulate(fake, [device()] * 2, [link()] * 2, EngineOptions(publisher=1, responder=0, n_decode=0,
                                                                   dropout=((3, 1.0),)))
    with pytest.raises(ValueError, match="topology"):
        simulate(fake, [device()] * 2, [link()] * 2, EngineOptions(publisher=1, responder=0, n_decode=0,
                                                                   topology="bus"))
    with pytest.raises(ValueError, match="kind"):
        simulate(FakeMath(["dense"], [1]), [device()], [link()], EngineOptions(publisher=0, responder=0, n_decode=0))
