"""The weight cache's hit means "same inputs": a shard edited past its header (same size) and a
cached tensor with one flipped byte are both rebuilt, and the model then gives the same tokens and logits
as one loaded through a fresh cache; the demo's ``--recalculate-weights`` reaches the cache.

Model: a ``galaxy-tiny`` checkpoint with one dense layer (the official fp8 layout), on a 1x1 mesh.
"""

from __future__ import annotations

import json
import logging
import shutil
import struct

import pytest
import torch

from deepseek_tt.backend import ttnn
from deepseek_tt.generator import make_generator

pytestmark = pytest.mark.demo

PROMPTS = [[0, 74, 103, 110, 110, 113], [0, 900, 12, 5, 6, 7]]
NEW_TOKENS = 3
BATCH = 4


@pytest.fixture(scope="module")
def tt_mesh():
    device = ttnn.open_mesh_device(ttnn.MeshShape(1, 1))
    yield device
    ttnn.close_mesh_device(device)


@pytest.fixture
def model_dir(preset_checkpoint, tmp_path):
    return shutil.copytree(preset_checkpoint("galaxy-tiny", num_layers=1), tmp_path / "model")


def _load(model_dir, mesh, cache):
    from deepseek_tt.runtime.tt_model import TtModel

    return TtModel.load(model_dir, mesh, cache, max_seq_len=64, max_batch_size=BATCH, progress=False)


def _run(model):
    """(greedy tokens per prompt, prefill logits of the first prompt)."""
    tokens = [r.tokens for r in make_generator("bp", model).generate(PROMPTS, NEW_TOKENS).results]
    model.reset()
    logits = model.prefill(torch.tensor(PROMPTS[0]), 0)
    model.reset()
    return tokens, logits


def _negate_in_place(model_dir, key):
    """Flip the sign of every element of ``key`` inside its shard: same size, header untouched."""
    index = json.loads((model_dir / "model.safetensors.index.json").read_text())
    shard = model_dir / index["weight_map"][key]
    data = bytearray(shard.read_bytes())
    (length,) = struct.unpack("<Q", data[:8])
    info = json.loads(data[8 : 8 + length])[key]
    width = {"BF16": 2, "F16": 2, "F32": 4}[info["dtype"]]
    start, end = (8 + length + o for o in info["data_offsets"])
    for i in range(start + width - 1, end, width):
        data[i] ^= 0x80
    size = shard.stat().st_size
    shard.write_bytes(bytes(data))
    assert shard.stat().st_size == size
    return shard


def test_shard_edited_past_its_header_is_rebuilt_and_matches_a_fresh_cache(model_dir, tt_mesh, tmp_path, caplog):
    cache = tmp_path / "cache"
    before_tokens, before_logits = _run(_load(model_dir, tt_mesh, cache))
    shard = _negate_in_place(model_dir, "lm_head.weight")
    with caplog.at_level(logging.WARNING, logger="deepseek_tt.weights.cache"):
        stale = _load(model_dir, tt_mesh, cache)
    assert stale.cache_result.converted, "the edited checkpoint was served from the old cache entry"
    assert shard.name in caplog.text  # the reason names the changed shard
    fresh = _load(model_dir, tt_mesh, tmp_path / "fresh")
    (stale_tokens, stale_logits), (fresh_tokens, fresh_logits) = _run(stale), _run(fresh)
    assert stale_tokens == fresh_tokens
    assert torch.equal(stale_logits, fresh_logits)
    assert not torch.allclose(stale_logits, before_logits), "the edit did not change the model (the test proves nothing)"
    del before_tokens


def test_flipped_byte_in_a_cached_tensor_is_found_at_load_and_rebuilt(model_dir, tt_mesh, tmp_path, caplog):
    cache = tmp_path / "cache"
    first = _load(model_dir, tt_mesh, cache)
    first_tokens, first_logits = _run(first)
    entry = first.cache_result.entry_dir
    victim = max(entry.rglob("*.tensorbin"), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x40
    victim.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        again = _load(model_dir, tt_mesh, cache)
    assert again.cache_result.converted and "corrupt" in again.cache_result.reason
    assert victim.name in caplog.text
    tokens, logits = _run(again)
    assert tokens == first_tokens and torch.equal(logits, first_logits)


@pytest.mark.parametrize("flag", [True, False])
def test_demo_recalculate_weights_reaches_the_cache(run_cli, model_dir, tmp_path, monkeypatch, flag):
    """``--recalculate-weights`` goes all the way to the cache's ``load_or_convert`` (whose rebuild on
    request is checked in suites/unit/test_weight_cache.py); stopped there to keep the test short."""
    import deepseek_tt.runtime.tt_model as tt_model

    seen = {}

    def stop_here(*args, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(tt_model, "load_or_convert_model_weights", stop_here)
    argv = ["--model-path", model_dir, "--cache-dir", tmp_path / "cache", "--mesh-shape", "1x1", "Hello"]
    r = run_cli(*argv, *(["--recalculate-weights"] if flag else []), runtime="tt")
    assert r.code == 130 and seen["recalculate"] is flag
