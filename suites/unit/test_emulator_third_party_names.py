"""Behaviour of names third-party TT-NN code uses, as ttnn 0.81.1 shows it (values read from the wheel)."""

from __future__ import annotations

import pytest
import torch

from deepseek_tt.backend import emulator as ttnn

pytestmark = [pytest.mark.unit, pytest.mark.quick]


def _ranges(crs):
    return [((r.start.x, r.start.y), (r.end.x, r.end.y)) for r in crs.ranges()]


@pytest.mark.parametrize("n, grid, row_wise, expected", [
    (5, (8, 8), False, [((0, 0), (0, 4))]),
    (20, (8, 8), True, [((0, 0), (7, 1)), ((0, 2), (3, 2))]),
    (20, (8, 8), False, [((0, 0), (1, 7)), ((2, 0), (2, 3))]),
    (12, (5, 3), True, [((0, 0), (4, 1)), ((0, 2), (1, 2))]),
])
def test_num_cores_to_corerangeset(n, grid, row_wise, expected) -> None:
    assert _ranges(ttnn.num_cores_to_corerangeset(n, ttnn.CoreCoord(*grid), row_wise)) == expected
    with pytest.raises(RuntimeError, match="total_available_cores"):
        ttnn.num_cores_to_corerangeset(65, ttnn.CoreCoord(8, 8))


def test_mesh_shape_is_not_a_tuple() -> None:
    ms = ttnn.MeshShape(4, 8)
    assert not isinstance(ms, tuple) and list(ms) == [4, 8] and ms[-1] == 8 and ms.mesh_size() == 32
    assert ms == ttnn.MeshShape([4, 8]) and hash(ms) == hash(ttnn.MeshShape(4, 8))
    with pytest.raises(TypeError):
        ms == (4, 8)  # noqa: B015
    with pytest.raises(TypeError):
        len(ms)
    with pytest.raises(RuntimeError):
        ms[2]


def test_embedding_output_is_batch_sentence_hidden(mesh) -> None:
    w = ttnn.from_torch(torch.randn(10, 64), dtype=ttnn.bfloat16, device=mesh)
    ids = ttnn.from_torch(torch.tensor([[[1, 2, 3]]]), dtype=ttnn.uint32, device=mesh)
    assert list(ttnn.embedding(ids, w).shape) == [1, 3, 64]
    assert list(ttnn.embedding(ttnn.from_torch(torch.tensor([1, 2]), dtype=ttnn.uint32, device=mesh), w).shape) == [2, 64]


def test_sharded_output_without_spec_gets_one(mesh) -> None:
    x = ttnn.from_torch(torch.randn(1, 1, 32, 256), dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=mesh)
    w = ttnn.from_torch(torch.randn(256, 512), dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=mesh)
    y = ttnn.linear(x, w, memory_config=ttnn.L1_WIDTH_SHARDED_MEMORY_CONFIG)
    spec = y.memory_config().shard_spec
    assert spec.shape == (32, 32) and spec.grid.num_cores() == 16
    z = ttnn.mul(y, y, memory_config=ttnn.L1_WIDTH_SHARDED_MEMORY_CONFIG)
    torch.testing.assert_close(ttnn.to_torch(z), ttnn.to_torch(y).float().square().to(torch.bfloat16), rtol=0.02, atol=0.5)


def test_memory_config_json_is_ttnns() -> None:
    cfg = ttnn.create_sharded_memory_config((1, 1, 32, 256), ttnn.CoreGrid(x=8, y=1), ttnn.ShardStrategy.WIDTH)
    text = ('{"buffer_type":1,"created_with_nd_shard_spec":false,"memory_layout":3,"per_core_allocation":false,'
            '"shard_spec":{"grid":[{"end":{"x":7,"y":0},"start":{"x":0,"y":0}}],"orientation":0,"shape":[32,32]}}')
    assert cfg.to_json() == text and ttnn.MemoryConfig.from_json(text) == cfg


def test_create_sharded_memory_config_underscore() -> None:
    c = ttnn.create_sharded_memory_config_((1, 1, 100, 64), ttnn.CoreGrid(x=2, y=2), ttnn.TensorMemoryLayout.BLOCK_SHARDED,
                                           ttnn.ShardOrientation.COL_MAJOR)
    assert c.shard_spec.shape == (50, 32)


def test_tensor_operators_need_device_tensors(mesh) -> None:
    h = ttnn.from_torch(torch.ones(2, 32), dtype=ttnn.bfloat16)
    with pytest.raises(RuntimeError, match="StorageType::DEVICE"):
        h + h
    d = ttnn.to_device(ttnn.to_layout(h, ttnn.TILE_LAYOUT), mesh)
    assert ttnn.to_torch(2 * d - d / 2)[0, 0].item() == 1.5
    assert list(d[0].shape) == [32] and list(h.reshape(1, 64).shape) == [1, 64] and h.to(ttnn.TILE_LAYOUT).layout == ttnn.TILE_LAYOUT
    with pytest.raises(RuntimeError, match="scalar"):
        d[0, 0]


def test_infrastructure_calls_are_validated(mesh) -> None:
    cores = ttnn.CoreRangeSet([ttnn.CoreRange(ttnn.CoreCoord(0, 0), ttnn.CoreCoord(7, 7))])
    sem = ttnn.create_global_semaphore(mesh, cores, 0)
    with pytest.raises(RuntimeError, match="worker grid"):
        ttnn.create_global_semaphore(mesh, ttnn.CoreRangeSet([ttnn.CoreRange(ttnn.CoreCoord(0, 0), ttnn.CoreCoord(8, 8))]), 0)
    ttnn.set_fabric_config(ttnn.FabricConfig.FABRIC_1D)
    with pytest.raises(TypeError):
        ttnn.set_fabric_config("FABRIC_1D")
    ttnn.synchronize_device(mesh)
    with pytest.raises(TypeError, match="multi_device_global_semaphore"):
        ttnn.experimental.all_gather_async(ttnn.from_torch(torch.ones(1, 1, 32, 32), dtype=ttnn.bfloat16, device=mesh), 3, [object()])
    assert sem.value == 0
