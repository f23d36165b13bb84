"""The dequantized-weights cache: one safetensors file per model content, wherever and however often the
GGUF is installed; a new content replaces the old copy; a damaged copy is rebuilt."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGUFWriter

from fedsim.models.weights import cache_path, load_gguf


def write_gguf(path: Path, seed: int) -> Path:
    """A two-tensor llama GGUF (fp32), enough for the reader: config fields, Q (permuted) and embeddings."""
    rng = np.random.default_rng(seed)
    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_embedding_length(8)
    writer.add_head_count(2)
    writer.add_head_count_kv(2)
    writer.add_feed_forward_length(16)
    writer.add_vocab_size(5)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_tensor("token_embd.weight", rng.standard_normal((5, 8), dtype=np.float32))
    writer.add_tensor("blk.0.attn_q.weight", rng.standard_normal((8, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FEDSIM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "weights"


def assert_same(a: tuple, b: tuple) -> None:
    assert a[0] == b[0] and set(a[1]) == set(b[1]) and all(torch.equal(a[1][k], b[1][k]) for k in a[1])


def test_one_copy_per_content_wherever_the_file_is_installed(tmp_path: Path, cache: Path) -> None:
    first = write_gguf(tmp_path / "model.gguf", seed=0)
    direct = load_gguf(first, use_cache=False)
    assert not cache.exists()
    assert_same(load_gguf(first), direct)
    assert [p.name for p in cache.iterdir()] == [cache_path(first).name]
    assert cache_path(first).suffix == ".safetensors"
    (tmp_path / "other-install").mkdir()
    second = Path(shutil.copy(first, tmp_path / "other-install" / "model.gguf"))
    assert cache_path(second) == cache_path(first)
    assert_same(load_gguf(second), direct)  # read from the cache: the same bytes give the same copy
    assert len(list(cache.iterdir())) == 1


def test_new_content_replaces_the_old_copy_and_the_path_keyed_files(tmp_path: Path, cache: Path) -> None:
    old = write_gguf(tmp_path / "model.gguf", seed=0)
    load_gguf(old)
    old_copy = cache_path(old)
    legacy = cache.parent / "model-0123456789ab.pt"  # fedsim 0.1 keyed its cache by path and mtime
    legacy.write_bytes(b"old torch.save file")
    new = write_gguf(tmp_path / "model.gguf", seed=1)  # the package was upgraded in place
    assert cache_path(new) != old_copy
    assert_same(load_gguf(new), load_gguf(new, use_cache=False))
    assert [p.name for p in cache.iterdir()] == [cache_path(new).name] and not legacy.exists()


def test_a_damaged_copy_is_rebuilt(tmp_path: Path, cache: Path) -> None:
    path = write_gguf(tmp_path / "model.gguf", seed=0)
    load_gguf(path)
    cache_path(path).write_bytes(cache_path(path).read_bytes()[:100])
    assert_same(load_gguf(path), load_gguf(path, use_cache=False))
    assert cache_path(path).stat().st_size > 100
