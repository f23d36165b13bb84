"""A real FedAttn run of a scenario: one OS process per participant on this machine, each holding only its own
tokens, exchanging K/V over torch.distributed; then the simulator's tables with measured times.

What the runtime supports: dense schedules (uniform, every placement, publisher_H), the star / mesh / ring
topologies, greedy decoding, no faults. Anything else is refused with one line before a process starts.
K/V travel as fp32 tensors, so a real run's scenario says `model.kv_bytes_per_element: 4`, and its bytes
then equal the simulator's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from fedsim.common.errors import UserError
from fedsim.experiment.config import Scenario
from fedsim.experiment.quality import centralized_reference
from fedsim.experiment.real_records import real_tables, real_trace
from fedsim.experiment.setup import RunSetup, prepare
from fedsim.models.loading import load_model
from fedsim.real.launch import free_port, launch
from fedsim.real.worker import run as run_worker


@dataclass(frozen=True)
class RealOptions:
    """How the run is executed on this machine (not part of the scenario: the testbed)."""

    threads: int = 1  # torch threads per participant process
    timeout_s: float = 600.0  # the whole run, model loading included; also bounds every collective
    master_port: int | None = None  # rendezvous port (default: a free one)
    rate_mbit: float | None = None  # loopback shaped by tbf in a private network namespace; None: unshaped
    burst_kb: float = 8.0  # the token bucket's burst (kept small: exchange times do not depend on idle time)

    def label(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("timeout_s", "master_port")}


@dataclass
class RealRun:
    run_id: str
    records: list[dict[str, Any]]
    participants: Any
    layers: Any
    summary: dict[str, Any]
    trace: dict[str, Any]


def check_supported(sc: Scenario) -> None:
    """Refuse, in one line, what the runtime does not do (yet)."""
    s, d, f = sc.schedule, sc.decoding, sc.faults
    rules = [
        (s.r_comp != 1.0, "schedule.r_comp", "sparse local attention is simulated only; set 1.0"),
        (s.r_comm != 1.0, "schedule.r_comm", "sparse K/V sync is simulated only; set 1.0"),
        (f.deadline_s is not None, "faults.deadline_s", "deadlines are simulated only; set null"),
        (f.dropout is not None, "faults.dropout", "dropouts are simulated only; set null"),
        (not d.greedy, "decoding.greedy", "the runtime decodes greedily; set true"),
        (sc.model.kv_bytes_per_element != 4, "model.kv_bytes_per_element",
         "the runtime sends K/V as fp32 tensors; set 4 so that its bytes and the simulator's agree"),
        (sc.engine.overlap, "engine.overlap", "the runtime does not overlap compute and exchange; set false"),
    ]
    for bad, field, fix in rules:
        if bad:
            raise UserError(field, "not supported by the real runtime", fix, sc.source)


def run_id(sc: Scenario, options: RealOptions) -> str:
    """The scenario's identity plus the testbed's (the same scenario measured on another link is another run)."""
    identity = {k: v for k, v in sc.resolved().items() if k not in ("output_dir", "sweep")}
    canonical = json.dumps({"scenario": identity, "real": options.label()}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def worker_specs(setup: RunSetup, sc: Scenario, options: RealOptions, keep_logits: bool = False) -> list[dict]:
    """One spec per rank. A participant's spec carries its own token ids and global offset, never another
    participant's; the star adds a relay rank that holds no prompt at all."""
    lm = load_model(setup.model)
    part, sched = setup.prompt.partition, setup.schedule
    sizes = part.sizes()
    star = sc.network.topology == "star" and part.n_participants > 1
    common = {
        "n_participants": part.n_participants, "world_size": part.n_participants + star,
        "publisher": part.publisher, "responder": setup.responder, "topology": sc.network.topology,
        "schedule": {"n_layers": sched.n_layers, "sync_layers": sorted(sched.sync_layers),
                     "publisher_layers": sorted(sched.publisher_layers)},
        "threads": options.threads, "timeout_s": options.timeout_s,
    }
    specs = []
    for p in range(part.n_participants):
        offset = sum(sizes[:p])
        specs.append({**common, "rank": p, "role": "participant", "model": setup.model,
                      "tokens": list(setup.tokens[offset:offset + sizes[p]]), "offset": offset,
                      "decode": {"max_new_tokens": setup.max_new_tokens, "eos_ids": list(lm.tokenizer.eos_ids)},
                      "keep_logits": keep_logits})
    if star:
        specs.append({**common, "rank": part.n_participants, "role": "relay", "kv_heads": lm.cfg.n_kv_heads,
                      "head_dim": lm.cfg.head_dim})
    return specs


def run_real(sc: Scenario, options: RealOptions, keep_logits: bool = False, rank: int | None = None,
             world_size: int | None = None) -> RealRun | None:
    """Launch the participants (and the relay) on this machine, wait for them, and tabulate what they measured.

    With `rank`, this process is that one rank of a run across machines instead (rendezvous from
    MASTER_ADDR / MASTER_PORT, as torch.distributed does); rank 0 tabulates, the others return None."""
    check_supported(sc)
    setup = prepare(sc)
    specs = worker_specs(setup, sc, options, keep_logits)
    if rank is None:
        records = launch(specs, master_port=options.master_port or free_port(), timeout_s=options.timeout_s,
                         threads=options.threads)
    else:
        if world_size != len(specs) or not 0 <= rank < len(specs):
            raise UserError("--world-size", f"this scenario's run has {len(specs)} ranks (got --world-size "
                            f"{world_size}, --rank {rank})", f"start ranks 0..{len(specs) - 1} with --world-size "
                            f"{len(specs)} (the star's relay is rank {len(specs) - 1})")
        records = run_worker(specs[rank])  # this rank keeps only its own spec: its own tokens
        if records is None:
            return None
    lm = load_model(setup.model)
    ref = centralized_reference(lm, setup.tokens, setup.max_new_tokens)  # after the run: no CPU taken from it
    rid = run_id(sc, options)
    participants, layers, summary = real_tables(setup, records, ref, lm.cfg, lm.tokenizer.decode, rid)
    return RealRun(rid, records, participants, layers, summary, real_trace(records))
