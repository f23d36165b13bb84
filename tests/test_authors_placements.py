"""Sync placements against the authors' `get_points` (FedAttn utils.py) at the depths of real models.

`authors_points` below is a test-only re-implementation of their code, written from its description
(docs/authors.md), bugs included; `intended` is the repair fedsim applies where their list is broken
(duplicate or out-of-range layers: regressive gaps at H <= 2). A few rows of the authors' own table are
pinned as well, so the re-implementation cannot drift with fedsim.
"""

from __future__ import annotations

import math

import pytest

from fedsim.common.errors import UserError
from fedsim.fedattn.schedule import make_schedule, placement_layers

DEPTHS = (24, 28, 30, 32, 36)  # Qwen2.5-0.5B, -1.5B/7B, SmolLM2-135M, 32, Qwen2.5-3B
AUTHORS_NAMES = {"shallow_half": "uni_fr", "deep_half": "uni_bk", "progressive": "inc_gp", "regressive": "dec_gp"}


def _k_uniform(start: int, end: int, k: int) -> list[int]:
    if k > end - start:
        raise ValueError("k > end - start")
    return [start + (i * (end - start)) // k for i in range(k)]


def _forward(start: int, end: int, k: int, mode: str) -> list[int]:
    """Their positions: float ratio first, Python round, ends pinned, then pushed forward to be distinct."""
    weights = list(range(1, k))
    if mode == "dec":
        weights = weights[::-1]
    total, acc, ratios = sum(weights), 0, [0.0]
    for w in weights:
        acc += w
        ratios.append(acc / total)
    pos = [round(start + (end - start) * r) for r in ratios]
    pos[0], pos[-1] = start, end
    out = [pos[0]]
    for v in pos[1:]:
        out.append(max(out[-1] + 1, v))
    return out


def _weighted(start: int, end: int, k: int, mode: str) -> list[int]:
    """Their code: the overshoot is taken off the points before the last, never the last."""
    if k < 2:
        return [start] if k == 1 else []
    out = _forward(start, end, k, mode)
    for i in range(max(0, out[-1] - end)):
        out[-2 - i] -= 1
    return out


def intended(start: int, end: int, k: int, mode: str) -> list[int]:
    """The repair: last point at `end`, earlier ones pushed back just enough to stay distinct."""
    if k < 2:
        return [start] if k == 1 else []
    out = _forward(start, end, k, mode)
    out[-1] = end
    for i in range(k - 2, -1, -1):
        out[i] = min(out[i], out[i + 1] - 1)
    return out


def authors_points(depth: int, H: int, policy: str) -> list[int]:
    k = len([x for x in range(depth) if x % H == 0])
    if policy == "main":
        return [x for x in range(depth) if x % H == 0]
    if policy in ("uni_fr", "uni_bk"):
        front = _k_uniform(0, depth // 2, k)
        return front if policy == "uni_fr" else sorted(depth - 1 - x for x in front)
    return _weighted(0, depth - 1, k, policy[:3])


def broken(points: list[int], depth: int) -> bool:
    return len(set(points)) != len(points) or any(not 0 <= x < depth for x in points)


@pytest.mark.parametrize("depth", DEPTHS)
def test_every_placement_matches_the_authors_or_their_intent(depth: int) -> None:
    broken_cases = []
    for H in range(1, depth + 1):
        count = math.ceil(depth / H)
        assert placement_layers(depth, H, "uniform") == authors_points(depth, H, "main")
        for name, policy in AUTHORS_NAMES.items():
            try:
                theirs = authors_points(depth, H, policy)
            except ValueError:  # their k_uniform_ints refuses: more syncs than half the layers
                with pytest.raises(UserError, match="do not fit"):
                    placement_layers(depth, H, name)
                continue
            ours = placement_layers(depth, H, name)
            if broken(theirs, depth):
                broken_cases.append((policy, H))
                assert ours == intended(0, depth - 1, count, policy[:3])
            else:
                assert ours == theirs
            assert len(set(ours)) == len(ours) == count and all(0 <= x < depth for x in ours)
    assert broken_cases == [("dec_gp", 1), ("dec_gp", 2)]  # only regressive at H <= 2 is broken


def test_reimplementation_reproduces_the_authors_table() -> None:
    """Rows of the authors' get_points output (docs/authors.md), including two broken ones."""
    assert authors_points(30, 2, "dec_gp") == [0, 4, 7, 11, 14, 17, 19, 21, 23, 25, 26, 27, 28, 28, 30]
    assert authors_points(24, 2, "dec_gp") == [0, 4, 7, 10, 13, 16, 18, 20, 21, 22, 22, 24]
    assert authors_points(36, 9, "inc_gp") == [0, 6, 18, 35]
    assert authors_points(36, 9, "dec_gp") == [0, 18, 29, 35]
    assert authors_points(28, 8, "uni_bk") == [17, 20, 24, 27]
    assert authors_points(32, 3, "dec_gp") == [0, 6, 11, 15, 19, 23, 25, 28, 29, 30, 31]
    assert authors_points(30, 4, "inc_gp") == [0, 1, 3, 6, 10, 16, 22, 29]


def test_regressive_at_H2_on_smollm2_has_15_distinct_in_range_syncs() -> None:
    sync = make_schedule(30, 2, placement="regressive").sync_layers
    assert sorted(sync) == [0, 4, 7, 11, 14, 17, 19, 21, 23, 24, 25, 26, 27, 28, 29]
    assert make_schedule(24, 2, placement="regressive").sync_layers == frozenset(
        [0, 4, 7, 10, 13, 16, 18, 19, 20, 21, 22, 23])


def test_rounding_takes_the_ratio_first_like_the_authors() -> None:
    # (end - start) * (acc / total) and (end - start) * acc / total round differently here
    assert placement_layers(46, 10, "regressive") == [0, 18, 31, 40, 45]
    assert placement_layers(46, 10, "regressive") == authors_points(46, 10, "dec_gp")
