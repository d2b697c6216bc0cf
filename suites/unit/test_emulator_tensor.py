"""Emulator Tensor: from_torch / to_torch, shapes and padding, device moves, validation as real ttnn does."""

from __future__ import annotations

import pytest
import torch

from deepseek_tt.backend import emulator as ttnn
from deepseek_tt.backend.emulator import numerics

pytestmark = pytest.mark.unit


@pytest.fixture
def mesh(request):
    device = ttnn.open_mesh_device(ttnn.MeshShape(*getattr(request, "param", (1, 1))))
    yield device
    ttnn.close_mesh_device(device)


@pytest.mark.parametrize(
    ("dtype", "torch_dtype"),
    [
        (ttnn.bfloat16, torch.bfloat16),
        (ttnn.float32, torch.float32),
        (ttnn.bfloat8_b, torch.float32),
        (ttnn.bfloat4_b, torch.float32),
    ],
)
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 40, 70), (1, 1, 32, 64)])
def test_float_round_trip_rounds_once(dtype, torch_dtype, shape):
    x = torch.randn(*shape) * 3
    t = ttnn.from_torch(x, dtype=dtype, layout=ttnn.TILE_LAYOUT)
    back = ttnn.to_torch(t)
    assert back.dtype == torch_dtype and back.shape == x.shape
    assert torch.equal(back.float(), numerics.round_to_dtype(x, dtype).float())
    again = ttnn.to_torch(ttnn.from_torch(back, dtype=dtype, layout=ttnn.TILE_LAYOUT))
    assert torch.equal(again.float(), back.float()), "rounding is idempotent"


@pytest.mark.parametrize(
    ("dtype", "torch_dtype"), [(ttnn.uint32, torch.uint32), (ttnn.int32, torch.int32), (ttnn.uint16, torch.uint16)]
)
def test_integer_round_trip(dtype, torch_dtype):
    x = torch.arange(0, 50, 3)
    back = ttnn.to_torch(ttnn.from_torch(x, dtype=dtype))
    assert back.dtype == torch_dtype
    assert back.to(torch.int64).tolist() == x.tolist()


def test_inferred_dtype_and_default_layout():
    assert ttnn.from_torch(torch.zeros(2, dtype=torch.int64)).dtype == ttnn.uint32  # as ttnn 0.81 infers
    assert ttnn.from_torch(torch.zeros(2, dtype=torch.bfloat16)).dtype == ttnn.bfloat16
    assert ttnn.from_torch(torch.zeros(2)).layout == ttnn.ROW_MAJOR_LAYOUT
    assert ttnn.from_torch(torch.zeros(32, 32), dtype=ttnn.bfloat8_b).layout == ttnn.TILE_LAYOUT
    with pytest.raises(RuntimeError, match="float64"):
        ttnn.from_torch(torch.zeros(2, dtype=torch.float64))


def test_shapes_and_tile_padding():
    t = ttnn.from_torch(torch.zeros(2, 5, 40), dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT)
    assert t.shape == [2, 5, 40] and t.padded_shape == [2, 32, 64]
    assert ttnn.from_torch(torch.zeros(5), layout=ttnn.TILE_LAYOUT).padded_shape == [32, 32]
    assert ttnn.from_torch(torch.zeros(3, 5)).padded_shape == [3, 5]
    assert t.shape[-1] == 40 and t.shape.rank == 3 and tuple(t.shape) == (2, 5, 40)
    with pytest.raises(TypeError):
        t.shape[1:]  # real ttnn.Shape takes int indices only


def test_bfp_requires_tile_layout():
    with pytest.raises(RuntimeError, match="Layout must be Layout::TILE for bfloat8_b or bfloat4_b"):
        ttnn.from_torch(torch.zeros(32, 32), dtype=ttnn.bfloat8_b, layout=ttnn.ROW_MAJOR_LAYOUT)
    with pytest.raises(RuntimeError, match="Layout::TILE"):
        ttnn.Tensor.from_stacked(torch.zeros(1, 32, 32), dtype=ttnn.bfloat4_b, layout=ttnn.ROW_MAJOR_LAYOUT)


def test_nonzero_pad_value_takes_part_in_the_shared_exponent():
    x = torch.ones(1, 20)
    plain = ttnn.to_torch(ttnn.from_torch(x, dtype=ttnn.bfloat4_b, layout=ttnn.TILE_LAYOUT))
    padded = ttnn.to_torch(ttnn.from_torch(x, dtype=ttnn.bfloat4_b, layout=ttnn.TILE_LAYOUT, pad_value=64.0))
    assert torch.equal(plain, x)
    assert torch.equal(padded[0, :16], x[0, :16]) and torch.equal(padded[0, 16:], torch.zeros(4))


def test_col_tilize_transposes_before_quantizing():
    x = torch.randn(32, 64)
    t = ttnn.from_torch(x, dtype=ttnn.bfloat8_b, layout=ttnn.TILE_LAYOUT, col_tilize=True)
    assert t.shape == [64, 32]
    assert torch.equal(ttnn.to_torch(t), numerics.quantize_bfp(x.T, ttnn.bfloat8_b))


def test_deallocate_then_use_raises(mesh):
    t = ttnn.from_torch(torch.zeros(4, 4), device=mesh)
    ttnn.deallocate(t)
    assert not t.is_allocated()
    with pytest.raises(RuntimeError, match="deallocated"):
        ttnn.to_torch(t)


@pytest.mark.parametrize("mesh", [(1, 1), (4, 8)], indirect=True)
def test_to_device_replicates_a_host_tensor(mesh):
    x = torch.randn(3, 64)
    host = ttnn.from_torch(x, dtype=ttnn.bfloat16)
    assert host.storage_type() == ttnn.StorageType.HOST and host.device() is None
    t = ttnn.to_device(host, mesh)
    assert t.storage_type() == ttnn.StorageType.DEVICE and t.device() is mesh
    n = mesh.get_num_devices()
    assert t._data.shape == (n, 3, 64)
    assert torch.equal(ttnn.to_torch(t, mesh_composer=ttnn.ConcatMeshToTensor(mesh, dim=0)), x.bfloat16().repeat(n, 1))
    back = ttnn.from_device(t)
    assert back.device() is None and back.num_shards == n


def test_multi_shard_to_torch_needs_a_composer():
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(1, 2))
    t = ttnn.from_torch(torch.zeros(2, 8), device=mesh, mesh_mapper=ttnn.ShardTensorToMesh(mesh, dim=1))
    with pytest.raises(RuntimeError, match="Supply a mesh composer"):
        ttnn.to_torch(t)


def test_tensor_of_another_mesh_is_refused():
    mesh_a = ttnn.open_mesh_device(ttnn.MeshShape(1, 2))
    mesh_b = ttnn.open_mesh_device(ttnn.MeshShape(1, 4))
    mesh_c = ttnn.open_mesh_device(ttnn.MeshShape(1, 2))
    with pytest.raises(RuntimeError, match="mesh mapper was made for mesh"):
        ttnn.from_torch(torch.zeros(4, 8), device=mesh_b, mesh_mapper=ttnn.ShardTensorToMesh(mesh_a, dim=1))
    t = ttnn.from_torch(torch.zeros(4, 8), device=mesh_a)
    with pytest.raises(RuntimeError, match="already on another mesh device"):
        ttnn.to_device(t, mesh_c)
    sharded_host = ttnn.from_torch(torch.zeros(4, 8), mesh_mapper=ttnn.ShardTensorToMesh(mesh_a, dim=1))
    with pytest.raises(RuntimeError, match="distributed for a mesh of shape"):
        ttnn.to_device(sharded_host, mesh_b)
    ttnn.close_mesh_device(mesh_a)
    with pytest.raises(RuntimeError, match="closed"):
        ttnn.from_torch(torch.zeros(2), device=mesh_a)


def _height_sharded(rows_of_cores: int, shard: list[int]) -> ttnn.MemoryConfig:
    grid = ttnn.CoreRangeSet({ttnn.CoreRange(ttnn.CoreCoord(0, 0), ttnn.CoreCoord(rows_of_cores - 1, 0))})
    spec = ttnn.ShardSpec(grid, shard, ttnn.ShardOrientation.ROW_MAJOR)
    return ttnn.MemoryConfig(ttnn.TensorMemoryLayout.HEIGHT_SHARDED, ttnn.BufferType.L1, spec)


def test_shard_spec_validation_matches_real_ttnn():
    tile = ttnn.TILE_LAYOUT
    # accepted by ttnn 0.81: even, and uneven with the last shard partly filled
    assert ttnn.from_torch(torch.zeros(256, 64), layout=tile, memory_config=_height_sharded(8, [32, 64])).is_sharded()
    assert ttnn.from_torch(torch.zeros(250, 64), layout=tile, memory_config=_height_sharded(8, [32, 64])).is_sharded()
    with pytest.raises(RuntimeError, match="do not fit on 8 cores"):
        ttnn.from_torch(torch.zeros(512, 64), layout=tile, memory_config=_height_sharded(8, [32, 64]))
    with pytest.raises(RuntimeError, match="differs from the tensor width"):
        ttnn.from_torch(torch.zeros(256, 64), layout=tile, memory_config=_height_sharded(8, [32, 32]))
    with pytest.raises(RuntimeError, match="not aligned to the 32x32 tile"):
        ttnn.from_torch(torch.zeros(256, 64), layout=tile, memory_config=_height_sharded(8, [20, 64]))
    with pytest.raises(RuntimeError, match="Shard spec must not be None"):
        ttnn.from_torch(torch.zeros(256, 64), layout=tile, memory_config=ttnn.L1_HEIGHT_SHARDED_MEMORY_CONFIG)


def test_create_sharded_memory_config():
    block = ttnn.create_sharded_memory_config((1, 1, 256, 64), ttnn.CoreGrid(x=2, y=4), ttnn.ShardStrategy.BLOCK)
    assert block.memory_layout == ttnn.TensorMemoryLayout.BLOCK_SHARDED and block.buffer_type == ttnn.BufferType.L1
    assert block.shard_spec.shape == (64, 32) and block.shard_spec.grid.num_cores() == 8
    width = ttnn.create_sharded_memory_config((32, 1024), ttnn.CoreGrid(x=8, y=2), ttnn.ShardStrategy.WIDTH)
    assert width.shard_spec.shape == (32, 64)
    crs = ttnn.CoreRangeSet({ttnn.CoreRange(ttnn.CoreCoord(0, 0), ttnn.CoreCoord(1, 0))})
    explicit = ttnn.create_sharded_memory_config(
        (32, 64), crs, ttnn.ShardStrategy.WIDTH, use_height_and_width_as_shard_shape=True
    )
    assert explicit.shard_spec.shape == (32, 64)
    with pytest.raises(RuntimeError, match="Invalid sharding core_grid"):
        ttnn.create_sharded_memory_config((250, 64), ttnn.CoreGrid(x=8, y=1), ttnn.ShardStrategy.HEIGHT)
    with pytest.raises(RuntimeError, match="must be shard shape with CoreRangeSet"):
        ttnn.create_sharded_memory_config((32, 64), crs, ttnn.ShardStrategy.WIDTH)


def test_memory_config_is_kept_through_device_moves(mesh):
    t = ttnn.from_torch(torch.zeros(64, 64), layout=ttnn.TILE_LAYOUT, device=mesh, memory_config=ttnn.L1_MEMORY_CONFIG)
    assert t.memory_config() == ttnn.L1_MEMORY_CONFIG
    assert ttnn.from_device(t).memory_config() == ttnn.L1_MEMORY_CONFIG
    assert ttnn.from_torch(torch.zeros(2)).memory_config() == ttnn.DRAM_MEMORY_CONFIG


def test_from_stacked_rounds_and_checks_shard_count():
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(2, 2))
    data = torch.randn(4, 32, 32)
    t = ttnn.Tensor.from_stacked(data, dtype=ttnn.bfloat8_b, layout=ttnn.TILE_LAYOUT, device=mesh)
    assert torch.equal(t._data.float(), numerics.quantize_bfp(data, ttnn.bfloat8_b))
    with pytest.raises(RuntimeError, match="3 shards"):
        ttnn.Tensor.from_stacked(torch.zeros(3, 32, 32), dtype=ttnn.bfloat16, device=mesh)


def test_compute_kernel_and_program_configs_have_ttnn_defaults():
    cfg = ttnn.init_device_compute_kernel_config(ttnn.open_mesh_device().arch(), math_fidelity=ttnn.MathFidelity.HiFi2)
    assert (cfg.math_fidelity, cfg.math_approx_mode, cfg.fp32_dest_acc_en, cfg.packer_l1_acc) == (
        ttnn.MathFidelity.HiFi2, True, False, False)
    assert ttnn.WormholeComputeKernelConfig().math_fidelity == ttnn.MathFidelity.Invalid
    pc = ttnn.MatmulMultiCoreReuseMultiCast1DProgramConfig(
        compute_with_storage_grid_size=ttnn.CoreCoord(8, 8), in0_block_w=2, out_subblock_h=1, out_subblock_w=1,
        per_core_M=1, per_core_N=4, fuse_batch=True, mcast_in0=True,
        fused_activation=ttnn.UnaryWithParam(ttnn.UnaryOpType.SILU))
    assert pc.gather_in0 is False and pc.fused_activation.op_type == ttnn.UnaryOpType.SILU
    with pytest.raises(TypeError):
        ttnn.MatmulMultiCoreReuseMultiCastDRAMShardedProgramConfig(8, 1, 4)  # keyword-only, as in ttnn
    sdpa = ttnn.SDPAProgramConfig(compute_with_storage_grid_size=ttnn.CoreCoord(8, 8), q_chunk_size=64, k_chunk_size=64)
    assert sdpa.exp_approx_mode is None and sdpa.max_cores_per_head_batch == 16


def test_check_same_mesh_names_both_meshes():
    from deepseek_tt.backend.emulator.validation import check_same_mesh

    mesh_a, mesh_b = ttnn.open_mesh_device(ttnn.MeshShape(1, 2)), ttnn.open_mesh_device(ttnn.MeshShape(1, 2))
    a = ttnn.from_torch(torch.zeros(2, 2), device=mesh_a)
    b = ttnn.from_torch(torch.zeros(2, 2), device=mesh_b)
    check_same_mesh("ttnn.add", a, ttnn.from_torch(torch.ones(2, 2), device=mesh_a), None)
    with pytest.raises(RuntimeError, match="ttnn.add: input tensors live on different mesh devices"):
        check_same_mesh("ttnn.add", a, b)


def test_replicated_shards_are_independent_copies():
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(2, 2))
    t = ttnn.from_torch(torch.zeros(4, 4), dtype=ttnn.float32, device=mesh, mesh_mapper=ttnn.ReplicateTensorToMesh(mesh))
    t._data[1, 0, 0] = 5.0  # an in-place write (as a cache update does) touches one device only
    assert t._data[0, 0, 0].item() == 0.0 and t._data[1, 0, 0].item() == 5.0
