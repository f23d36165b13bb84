"""Prompt partition schemes and sync schedules."""

import pytest

from fedsim.common.errors import UserError
from fedsim.fedattn.partition import partition_pieces
from fedsim.fedattn.schedule import make_schedule, placement_layers

LENGTHS = [5, 7, 6, 8, 4]  # four exemplars then the question
KINDS = ["exemplar"] * 4 + ["question"]


def test_contiguous_equal_chunks_question_last():
    p = partition_pieces(LENGTHS, KINDS, 3, "contiguous")
    assert p.sizes() == [10, 10, 10] and p.publisher == 2
    assert p.owner[-1] == 2 and list(p.owner) == sorted(p.owner)


def test_question_exclusive_gives_question_to_publisher_only():
    p = partition_pieces(LENGTHS, KINDS, 3, "question_exclusive")
    assert p.sizes() == [13, 13, 4]


def test_exemplars_whole_pieces():
    assert partition_pieces(LENGTHS, KINDS, 2, "exemplars").sizes() == [12, 18]
    assert partition_pieces(LENGTHS, KINDS, 3, "exemplars_question_exclusive").sizes() == [12, 14, 4]


@pytest.mark.parametrize(
    "n, scheme, field",
    [
        (31, "contiguous", "exceeds the prompt's 30 tokens"),
        (6, "exemplars", "empty segment"),
        (6, "exemplars_question_exclusive", "empty segment"),
        (2, "round_robin", "unknown scheme"),
    ],
)
def test_partition_errors_are_one_line(n, scheme, field):
    with pytest.raises(UserError) as err:
        partition_pieces(LENGTHS, KINDS, n, scheme)
    assert field in str(err.value) and "\n" not in str(err.value)


def test_single_participant_holds_everything():
    assert partition_pieces(LENGTHS, KINDS, 1, "question_exclusive").sizes() == [30]


def test_uniform_phases():
    assert sorted(make_schedule(12, 4).sync_layers) == [0, 4, 8]
    assert sorted(make_schedule(12, 4, phase="last").sync_layers) == [3, 7, 11]
    assert make_schedule(12, 1).sync_layers == frozenset(range(12))


def test_placements_keep_the_sync_count():
    uniform = placement_layers(30, 4, "uniform")
    for name in ("shallow_half", "deep_half", "progressive", "regressive"):
        layers = placement_layers(30, 4, name)
        assert len(layers) == len(uniform) == len(set(layers))
    assert max(placement_layers(30, 4, "shallow_half")) < 15
    assert min(placement_layers(30, 4, "deep_half")) >= 15
    prog = placement_layers(30, 4, "progressive")
    gaps = [b - a for a, b in zip(prog, prog[1:], strict=False)]
    assert gaps == sorted(gaps)  # growing gaps: dense early
    assert make_schedule(30, 4, placement="none").sync_layers == frozenset()


def test_publisher_extra_sync_and_explicit_layers():
    s = make_schedule(12, 4, publisher_H=2)
    assert sorted(s.publisher_layers) == [2, 6, 10] and s.kind(2) == "publisher" and s.kind(4) == "sync"
    assert sorted(make_schedule(12, layers=[11, 3]).sync_layers) == [3, 11]


def test_publisher_interval_may_exceed_H():
    """The authors' mask code takes any interval: multiples of publisher_H that are not syncs."""
    s = make_schedule(24, 8, publisher_H=9)
    assert sorted(s.sync_layers) == [0, 8, 16] and sorted(s.publisher_layers) == [9, 18]
    assert sorted(make_schedule(30, 8, publisher_H=9).publisher_layers) == [9, 18, 27]
    assert make_schedule(24, 8, publisher_H=8).publisher_layers == frozenset()


def test_publisher_ratios_default_to_everyone_s_and_publisher_dense_is_shorthand():
    s = make_schedule(12, 4, r_comp=0.5, r_comm=0.25)
    assert s.ratios(publisher=True) == s.ratios(publisher=False) == (0.5, 0.25) and not s.publisher_dense
    last_comp = make_schedule(12, 4, r_comp=0.5, r_comp_publisher=1.0)  # the authors' sample_last_comp
    assert last_comp.ratios(publisher=True) == (1.0, 1.0) and last_comp.ratios(publisher=False) == (0.5, 1.0)
    sparser = make_schedule(12, 4, r_comm=0.5, r_comp_publisher=0.3, r_comm_publisher=0.1)
    assert sparser.ratios(publisher=True) == (0.3, 0.1) and sparser.ratios(publisher=False) == (1.0, 0.5)
    dense = make_schedule(12, 4, r_comp=0.5, r_comm=0.5, publisher_dense=True)
    assert (dense.r_comp_publisher, dense.r_comm_publisher) == (1.0, 1.0) and dense.publisher_dense


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"H": 0}, "schedule.H: must be an integer >= 1"),
        ({"H": 4, "placement": "middle"}, "schedule.placement"),
        ({"H": 4, "phase": "mid"}, "schedule.phase"),
        ({"H": 4, "r_comm": 0.0}, "schedule.r_comm"),
        ({"H": 4, "publisher_H": 0}, "schedule.publisher_H"),
        ({"H": 4, "r_comp_publisher": 1.5}, "schedule.r_comp_publisher"),
        ({"H": 4, "r_comm_publisher": 0.5, "publisher_dense": True}, "schedule.publisher_dense: contradicts"),
        ({"layers": [12]}, "schedule.layers"),
        ({"H": 1, "placement": "deep_half"}, "do not fit"),
    ],
)
def test_schedule_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        make_schedule(12, **kwargs)
