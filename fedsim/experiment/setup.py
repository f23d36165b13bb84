"""Scenario -> one typed run setup. The setup step (this module, `prompt` and `deployment`) is the only code
that reads a scenario's fields: the math, the engine and the records get typed values from `RunSetup`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fedsim.common.errors import UserError
from fedsim.experiment.config import Scenario, config_hash
from fedsim.experiment.deployment import Deployment, build_deployment
from fedsim.experiment.prompt import Prompt, build_prompt
from fedsim.fedattn.costs import Precision, simulation_memory_bytes
from fedsim.fedattn.decode import Sampling
from fedsim.fedattn.schedule import Schedule, make_schedule
from fedsim.models.loading import LoadedModel, load_model

MEMORY_FRACTION = 0.5  # of this machine's memory that one run may plan to use (sweeps run two at a time)


@dataclass(frozen=True)
class RunSetup:
    """Everything one run needs, read off its scenario once (picklable: sweeps ship it to workers)."""

    run_id: str
    model: str
    prompt: Prompt
    schedule: Schedule
    seed: int
    precision: Precision
    sampling: Sampling
    max_new_tokens: int
    deployment: Deployment

    @property
    def tokens(self) -> tuple[int, ...]:
        return self.prompt.tokens

    @property
    def responder(self) -> int:
        return self.deployment.engine.responder


def prepare(sc: Scenario) -> RunSetup:
    """The run setup of a scenario. Raises a UserError for what the schema alone cannot tell (it needs the
    model's depth or the tokenized prompt)."""
    lm = load_model(sc.model.name)
    prompt = build_prompt(sc, lm)
    check_fits(sc, lm, len(prompt.tokens))
    s, d = sc.schedule, sc.decoding
    schedule = make_schedule(lm.cfg.n_layers, s.H, phase=s.phase, placement=s.placement, layers=s.layers,
                             publisher_H=s.publisher_H, r_comp=s.r_comp, r_comm=s.r_comm,
                             publisher_dense=s.publisher_dense)
    return RunSetup(
        run_id=config_hash(sc.resolved()), model=sc.model.name, prompt=prompt, schedule=schedule, seed=sc.seed,
        precision=Precision(kv_bytes=sc.model.kv_bytes_per_element),
        sampling=Sampling(d.greedy, d.temperature, d.top_k, d.top_p, sc.seed), max_new_tokens=d.max_new_tokens,
        deployment=build_deployment(sc, prompt.partition.publisher))


def check_fits(sc: Scenario, lm: LoadedModel, n_tokens: int) -> None:
    """The bounds only the model knows: context length, vocabulary size, and the memory a run needs
    (fedsim.fedattn.costs.simulation_memory_bytes) against MEMORY_FRACTION of this machine's memory."""
    cfg, d, name = lm.cfg, sc.decoding, sc.model.name
    shorten = "shorten the prompt (fewer task.shots, a shorter task.text or fewer task.max_words)"
    if n_tokens > cfg.context_length:
        raise UserError("task", f"the prompt has {n_tokens:,} tokens, more than {name}'s context of "
                        f"{cfg.context_length:,}", shorten)
    if n_tokens + d.max_new_tokens > cfg.context_length:
        raise UserError("decoding.max_new_tokens", f"{d.max_new_tokens:,} new tokens after a {n_tokens:,}-token "
                        f"prompt exceed {name}'s context of {cfg.context_length:,} tokens",
                        f"use at most {cfg.context_length - n_tokens:,}, or {shorten}")
    if d.top_k > cfg.vocab_size:
        raise UserError("decoding.top_k", f"{d.top_k:,} exceeds {name}'s vocabulary of {cfg.vocab_size:,} tokens",
                        f"use 0 (off) or at most {cfg.vocab_size:,}")
    need, limit = simulation_memory_bytes(cfg, n_tokens, sc.participants.n, d.max_new_tokens), memory_limit_bytes()
    if need > limit:
        raise UserError("task", f"the run needs about {need / 1e9:,.1f} GB of memory ({n_tokens:,} prompt tokens, "
                        f"{sc.participants.n} participants, {d.max_new_tokens} new tokens), more than the "
                        f"{limit / 1e9:,.1f} GB limit (half of this machine's memory)",
                        f"{shorten}, or lower participants.n or decoding.max_new_tokens")


def memory_limit_bytes() -> float:
    """MEMORY_FRACTION of the physical memory, or of the container's limit (cgroup v2) when that is lower."""
    total = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) if hasattr(os, "sysconf") else 16e9
    try:
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        total = min(total, float(text)) if text.isdigit() else total
    except OSError:
        pass
    return MEMORY_FRACTION * total
