"""fedsim: a discrete-event simulator of Federated Attention (FedAttn) over edge networks.

Data flows one way, one subpackage per layer:
    common      the user-error type, atomic writes, YAML, schema rendering (shared by every layer)
    models      the plain-torch transformer, GGUF weights, tokenizers, the table of model names
    workloads   tasks as labelled text pieces, registered by kind
    fedattn     the FedAttn math: partition, schedule, prefill, decode, costs, fidelity metrics
    sim         the SimPy engine: participants, blocks, network, profiles, traces (no torch)
    experiment  scenario config -> run setup -> math <-> engine -> records -> results -> plots
    cli         parses arguments and calls `experiment`

The public API (imported lazily, so `import fedsim` stays light):

    import fedsim
    lm = fedsim.load_model("smollm2-135m-instruct")
    records = fedsim.run_scenario(fedsim.load_scenario("scenarios/default.yaml"))
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "load_model": "fedsim.models.loading",
    "LoadedModel": "fedsim.models.loading",
    "load_scenario": "fedsim.experiment.scenario_file",
    "validate_scenario": "fedsim.experiment.config",
    "Scenario": "fedsim.experiment.config",
    "prepare": "fedsim.experiment.setup",
    "RunSetup": "fedsim.experiment.setup",
    "run_scenario": "fedsim.experiment.run",
    "RunContext": "fedsim.experiment.run",
    "run_sweep": "fedsim.experiment.sweep",
    "FedAttnPrefill": "fedsim.fedattn.prefill",
    "generate": "fedsim.fedattn.decode",
    "Sampling": "fedsim.fedattn.sampling",
    "Partition": "fedsim.fedattn.partition",
    "partition_pieces": "fedsim.fedattn.partition",
    "Schedule": "fedsim.fedattn.schedule",
    "make_schedule": "fedsim.fedattn.schedule",
    "UserError": "fedsim.common.errors",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'fedsim' has no attribute {name!r}")
