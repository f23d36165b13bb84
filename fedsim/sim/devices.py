"""Devices: what the engine asks a device (how long a block's parts and a decode step take) and the two kinds
that answer: a roofline from spec-sheet numbers (`DeviceProfile`) and tables measured on the machine itself
(`MeasuredDevice`, written by `fedsim calibrate`). Loaded and looked up by name in fedsim.sim.profiles."""

from __future__ import annotations

import bisect
from typing import Annotated, Literal, NamedTuple, Protocol

from pydantic import Field, StringConstraints, model_validator

from fedsim.common.schema import Section

PRECISIONS = ("fp16", "fp32", "bf16", "int8")
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]  # a non-blank string


class CostLike(Protocol):
    """What a device reads from a block's or a decode step's cost (fedsim.fedattn.costs.LayerCost)."""

    flops_pre: float
    flops_post: float
    flops_post_own: float
    bytes_pre: float
    bytes_post: float
    n_queries: int
    attended_pairs: int
    own_pairs: int
    cache_keys: int


class BlockTimes(NamedTuple):
    """Seconds of one block's parts on a device: before the exchange, after it, and the part of `post` over
    the participant's own keys (what overlap can run while waiting; 0 where the device cannot tell)."""

    pre: float
    post: float
    post_own: float

class DeviceProfile(Section):
    """One device's compute/memory roofline plus its per-message software cost."""

    name: Text = Field(description="the profile's name")
    description: Text = Field(description="what hardware and mode this is")
    peak_flops: float = Field(gt=0, description="dense FLOP/s at `precision`, a number > 0")
    precision: Literal[PRECISIONS] = Field(description="the arithmetic peak_flops is quoted for")
    mem_bandwidth: float = Field(gt=0, description="DRAM bandwidth in bytes/s, a number > 0")
    mem_bytes: float = Field(gt=0, description="DRAM size in bytes, a number > 0")
    efficiency: float = Field(gt=0, le=1, description="the achieved fraction of peak_flops, in (0, 1]")
    msg_overhead_s: float = Field(ge=0, allow_inf_nan=False,
                                  description="software seconds per message sent, a finite number >= 0")
    active_power_w: float | None = Field(None, gt=0, allow_inf_nan=False,
                                         description="watts drawn while computing, a finite number > 0")
    idle_power_w: float | None = Field(None, ge=0, allow_inf_nan=False,
                                       description="watts drawn while waiting, a finite number >= 0")
    source: Text = Field(description="a citation: URL + the numbers read there")
    note: str = Field("", description="derivations and estimates behind the numbers")

    @model_validator(mode="after")
    def _idle_below_active(self) -> DeviceProfile:
        if (self.idle_power_w is None) != (self.active_power_w is None):
            raise ValueError("give both active_power_w and idle_power_w, or neither")
        if self.idle_power_w is not None and self.idle_power_w > self.active_power_w:
            raise ValueError(f"idle_power_w {self.idle_power_w} exceeds active_power_w {self.active_power_w}")
        return self

    def compute_time(self, flops: float, bytes_moved: float) -> float:
        """Roofline time (s): the slower of achieved compute and memory traffic.

        Prefill GEMMs are compute-bound; one-token decode reads every weight for little math, so it
        is memory-bound. Taking the max lets one formula cover both.
        """
        return max(flops / (self.peak_flops * self.efficiency), bytes_moved / self.mem_bandwidth)

    def block_times(self, cost: CostLike) -> BlockTimes:
        own_flops = min(cost.flops_post_own, cost.flops_post)
        own_bytes = cost.bytes_post * own_flops / cost.flops_post if own_flops > 0 else 0.0
        return BlockTimes(self.compute_time(cost.flops_pre, cost.bytes_pre),
                          self.compute_time(cost.flops_post, cost.bytes_post), self.compute_time(own_flops, own_bytes))

    def decode_time(self, cost: CostLike) -> float:
        return self.compute_time(cost.flops_pre + cost.flops_post, cost.bytes_pre + cost.bytes_post)


def _interp(xs: list[float], ys: list[float], x: float) -> float:
    """Piecewise-linear in x through the measured points, extended along the first and last segments."""
    if len(xs) == 1:
        return ys[0] * (x / xs[0] if xs[0] > 0 else 1.0)
    i = min(max(bisect.bisect_right(xs, x) - 1, 0), len(xs) - 2)
    return ys[i] + (ys[i + 1] - ys[i]) * (x - xs[i]) / (xs[i + 1] - xs[i])


Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class MeasuredDevice(Section):
    """A device timed by tables measured on it (`fedsim calibrate`) rather than by a roofline: a block's part
    before the exchange by its queries, the part after it by its queries and the keys before its own chunk
    (0 at a local block, its offset at a sync block), a decode step by the K/V entries it attends. Tables are
    interpolated piecewise linearly. They hold for one model at one thread count with `processes`
    participants computing at once, and say nothing about the overlappable part (post_own is 0)."""

    kind: Literal["measured"] = "measured"
    name: Text = Field(description="the profile's name")
    description: Text = Field(description="what machine and setting this is")
    source: Text = Field(description="how, where and when it was measured")
    note: str = ""
    model: Text = Field(description="the model the tables were measured with")
    threads: int = Field(ge=1, description="torch threads per participant process")
    processes: int = Field(ge=1, description="participant processes computing at once while measuring blocks")
    msg_overhead_s: float = Field(0.0, ge=0, allow_inf_nan=False, description="software seconds per message")
    mem_bytes: float = Field(gt=0, description="memory of the machine in bytes")
    active_power_w: float | None = Field(None, gt=0, allow_inf_nan=False,
                                         description="whole-device watts while computing (not measured: give it)")
    idle_power_w: float | None = Field(None, ge=0, allow_inf_nan=False,
                                       description="whole-device watts while waiting (not measured: give it)")
    queries: list[int] = Field(min_length=1, description="the query counts measured, increasing")
    keys_before: list[int] = Field(min_length=1, description="the keys-before counts measured, increasing from 0")
    pre_s: list[Seconds] = Field(description="seconds of a block's pre part, one per query count")
    post_s: list[list[Seconds]] = Field(description="seconds of a block's post part, [queries][keys_before]")
    decode_keys: list[int] = Field(min_length=1, description="K/V entries a decode step attends (all blocks)")
    decode_s: list[Seconds] = Field(description="seconds of one decode step, one per decode_keys")
    lm_head_s: Seconds = Field(description="seconds of the LM head on one position (the first token)")

    @model_validator(mode="after")
    def _shapes(self) -> MeasuredDevice:
        for grid in ("queries", "keys_before", "decode_keys"):
            values = getattr(self, grid)
            if any(b <= a for a, b in zip(values, values[1:], strict=False)) or values[0] < 0:
                raise ValueError(f"{grid} must increase from a value >= 0")
        if len(self.pre_s) != len(self.queries) or len(self.post_s) != len(self.queries) or \
                any(len(row) != len(self.keys_before) for row in self.post_s) or \
                len(self.decode_s) != len(self.decode_keys):
            raise ValueError("pre_s, post_s and decode_s must match the grids they are measured on")
        return self

    def _post(self, n_queries: float, keys_before: float) -> float:
        per_query = [_interp(self.queries, [row[j] for row in self.post_s], n_queries)
                     for j in range(len(self.keys_before))]
        return _interp(self.keys_before, per_query, keys_before)

    def block_times(self, cost: CostLike) -> BlockTimes:
        if cost.n_queries == 0:
            return BlockTimes(0.0, 0.0, 0.0)
        before = (cost.attended_pairs - cost.own_pairs) / cost.n_queries
        return BlockTimes(_interp(self.queries, self.pre_s, cost.n_queries), self._post(cost.n_queries, before), 0.0)

    def decode_time(self, cost: CostLike) -> float:
        return self.lm_head_s if cost.cache_keys == 0 else _interp(self.decode_keys, self.decode_s, cost.cache_keys)


Device = DeviceProfile | MeasuredDevice
