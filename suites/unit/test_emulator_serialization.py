"""dump_tensor / load_tensor / as_tensor: dtype, layout, memory config and mesh placement survive."""

from __future__ import annotations

import pytest
import torch

from deepseek_tt.backend import emulator as ttnn

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("mesh_shape", [(1, 1), (4, 8)])
def test_dump_load_round_trip_on_a_mesh(tmp_path, mesh_shape):
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(*mesh_shape))
    rows, cols = mesh_shape
    x = torch.randn(32 * rows, 64 * cols)
    memory_config = ttnn.create_sharded_memory_config((32, 64), ttnn.CoreGrid(x=2, y=1), ttnn.ShardStrategy.WIDTH)
    t = ttnn.from_torch(x, dtype=ttnn.bfloat8_b, layout=ttnn.TILE_LAYOUT, device=mesh, memory_config=memory_config,
                        mesh_mapper=ttnn.ShardTensor2dMesh(mesh, mesh_shape, (0, 1)))
    path = tmp_path / "w.tensorbin"
    ttnn.dump_tensor(path, t)
    host = ttnn.load_tensor(path)
    assert host.device() is None and tuple(host.mesh_shape) == mesh_shape
    loaded = ttnn.load_tensor(path, device=mesh)
    assert (loaded.dtype, loaded.layout, loaded.memory_config()) == (t.dtype, t.layout, t.memory_config())
    assert loaded.device() is mesh and torch.equal(loaded._data, t._data)
    assert loaded._placements == [ttnn.PlacementShard(0), ttnn.PlacementShard(1)]


def test_single_shard_file_loads_onto_any_mesh(tmp_path):
    path = tmp_path / "n.tensorbin"
    ttnn.dump_tensor(path, ttnn.from_torch(torch.arange(6.0).reshape(2, 3), dtype=ttnn.float32))
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(2, 2))
    t = ttnn.load_tensor(path, device=mesh)
    assert t.num_shards == 4 and torch.equal(t._data[3], torch.arange(6.0).reshape(2, 3))


def test_bad_files_give_clear_errors(tmp_path):
    t = ttnn.from_torch(torch.zeros(2))
    with pytest.raises(RuntimeError, match="must have .tensorbin extension"):
        ttnn.dump_tensor(tmp_path / "x.bin", t)
    with pytest.raises(RuntimeError, match="does not exist"):
        ttnn.load_tensor(tmp_path / "missing.tensorbin")
    garbage = tmp_path / "garbage.tensorbin"
    garbage.write_bytes(b"not a tensor")
    with pytest.raises(RuntimeError, match="garbage.tensorbin"):
        ttnn.load_tensor(garbage)
    mesh_file = tmp_path / "mesh.tensorbin"
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(1, 4))
    ttnn.dump_tensor(mesh_file, ttnn.from_torch(torch.zeros(2, 8), device=mesh,
                                                mesh_mapper=ttnn.ShardTensorToMesh(mesh, dim=1)))
    with pytest.raises(RuntimeError, match="saved for mesh"):
        ttnn.load_tensor(mesh_file, device=ttnn.open_mesh_device(ttnn.MeshShape(1, 2)))


def test_as_tensor_caches_under_ttnn_file_name(tmp_path):
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(1, 2))
    x = torch.randn(32, 64)
    kwargs = dict(dtype=ttnn.bfloat4_b, layout=ttnn.TILE_LAYOUT, device=mesh, memory_config=ttnn.DRAM_MEMORY_CONFIG,
                  mesh_mapper=ttnn.ShardTensorToMesh(mesh, dim=1), cache_file_name=tmp_path / "cache" / "w")
    first = ttnn.as_tensor(x, **kwargs)
    assert (tmp_path / "cache" / "w_dtype_BFLOAT4_B_layout_TILE.tensorbin").is_file()
    second = ttnn.as_tensor(torch.zeros_like(x), **kwargs)  # loaded from the cache, not converted again
    assert torch.equal(first._data, second._data) and second.device() is mesh
    with pytest.raises(RuntimeError, match="memory_config must be specified"):
        ttnn.as_tensor(x, device=mesh)
