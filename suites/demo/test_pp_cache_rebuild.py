"""The pipelined model's weight cache (``--generator pp``) checks every file as ``TtModel``'s does: each cached
tensor is verified against the manifest's checksum as it loads (``runtime.model_config.load_through_cache``),
and an entry with a flipped byte is named, rebuilt and then serves the same logits as before.

Model: the embedded trained model (4 layers) on a 2x2 mesh (2 stages).
"""

from __future__ import annotations

import json
import logging

import pytest
import torch

from deepseek_tt.backend import ttnn
from deepseek_tt.runtime.pipelined_model import PipelinedTtModel
from deepseek_tt.weights.cache import MANIFEST_NAME

pytestmark = pytest.mark.demo

PROMPT = torch.tensor([0, 74, 103, 110, 110, 113, 5, 900])


@pytest.fixture(scope="module")
def mesh_2x2():
    device = ttnn.open_mesh_device(ttnn.MeshShape(2, 2))
    yield device
    ttnn.close_mesh_device(device)


@pytest.fixture(scope="module")
def model_dir():
    from reference_models.embedded import embedded_model_path

    try:
        return embedded_model_path()
    except FileNotFoundError as exc:
        pytest.skip(f"embedded trained model not available: {exc}")


def _load(model_dir, mesh, cache):
    return PipelinedTtModel.load(model_dir, mesh, cache, max_seq_len=64, max_batch_size=4, progress=False)


def _logits(model) -> torch.Tensor:
    model.reset()
    return model.prefill(PROMPT, 3)  # user 3: the last micro-batch


def test_pipelined_cache_entry_is_verified_at_load_and_a_flipped_byte_rebuilt(model_dir, mesh_2x2, tmp_path, caplog):
    cache = tmp_path / "cache"
    first = _load(model_dir, mesh_2x2, cache)
    first_logits = _logits(first)
    hit = _load(model_dir, mesh_2x2, cache)
    assert first.cache_result.converted and not hit.cache_result.converted
    entry = hit.cache_result.entry_dir
    files = json.loads((entry / MANIFEST_NAME).read_text())["files"]
    assert hit._loaded.verified_files == len(files), "not every cached file was checked against its checksum"
    # A file of the last stage: the stages before it load (and are released) before the corruption shows.
    victim = max((entry / "lm_head").rglob("*.tensorbin"), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x40
    victim.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        again = _load(model_dir, mesh_2x2, cache)
    assert again.cache_result.converted and again.cache_result.reason.startswith("rebuilding a corrupt entry"), again.cache_result.reason
    assert victim.name in caplog.text
    assert torch.equal(_logits(again), first_logits)
