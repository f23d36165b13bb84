"""The worked example of docs/worked_example.md: the engine's times and bytes equal the hand formulas.

Setup: SmolLM2-135M-Instruct shapes, N=4 Jetson Orin Nano, 4 x 32 prompt tokens, H=4 (8 sync blocks of 30),
star, jitter 0, Wi-Fi 6 and 5G. The hand formulas below are written out from the profile numbers and the
cost model's definitions (FLOPs = 2 per multiply-add, roofline max(FLOPs / (peak x eff), bytes / bandwidth);
energy = active power x compute time + idle power x waiting time + energy per bit x bits on the radio),
independently of the engine. The first test needs no model (a closed-form math object with the real shapes);
the second runs the shipped scenario end to end on the real model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from fedsim.experiment.scenario_file import load_scenario
from fedsim.fedattn.costs import LayerCost, Precision, decode_step_cost, layer_cost, lm_head_flops
from fedsim.fedattn.schedule import make_schedule
from fedsim.models.transformer import ModelConfig
from fedsim.sim.devices import DeviceProfile
from fedsim.sim.energy import participant_energy
from fedsim.sim.engine import EngineOptions, simulate
from fedsim.sim.profiles import LinkProfile, get_device, get_link, with_overrides

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "worked_example.yaml"
# SmolLM2-135M-Instruct's shapes (test_real_model_run checks them against the GGUF).
SMOLLM2 = ModelConfig(arch="llama", n_layers=30, d_model=576, n_heads=9, n_kv_heads=3, d_ff=1536, vocab_size=49152,
                      rope_theta=100000.0, norm_eps=1e-5, tied_embeddings=True)
N, TOKENS, H, N_DECODE = 4, 32, 4, 8
SYNC = frozenset(range(0, SMOLLM2.n_layers, H))


@dataclass(frozen=True)
class Hand:
    pre: float
    post_local: float
    post_sync: float
    kv_bytes: float
    exchange: float
    compute: float
    prefill: float
    lm_head: float
    decode_steps: list[float]
    energy_compute: float  # J, every participant's prefill: active power computing, idle power waiting
    energy_decode: float  # J, the responder's decode on top: active power for every token
    energy_radio: float  # J, every participant: its 8 K/V messages up, the others' 24 down



def hand(dev: DeviceProfile, link: LinkProfile) -> Hand:
    """Every number of the worked example from profile values and model shapes only."""
    d, kv, dff, vocab, layers = 576, 3 * 64, 1536, 49152, 30  # kv_dim = n_kv_heads x head_dim
    n, total = TOKENS, N * TOKENS
    flops_s = dev.peak_flops * dev.efficiency

    def roofline(flops: float, nbytes: float) -> float:
        return max(flops / flops_s, nbytes / dev.mem_bandwidth)

    def attention(pairs: int) -> float:
        return 4 * pairs * 9 * 64  # score + weighted value, 9 heads of 64

    w_qkv, w_rest = d * (d + 2 * kv) * 2, (d * d + 3 * d * dff) * 2  # fp16 weights
    kv_tok = 2 * kv * 2  # K and V, fp16
    rest = 2 * n * d * d + 2 * n * 3 * d * dff
    own_pairs = n * (n + 1) // 2
    pre = roofline(2 * n * d * (d + 2 * kv), w_qkv)
    post_local = roofline(rest + attention(own_pairs), w_rest + n * kv_tok)
    post_sync = [roofline(rest + attention(n * p * n + own_pairs), w_rest + total * kv_tok) for p in range(N)]
    assert len(set(post_sync)) == 1, "the setup is chosen so that every block is memory-bound: equal times"
    kv_bytes = n * kv_tok
    if link.shared_medium:  # one air channel: N uploads, then N(N-1) relayed copies
        wire = N * kv_bytes / link.uplink_Bps + N * (N - 1) * kv_bytes / link.downlink_Bps
    else:  # own uplink; the receiver's downlink carries N-1 messages
        wire = kv_bytes / link.uplink_Bps + (N - 1) * kv_bytes / link.downlink_Bps
    exchange = dev.msg_overhead_s + wire + 2 * link.latency_s
    n_sync = len(SYNC)
    compute = layers * pre + (layers - n_sync) * post_local + n_sync * post_sync[0]
    lm_head = roofline(2 * d * vocab, vocab * d * 2)
    weights = layers * (w_qkv + w_rest) + vocab * d * 2  # tied embeddings: the LM head is read once
    prompt_keys = (layers - n_sync) * n + n_sync * total  # the publisher's K/V cache over all blocks
    steps = []
    for s in range(1, N_DECODE):
        keys = prompt_keys + layers * s
        flops = layers * (2 * d * (d + 2 * kv) + 2 * d * d + 6 * d * dff) + attention(keys) + 2 * d * vocab
        steps.append(roofline(flops, weights + keys * kv_tok))
    energy_compute = dev.active_power_w * compute + dev.idle_power_w * n_sync * exchange
    energy_decode = dev.active_power_w * (lm_head + sum(steps))
    bits_up, bits_down = 8 * n_sync * kv_bytes, 8 * n_sync * (N - 1) * kv_bytes
    energy_radio = bits_up * link.uplink_j_per_bit + bits_down * link.downlink_j_per_bit
    return Hand(pre, post_local, post_sync[0], kv_bytes, exchange, compute, compute + n_sync * exchange, lm_head,
                steps, energy_compute, energy_decode, energy_radio)


class ClosedFormMath:
    """The engine's LayerMath for contiguous equal slices with costs from fedsim.fedattn.costs (no torch model):
    what FedAttnLayerMath reports for this setup, since counts depend only on shapes and the partition."""

    n_layers, n_participants = SMOLLM2.n_layers, N

    def __init__(self) -> None:
        self.schedule = make_schedule(SMOLLM2.n_layers, H)
        self.advanced: list[int] = []

    def layer_kind(self, layer: int) -> str:
        return self.schedule.kind(layer)

    def layer_cost(self, layer: int, participant: int, included: frozenset[int]) -> LayerCost:
        own = TOKENS * (TOKENS + 1) // 2
        if self.layer_kind(layer) == "local":
            return layer_cost(SMOLLM2, TOKENS, own, own, TOKENS, 0)
        earlier = sum(TOKENS for q in included if q < participant)
        held = TOKENS * len(included | {participant})
        return layer_cost(SMOLLM2, TOKENS, own + TOKENS * earlier, own, held, TOKENS)

    def advance(self, layer: int, included: frozenset[int]) -> None:
        assert included == frozenset(range(N))
        self.advanced.append(layer)

    def decode_step_cost(self, step: int) -> LayerCost:
        if step == 0:
            return LayerCost(flops_post=lm_head_flops(SMOLLM2), bytes_post=SMOLLM2.vocab_size * SMOLLM2.d_model * 2)
        keys = (SMOLLM2.n_layers - len(SYNC)) * TOKENS + len(SYNC) * N * TOKENS + SMOLLM2.n_layers * step
        return decode_step_cost(SMOLLM2, keys, Precision())


def no_jitter(name: str) -> LinkProfile:
    return with_overrides(get_link(name), jitter_s=0.0)


@pytest.mark.parametrize("link_name", ["wifi6", "5g"])
def test_engine_equals_hand_formulas(link_name: str) -> None:
    dev, link = get_device("jetson-orin-nano"), no_jitter(link_name)
    math = ClosedFormMath()
    res = simulate(math, [dev] * N, [link] * N, EngineOptions(publisher=N - 1, responder=N - 1, n_decode=N_DECODE,
                                                              trace=True))
    h = hand(dev, link)
    approx = pytest.approx
    assert math.advanced == list(range(SMOLLM2.n_layers))
    compute = {(e.track, e.name): e for e in res.trace_events if e.cat == "compute"}
    for p in range(N):
        for layer in range(SMOLLM2.n_layers):
            assert compute[(p, f"L{layer} pre")].dur_s == approx(h.pre, rel=1e-12)
            post = h.post_sync if layer in SYNC else h.post_local
            assert compute[(p, f"L{layer} post")].dur_s == approx(post, rel=1e-12)
        pre0, post0 = compute[(p, "L0 pre")], compute[(p, "L0 post")]
        assert post0.start_s - (pre0.start_s + pre0.dur_s) == approx(h.exchange, rel=1e-12)
    for r in res.participants:
        assert r.bytes_sent == len(SYNC) * h.kv_bytes
        assert r.bytes_received == len(SYNC) * (N - 1) * h.kv_bytes
        assert r.exposed_bytes == len(SYNC) * h.kv_bytes
        assert r.prefill_compute_s == approx(h.compute, rel=1e-12)
        assert r.prefill_s == approx(h.prefill, rel=1e-12)
    for r in res.participants:  # energy: the engine's times and bytes through fedsim.sim.energy
        energy = participant_energy(dev, link, r)
        responder = r.participant == N - 1
        assert energy.compute_j == approx(h.energy_compute + (h.energy_decode if responder else 0.0), rel=1e-12)
        assert energy.radio_j == approx(h.energy_radio, rel=1e-12)
    pub = res.participants[N - 1]
    assert pub.decode_token_s[0] == approx(h.lm_head, rel=1e-12)
    assert list(pub.decode_token_s[1:]) == approx(h.decode_steps, rel=1e-12)
    assert pub.ttft_s == approx(h.prefill + h.lm_head, rel=1e-12)
    assert pub.decode_s_per_token == approx(sum(h.decode_steps) / (N_DECODE - 1), rel=1e-12)


def test_wifi_exchange_is_shared_airtime_and_5g_is_uplink_bound() -> None:
    """The two network effects the example is about, as ratios that hold whatever the profile numbers."""
    dev = get_device("jetson-orin-nano")
    wifi, g5 = no_jitter("wifi6"), no_jitter("5g")
    kv = hand(dev, wifi).kv_bytes
    assert wifi.uplink_Bps == wifi.downlink_Bps and wifi.shared_medium and not g5.shared_medium
    wire_wifi = hand(dev, wifi).exchange - dev.msg_overhead_s - 2 * wifi.latency_s
    assert wire_wifi == pytest.approx(N * N * kv / wifi.uplink_Bps, rel=1e-12)  # 4 uploads + 12 copies, one channel
    wire_5g = hand(dev, g5).exchange - dev.msg_overhead_s - 2 * g5.latency_s
    assert wire_5g == pytest.approx(kv / g5.uplink_Bps + (N - 1) * kv / g5.downlink_Bps, rel=1e-12)
    assert kv / g5.uplink_Bps > (N - 1) * kv / g5.downlink_Bps  # 5G: the one upload outlasts three downloads


@pytest.mark.slow
@pytest.mark.parametrize("link_name", ["wifi6", "5g"])
def test_real_model_run_equals_hand_formulas(real_model, link_name: str) -> None:
    from fedsim.experiment.quality import centralized_reference
    from fedsim.experiment.run import run_scenario
    from fedsim.experiment.setup import prepare
    from fedsim.experiment.sweep import expand_grid

    shape = ("n_layers", "d_model", "n_heads", "n_kv_heads", "d_ff", "vocab_size", "tied_embeddings")
    assert [getattr(real_model.cfg, f) for f in shape] == [getattr(SMOLLM2, f) for f in shape]
    (sc,) = [s for s in expand_grid(load_scenario(SCENARIO)) if s.network.link == link_name]
    setup = prepare(sc)
    assert setup.prompt.partition.sizes() == [TOKENS] * N
    assert len(centralized_reference(real_model, setup.tokens, sc.decoding.max_new_tokens).continuation) == N_DECODE
    rec = run_scenario(sc)
    h = hand(get_device(sc.participants.device), no_jitter(link_name))
    p = rec.participants
    approx = pytest.approx
    assert p.prefill_s.tolist() == approx([h.prefill] * N, rel=1e-12)
    assert rec.summary["exchange_s"] == approx(h.exchange, rel=1e-12)  # last sender ready to last delivery
    assert p.prefill_compute_s.tolist() == approx([h.compute] * N, rel=1e-12)
    assert p.bytes_sent.tolist() == [len(SYNC) * h.kv_bytes] * N
    pub = p[p.responder].iloc[0]
    assert pub.ttft_s == approx(h.prefill + h.lm_head, rel=1e-12)
    assert pub.decode_s_per_token == approx(sum(h.decode_steps) / (N_DECODE - 1), rel=1e-12)
    decode_energy = [h.energy_decode if r else 0.0 for r in p.responder]
    assert p.energy_compute_j.tolist() == approx([h.energy_compute + d for d in decode_energy], rel=1e-12)
    assert p.energy_radio_j.tolist() == approx([h.energy_radio] * N, rel=1e-12)
    assert p.energy_j.tolist() == approx([h.energy_compute + d + h.energy_radio for d in decode_energy], rel=1e-12)
