"""A run's identity: its resolved configuration plus everything else that can change its numbers.

A run's folder is named by `run_key`, so upgrading fedsim or a library that computes the numbers, or installing
a model file with other bytes, gives new runs instead of silently reusing results computed by other code.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import fedsim
from fedsim.common.errors import UserError
from fedsim.experiment.config import config_hash
from fedsim.models.catalog import model_digest

# Libraries whose version can change a run's numbers: the math, the engine, the records, the model reader.
NUMERIC_PACKAGES = ("torch", "numpy", "pandas", "simpy", "gguf", "tokenizers")


@lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str | None], ...]:
    found: dict[str, str | None] = {"python": ".".join(platform.python_version_tuple()[:2]),
                                    "fedsim": fedsim.__version__}
    for name in NUMERIC_PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return tuple(found.items())


def versions() -> dict[str, str | None]:
    """Versions of Python (major.minor), fedsim and NUMERIC_PACKAGES, read from package metadata (no import)."""
    return dict(_versions())


def run_identity(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """What names a run: the versions and the content digest of its model's file (stored as versions.json)."""
    return {**versions(), "model_file_sha256": model_digest(resolved["model"]["name"])}


def run_key(resolved: Mapping[str, Any], identity: Mapping[str, Any] | None = None) -> str:
    """12 hex chars of sha256 over the config's hash (`config_hash`) and the run's identity."""
    whole = {"config": config_hash(resolved), "identity": dict(identity or run_identity(resolved))}
    canonical = json.dumps(whole, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def check_identity(expected: Mapping[str, Any], resolved: Mapping[str, Any], where: str) -> None:
    """Refuse to compute a run on a worker whose versions or model file differ from the sweep's: its
    numbers would be filed under a key that does not describe them."""
    here = run_identity(resolved)
    differ = [f"{k} {here.get(k)} here, {v} in the sweep" for k, v in expected.items() if here.get(k) != v]
    if differ:
        raise UserError("--backend", f"worker {where} differs from the sweep: {'; '.join(differ)}",
                        "install the same fedsim, libraries and model packages on every worker")
