"""Which transformer blocks synchronise, and how sparsely.

A schedule marks each block `sync` (global attention over everyone's K/V), `publisher` (only the task
publisher broadcasts its K/V: the authors' extra publisher sync at every multiple of H_p that is not a
sync, any H_p >= 1) or `local`. Placements follow the authors' code (FedAttn `utils.get_points`): the same
number of syncs as the uniform interval H, packed into the shallow half, the deep half, or spread with
growing / shrinking gaps. Where their code is broken (regressive gaps at H <= 2 give duplicate and
out-of-range layers) the schedule is the one they intended: ceil(n_layers / H) distinct layers in range
(docs/authors.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fedsim.common.errors import UserError

PHASES = ("first", "last")
PLACEMENTS = ("uniform", "shallow_half", "deep_half", "progressive", "regressive", "none")


@dataclass(frozen=True)
class Schedule:
    n_layers: int
    sync_layers: frozenset[int]
    publisher_layers: frozenset[int] = frozenset()
    r_comp: float = 1.0  # fraction of its own tokens a participant keeps as keys for local attention
    r_comm: float = 1.0  # fraction of its kept tokens a participant shares at each sync
    # The publisher's own ratios (the authors' ratio_last_comp / ratio_last_comm); None: same as everyone's.
    r_comp_publisher: float | None = None
    r_comm_publisher: float | None = None

    def ratios(self, publisher: bool) -> tuple[float, float]:
        """(r_comp, r_comm) of the publisher or of a collaborator."""
        if not publisher:
            return self.r_comp, self.r_comm
        comp = self.r_comp if self.r_comp_publisher is None else self.r_comp_publisher
        comm = self.r_comm if self.r_comm_publisher is None else self.r_comm_publisher
        return comp, comm

    @property
    def publisher_dense(self) -> bool:
        """Whether the publisher keeps and shares all its tokens (the `publisher_dense` shorthand)."""
        return self.ratios(publisher=True) == (1.0, 1.0)

    def kind(self, layer: int) -> str:
        if layer in self.sync_layers:
            return "sync"
        if layer in self.publisher_layers:
            return "publisher"
        return "local"


def _uniform_points(start: int, end: int, k: int) -> list[int]:
    n = end - start
    return [start + (i * n) // k for i in range(k)]


def _spaced_points(start: int, end: int, k: int, growing: bool) -> list[int]:
    """k distinct points from start to end whose gaps grow (or shrink) linearly.

    Positions are rounded as the authors do (the float ratio acc/total first, then Python's round), and
    pushed forward where two collide. Their code then shifts earlier points back by the overshoot but
    leaves the last point past `end`; here the last point is `end` and the others are pushed back just
    enough to stay distinct. Without an overshoot both give the same points.
    """
    if k < 2:
        return [start][:k]
    weights = list(range(1, k))
    if not growing:
        weights.reverse()
    total, acc, pos = sum(weights), 0, [start]
    for w in weights:
        acc += w
        pos.append(round(start + (end - start) * (acc / total)))
    fixed = [start]
    for p in pos[1:-1]:
        fixed.append(max(fixed[-1] + 1, p))
    fixed.append(end)
    for i in range(k - 2, -1, -1):
        fixed[i] = min(fixed[i], fixed[i + 1] - 1)
    return fixed


def placement_layers(n_layers: int, H: int, placement: str, phase: str = "first") -> list[int]:
    """The sync layers of a placement; non-uniform ones keep the uniform count ceil(n_layers / H)."""
    if placement not in PLACEMENTS:
        raise UserError("schedule.placement", f"unknown '{placement}'", f"choose one of {', '.join(PLACEMENTS)}")
    if phase not in PHASES:
        raise UserError("schedule.phase", f"unknown '{phase}'", "choose 'first' (authors' code) or 'last' (paper)")
    if placement == "none":
        return []
    if placement == "uniform":
        offset = 0 if phase == "first" else H - 1
        return [layer for layer in range(n_layers) if layer % H == offset]
    count = len(range(0, n_layers, H))
    if placement in ("shallow_half", "deep_half"):
        if count > n_layers // 2:
            raise UserError("schedule.placement", f"{placement}: {count} syncs do not fit in half of {n_layers} layers",
                            "use H >= 2")
        front = _uniform_points(0, n_layers // 2, count)
        return front if placement == "shallow_half" else sorted(n_layers - 1 - x for x in front)
    return _spaced_points(0, n_layers - 1, count, growing=placement == "progressive")


def make_schedule(
    n_layers: int,
    H: int = 1,
    *,
    phase: str = "first",
    placement: str = "uniform",
    layers: Iterable[int] | None = None,
    publisher_H: int | None = None,
    r_comp: float = 1.0,
    r_comm: float = 1.0,
    r_comp_publisher: float | None = None,
    r_comm_publisher: float | None = None,
    publisher_dense: bool = False,
) -> Schedule:
    """Build and validate a schedule. `layers` (an explicit list) overrides `H`/`placement`;
    `publisher_dense` is shorthand for r_comp_publisher = r_comm_publisher = 1."""
    if not isinstance(H, int) or H < 1:
        raise UserError("schedule.H", f"must be an integer >= 1 (got {H!r})", "H=1 syncs every block")
    if publisher_dense:
        for name, r in (("r_comp_publisher", r_comp_publisher), ("r_comm_publisher", r_comm_publisher)):
            if r not in (None, 1.0):
                raise UserError("schedule.publisher_dense", f"contradicts {name}={r}",
                                f"drop publisher_dense (it means both publisher ratios are 1.0) or {name}")
        r_comp_publisher = r_comm_publisher = 1.0
    ratios = {"r_comp": r_comp, "r_comm": r_comm, "r_comp_publisher": r_comp_publisher,
              "r_comm_publisher": r_comm_publisher}
    for name, r in ratios.items():
        if r is not None and not 0.0 < r <= 1.0:
            raise UserError(f"schedule.{name}", f"must be in (0, 1] (got {r})", "1.0 means dense")
    if layers is not None:
        sync = sorted(set(int(x) for x in layers))
        bad = [x for x in sync if not 0 <= x < n_layers]
        if bad:
            raise UserError("schedule.layers", f"{bad} out of range", f"the model has layers 0..{n_layers - 1}")
    else:
        sync = placement_layers(n_layers, H, placement, phase)
    publisher: list[int] = []
    if publisher_H is not None:
        if not isinstance(publisher_H, int) or publisher_H < 1:
            raise UserError("schedule.publisher_H", f"must be an integer >= 1 (got {publisher_H!r})",
                            "the publisher also broadcasts at every multiple of publisher_H that is not a sync")
        publisher = [x for x in range(0, n_layers, publisher_H) if x not in sync]
    return Schedule(n_layers, frozenset(sync), frozenset(publisher), float(r_comp), float(r_comm),
                    _float_or_none(r_comp_publisher), _float_or_none(r_comm_publisher))


def _float_or_none(r: float | None) -> float | None:
    return None if r is None else float(r)
