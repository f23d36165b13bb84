"""Scenario -> one typed run setup. The setup step (this module, `prompt` and `deployment`) is the only code
that reads a scenario's fields: the math, the engine and the records get typed values from `RunSetup`."""

from __future__ import annotations

from dataclasses import dataclass

from fedsim.experiment.config import Scenario
from fedsim.experiment.deployment import Deployment, build_deployment
from fedsim.experiment.identity import run_key
from fedsim.experiment.prompt import Prompt, build_prompt
from fedsim.fedattn.costs import Precision
from fedsim.fedattn.sampling import Sampling
from fedsim.fedattn.schedule import Schedule, make_schedule
from fedsim.models.loading import load_model


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
    s, d = sc.schedule, sc.decoding
    schedule = make_schedule(lm.cfg.n_layers, s.H, phase=s.phase, placement=s.placement, layers=s.layers,
                             publisher_H=s.publisher_H, r_comp=s.r_comp, r_comm=s.r_comm,
                             r_comp_publisher=s.r_comp_publisher, r_comm_publisher=s.r_comm_publisher,
                             publisher_dense=s.publisher_dense)
    return RunSetup(
        run_id=run_key(sc.resolved()), model=sc.model.name, prompt=prompt, schedule=schedule, seed=sc.seed,
        precision=Precision(kv_bytes=sc.model.kv_bytes_per_element),
        sampling=Sampling(d.greedy, d.temperature, d.top_k, d.top_p, sc.seed, d.sampler),
        max_new_tokens=d.max_new_tokens,
        deployment=build_deployment(sc, prompt.partition.publisher))
