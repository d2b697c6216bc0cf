"""Emulated meshes: mappers and composers against plain torch chunk/cat, device order, submeshes."""

from __future__ import annotations

import pytest
import torch

from deepseek_tt.backend import emulator as ttnn

pytestmark = pytest.mark.unit

MESHES = [(1, 1), (1, 8), (4, 8)]


@pytest.fixture
def mesh(request):
    device = ttnn.open_mesh_device(ttnn.MeshShape(*request.param))
    yield device
    ttnn.close_mesh_device(device)


def _shards(t) -> list[torch.Tensor]:
    return [ttnn.to_torch(s).float() for s in ttnn.get_device_tensors(t)]


@pytest.mark.parametrize("mesh", MESHES, indirect=True)
@pytest.mark.parametrize("dim", [0, -1])
def test_shard_tensor_to_mesh(mesh, dim):
    n = mesh.get_num_devices()
    x = torch.randn(2 * n, 3, 4 * n)
    t = ttnn.from_torch(x, dtype=ttnn.float32, device=mesh, mesh_mapper=ttnn.ShardTensorToMesh(mesh, dim=dim))
    expected = torch.chunk(x, n, dim=dim)
    assert all(torch.equal(a, b) for a, b in zip(_shards(t), expected))
    assert torch.equal(ttnn.to_torch(t, mesh_composer=ttnn.ConcatMeshToTensor(mesh, dim=dim)), x)


@pytest.mark.parametrize("mesh", MESHES, indirect=True)
@pytest.mark.parametrize("dims", [(0, 1), (1, 0), (None, 1), (0, None), (-1, -2)])
def test_shard_tensor_2d_mesh_device_order(mesh, dims):
    rows, cols = mesh.shape
    x = torch.randn(8 * rows * cols, 8 * rows * cols)
    t = ttnn.from_torch(x, dtype=ttnn.float32, device=mesh, mesh_mapper=ttnn.ShardTensor2dMesh(mesh, (rows, cols), dims))
    shards = _shards(t)
    for r in range(rows):
        row_piece = x if dims[0] is None else torch.chunk(x, rows, dim=dims[0])[r]
        for c in range(cols):
            piece = row_piece if dims[1] is None else torch.chunk(row_piece, cols, dim=dims[1])[c]
            assert torch.equal(shards[r * cols + c], piece), f"device ({r}, {c})"
    if None not in dims:
        composer = ttnn.ConcatMesh2dToTensor(mesh, mesh_shape=(rows, cols), dims=dims)
        assert torch.equal(ttnn.to_torch(t, mesh_composer=composer), x)


@pytest.mark.parametrize("mesh", MESHES, indirect=True)
def test_replicate_and_create_mesh_mapper_forms(mesh):
    rows, cols = mesh.shape
    x = torch.randn(4 * rows, 4 * cols)
    replicated = ttnn.from_torch(x, dtype=ttnn.float32, device=mesh, mesh_mapper=ttnn.ReplicateTensorToMesh(mesh))
    assert all(torch.equal(s, x) for s in _shards(replicated))
    by_placement = ttnn.create_mesh_mapper(
        mesh, ttnn.MeshMapperConfig([ttnn.PlacementShard(0), ttnn.PlacementReplicate()])
    )
    by_dims = ttnn.create_mesh_mapper(mesh, ttnn.MeshMapperConfig(0, None))
    a = ttnn.from_torch(x, dtype=ttnn.float32, device=mesh, mesh_mapper=by_placement)
    b = ttnn.from_torch(x, dtype=ttnn.float32, device=mesh, mesh_mapper=by_dims)
    assert torch.equal(a._data, b._data)
    composer = ttnn.create_mesh_composer(mesh, ttnn.MeshComposerConfig([0, 1]))
    assert torch.equal(ttnn.to_torch(a, mesh_composer=composer), x.repeat(1, cols))


def test_mapper_without_device_gives_a_multi_shard_host_tensor():
    mapper = ttnn.create_mesh_mapper(ttnn.MeshShape(2, 4), ttnn.MeshMapperConfig([ttnn.PlacementShard(0), ttnn.PlacementShard(1)]))
    x = torch.arange(8 * 16, dtype=torch.float32).reshape(8, 16)
    host = ttnn.from_torch(x, mesh_mapper=mapper)
    assert host.storage_type() == ttnn.StorageType.HOST and host.shape == [4, 4] and tuple(host.mesh_shape) == (2, 4)
    # device order is row-major over the mesh (values measured on ttnn 0.81.1)
    assert [s[0, 0].item() for s in _shards(host)] == [0.0, 4.0, 8.0, 12.0, 64.0, 68.0, 72.0, 76.0]


def test_uneven_shard_is_refused():
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(1, 3))
    with pytest.raises(RuntimeError, match="does not shard evenly"):
        ttnn.from_torch(torch.zeros(4, 16), device=mesh, mesh_mapper=ttnn.ShardTensorToMesh(mesh, dim=1))


def test_bfp_is_quantized_per_shard():
    """Each device converts its own shard: 16-wide blocks restart at every shard's column 0."""
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(1, 2))
    x = torch.ones(1, 48)
    x[0, 16] = 1024.0  # shard 0 holds columns 0-23: block 16-31 of the whole row is split
    t = ttnn.from_torch(x, dtype=ttnn.bfloat4_b, layout=ttnn.TILE_LAYOUT, device=mesh,
                        mesh_mapper=ttnn.ShardTensorToMesh(mesh, dim=1))
    first, second = _shards(t)
    assert torch.equal(first[0, 17:], torch.zeros(7))
    assert torch.equal(second, torch.ones(1, 24)), "shard 1 starts a fresh block"


def test_submeshes():
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(4, 8))
    subs = mesh.create_submeshes(ttnn.MeshShape(2, 4))
    assert len(subs) == 4 and all(tuple(s.shape) == (2, 4) for s in subs)
    assert [s.offset for s in subs] == [(0, 0), (0, 4), (2, 0), (2, 4)]
    one = mesh.create_submesh(ttnn.MeshShape(1, 8))
    assert one.get_num_devices() == 8
    with pytest.raises(RuntimeError, match="does not fit"):
        mesh.create_submesh(ttnn.MeshShape(8, 8))
    with pytest.raises(RuntimeError, match="does not tile"):
        mesh.create_submeshes(ttnn.MeshShape(3, 8))
    ttnn.close_mesh_device(mesh)
    assert not subs[0].is_open


def test_mesh_device_reports_wormhole_properties():
    mesh = ttnn.open_mesh_device(mesh_shape=ttnn.MeshShape(1, 2))
    assert mesh.arch() == ttnn.Arch.WORMHOLE_B0
    grid = mesh.compute_with_storage_grid_size()
    assert (grid.x, grid.y) == (8, 8)
    assert tuple(mesh.shape) == (1, 2) and list(mesh.shape) == [1, 2] and mesh.shape.mesh_size() == 2
    assert tuple(ttnn.open_mesh_device().shape) == (1, 1)
