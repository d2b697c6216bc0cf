"""Config objects built the same way hold the same values in the emulator and in real ttnn."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.conformance


def _memory_config_fields(config: Any) -> dict[str, Any]:
    spec = config.shard_spec
    fields = {
        "memory_layout": config.memory_layout.name,
        "buffer_type": config.buffer_type.name,
        "is_sharded": config.is_sharded(),
        "shard_spec": None,
    }
    if spec is not None:
        fields["shard_spec"] = {
            "shape": list(spec.shape),
            "orientation": spec.orientation.name,
            "grid": sorted((r.start.x, r.start.y, r.end.x, r.end.y) for r in spec.grid.ranges()),
            "num_cores": spec.grid.num_cores(),
        }
    return fields


SHARDED_CONFIGS = [
    ("height_8x1", lambda tt: tt.create_sharded_memory_config((1, 1, 256, 64), tt.CoreGrid(x=8, y=1), tt.ShardStrategy.HEIGHT)),
    ("width_8x2", lambda tt: tt.create_sharded_memory_config((32, 1024), tt.CoreGrid(x=8, y=2), tt.ShardStrategy.WIDTH)),
    ("block_2x4", lambda tt: tt.create_sharded_memory_config((1, 1, 256, 64), tt.CoreGrid(x=2, y=4), tt.ShardStrategy.BLOCK)),
    ("block_col_major", lambda tt: tt.create_sharded_memory_config(
        (128, 256), tt.CoreGrid(x=2, y=4), tt.ShardStrategy.BLOCK, tt.ShardOrientation.COL_MAJOR)),
    ("explicit_shard_shape", lambda tt: tt.create_sharded_memory_config(
        (32, 128), tt.CoreRangeSet({tt.CoreRange(tt.CoreCoord(0, 0), tt.CoreCoord(3, 1))}), tt.ShardStrategy.WIDTH,
        use_height_and_width_as_shard_shape=True)),
    ("explicit_col_major", lambda tt: tt.create_sharded_memory_config(
        (32, 128), tt.CoreGrid(x=4, y=1), tt.ShardStrategy.HEIGHT, tt.ShardOrientation.COL_MAJOR,
        use_height_and_width_as_shard_shape=True)),
    ("two_grids", lambda tt: tt.create_sharded_memory_config(
        (1, 1, 32 * 9, 64), (tt.CoreGrid(x=8, y=1), tt.CoreGrid(x=1, y=1)), tt.ShardStrategy.HEIGHT,
        use_height_and_width_as_shard_shape=True)),
    ("dram", lambda tt: tt.DRAM_MEMORY_CONFIG),
    ("l1", lambda tt: tt.L1_MEMORY_CONFIG),
    ("default", lambda tt: tt.MemoryConfig()),
]


@pytest.mark.parametrize(("name", "make"), SHARDED_CONFIGS, ids=[c[0] for c in SHARDED_CONFIGS])
def test_memory_configs(real_ttnn, emulator, name, make):
    assert _memory_config_fields(make(emulator)) == _memory_config_fields(make(real_ttnn))


KERNEL_CONFIG_FIELDS = ("math_fidelity", "math_approx_mode", "fp32_dest_acc_en", "packer_l1_acc", "dst_full_sync_en")


def _fields(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {n: (getattr(obj, n).name if hasattr(getattr(obj, n), "name") else getattr(obj, n)) for n in names}


def test_compute_kernel_configs(real_ttnn, emulator):
    def make(tt):
        return [
            tt.WormholeComputeKernelConfig(),
            tt.WormholeComputeKernelConfig(math_fidelity=tt.MathFidelity.HiFi2, fp32_dest_acc_en=True, packer_l1_acc=True),
            tt.init_device_compute_kernel_config(tt.Arch.WORMHOLE_B0),
            tt.init_device_compute_kernel_config(tt.Arch.WORMHOLE_B0, math_fidelity=tt.MathFidelity.HiFi4,
                                                 math_approx_mode=False, fp32_dest_acc_en=True),
        ]

    assert [_fields(c, KERNEL_CONFIG_FIELDS) for c in make(emulator)] == [_fields(c, KERNEL_CONFIG_FIELDS) for c in make(real_ttnn)]


def test_program_config_defaults(real_ttnn, emulator):
    def make(tt):
        grid = tt.CoreCoord(8, 8)
        one_d = tt.MatmulMultiCoreReuseMultiCast1DProgramConfig(
            compute_with_storage_grid_size=grid, in0_block_w=2, out_subblock_h=1, out_subblock_w=4, per_core_M=1,
            per_core_N=4, fuse_batch=True, mcast_in0=True)
        two_d = tt.MatmulMultiCoreReuseMultiCastProgramConfig(
            compute_with_storage_grid_size=grid, in0_block_w=2, out_subblock_h=1, out_subblock_w=4, per_core_M=1,
            per_core_N=4, transpose_mcast=False)
        dram = tt.MatmulMultiCoreReuseMultiCastDRAMShardedProgramConfig(in0_block_w=2, per_core_M=1, per_core_N=4)
        sdpa = tt.SDPAProgramConfig(compute_with_storage_grid_size=grid, q_chunk_size=64, k_chunk_size=128)
        return {
            "1d": _fields(one_d, ("in0_block_w", "per_core_M", "per_core_N", "fuse_batch", "mcast_in0", "gather_in0",
                                  "out_block_h", "out_block_w", "fused_activation", "untilize_out", "num_global_cb_receivers")),
            "2d": _fields(two_d, ("transpose_mcast", "fuse_batch", "fused_activation", "out_block_h", "out_block_w")),
            "dram": _fields(dram, ("in0_block_w", "per_core_M", "per_core_N", "fused_activation", "num_workers_per_dram_bank")),
            "sdpa": _fields(sdpa, ("q_chunk_size", "k_chunk_size", "exp_approx_mode", "max_cores_per_head_batch", "max_k_splits")),
        }

    assert make(emulator) == make(real_ttnn)


def test_unary_with_param_and_core_types(real_ttnn, emulator):
    def make(tt):
        silu = tt.UnaryWithParam(tt.UnaryOpType.SILU)
        relu_max = tt.UnaryWithParam(tt.UnaryOpType.RELU_MAX, 6.0)
        grid = tt.CoreGrid(x=4, y=2)
        crs = tt.CoreRangeSet({tt.CoreRange(tt.CoreCoord(0, 0), tt.CoreCoord(3, 1))})
        return {
            "silu": (silu.op_type.name, list(silu.params)),
            "relu_max": (relu_max.op_type.name, list(relu_max.params)),
            "grid": (grid.x, grid.y, grid.num_cores),
            "crs": (crs.num_cores(), crs.bounding_box().grid_size().x, crs.bounding_box().grid_size().y),
            "coord": (tt.CoreCoord(3, 5).x, tt.CoreCoord(3, 5).y, tt.CoreCoord(1, 2) == tt.CoreCoord(1, 2)),
            "shape": (list(tt.Shape([2, 3, 4])), tt.Shape([2, 3, 4]).rank, tt.Shape([2, 3, 4])[-1]),
            "mesh_shape": (list(tt.MeshShape(4, 8)), tt.MeshShape(4, 8).mesh_size(), tt.MeshShape(4, 8)[1]),
        }

    assert make(emulator) == make(real_ttnn)


@pytest.mark.parametrize("enum_name", ["DataType", "Layout", "MathFidelity", "TensorMemoryLayout", "BufferType",
                                       "ShardOrientation", "ShardStrategy", "Topology", "UnaryOpType", "StorageType"])
def test_enum_members(real_ttnn, emulator, enum_name):
    real, emulated = getattr(real_ttnn, enum_name), getattr(emulator, enum_name)
    assert set(real.__members__) <= set(emulated.__members__), sorted(set(real.__members__) - set(emulated.__members__))
    aliases = {"bfloat16": "BFLOAT16", "float32": "FLOAT32", "bfloat8_b": "BFLOAT8_B", "bfloat4_b": "BFLOAT4_B",
               "uint32": "UINT32", "int32": "INT32", "uint16": "UINT16", "uint8": "UINT8"}
    if enum_name == "DataType":
        for alias, member in aliases.items():
            assert getattr(real_ttnn, alias).name == getattr(emulator, alias).name == member
