"""Deterministic inputs shared by the conformance tests and the golden-vector generator.

Every case is a CPU tensor chosen to exercise one part of the host conversion: ties, saturation,
outliers, tiny and huge exponents, NaN/inf, negative zero, denormals, shapes that are not multiples of 32.
The cases are the same bits on every machine (no float32 transcendental whose vectorized kernel differs by
CPU), so the committed golden vectors can be checked anywhere.
"""

from __future__ import annotations

import math

import torch


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ties(rows: int, magnitude_bits: int, seed: int) -> torch.Tensor:
    """Blocks whose max fixes the exponent and whose other values sit exactly halfway between two steps."""
    g = _gen(seed)
    blocks = rows * 4
    exponents = torch.randint(-20, 20, (blocks, 1), generator=g).float()
    step = torch.pow(2.0, exponents - (magnitude_bits - 1))
    k = torch.randint(0, 2**magnitude_bits - 1, (blocks, 16), generator=g).float()
    signs = torch.where(torch.rand(blocks, 16, generator=g) < 0.5, -1.0, 1.0)
    values = signs * (k + 0.5) * step
    values[:, 0] = torch.pow(2.0, exponents[:, 0]) * 1.5  # block max: exponent E
    # ties whose value needs the lower exponent's finer bits too (e.g. (k + 0.5) * step / 2^j)
    values[:, 1] = (k[:, 1] + 0.5) * step[:, 0] / 4
    return values.reshape(rows, 64)


def bfp_cases() -> dict[str, torch.Tensor]:
    """name -> input tensor (fp32 unless the name says bf16)."""
    cases: dict[str, torch.Tensor] = {}
    cases["normal_64x96"] = torch.randn(64, 96, generator=_gen(1))
    # exp in float64, then rounded: float32 exp rounds its last bit differently on AVX2 and AVX-512 kernels
    scale = torch.exp(torch.randn(64, 64, generator=_gen(3)).double() * 4).float()
    cases["lognormal_64x64"] = torch.randn(64, 64, generator=_gen(2)) * scale
    cases["uniform_32x64"] = torch.rand(32, 64, generator=_gen(4)) * 2 - 1
    cases["ties_bfp8_32x64"] = _ties(32, 7, 5)
    cases["ties_bfp4_32x64"] = _ties(32, 3, 6)
    outliers = torch.randn(32, 128, generator=_gen(7)) * 0.02
    idx = torch.randint(0, 32 * 128, (40,), generator=_gen(8))
    outliers.view(-1)[idx] = torch.randn(40, generator=_gen(9)) * 1e4
    cases["outliers_32x128"] = outliers
    tiny = torch.ldexp(torch.rand(32, 64, generator=_gen(10)) + 0.5, torch.randint(-135, -110, (32, 64), generator=_gen(11)))
    tiny[::3, ::5] = 1e-40  # fp32 denormals
    cases["tiny_exponents_32x64"] = tiny
    huge = torch.ldexp(torch.rand(32, 64, generator=_gen(12)) + 1.0, torch.randint(100, 128, (32, 64), generator=_gen(13)))
    huge[0, :16] = 3.4028234e38
    cases["huge_exponents_32x64"] = huge
    saturate = torch.ldexp(2 - torch.rand(32, 64, generator=_gen(14)) * 2**-5, torch.randint(-3, 4, (32, 64), generator=_gen(15)))
    cases["near_powers_of_two_32x64"] = saturate * torch.where(torch.rand(32, 64, generator=_gen(16)) < 0.5, -1.0, 1.0)
    specials = torch.randn(32, 64, generator=_gen(17))
    specials[0, 3], specials[1, 20], specials[2, 47], specials[5, 0] = float("nan"), float("inf"), -float("inf"), float("nan")
    specials[6, :] = float("inf")
    cases["nan_inf_32x64"] = specials
    zeros = torch.zeros(32, 64)
    zeros[::2] = -0.0
    zeros[1, 5] = -1.0
    cases["zeros_and_negative_zero_32x64"] = zeros
    cases["constant_32x32"] = torch.full((32, 32), 0.3)
    cases["bf16_input_64x64"] = (torch.randn(64, 64, generator=_gen(18)) * 3).to(torch.bfloat16)
    for shape in [(5,), (1, 5), (3, 17), (2, 33, 50), (1, 1, 31, 100), (40, 1), (2, 3, 4, 70)]:
        name = "shape_" + "x".join(map(str, shape))
        cases[name] = torch.randn(*shape, generator=_gen(sum(shape) + len(shape))) * 2
    return cases


def integer_cases() -> dict[str, torch.Tensor]:
    return {
        "floats_to_int": torch.tensor([1.7, -1.2, 2.5, -2.5, 0.0, 1e6, -7.9, 65535.9, 70000.0]),
        "int64": torch.tensor([0, 1, 2**31 - 1, 2**31, 2**32 - 1, 123456789, 65536, 70000]),
        "int32": torch.tensor([0, -1, 2**31 - 1, -(2**31), 65535], dtype=torch.int32),
    }


#: mesh-mapper cases: (name, mesh shape, placements as (kind, dim) per mesh axis, 1-D distribution?)
MAPPER_CASES = [
    ("shard_rows_cols_2x4", (2, 4), [("shard", 0), ("shard", 1)]),
    ("shard_cols_rows_2x4", (2, 4), [("shard", 1), ("shard", 0)]),
    ("replicate_shard_2x4", (2, 4), [("replicate", None), ("shard", 1)]),
    ("shard_replicate_2x4", (2, 4), [("shard", -1), ("replicate", None)]),
    ("shard_1d_8", (8,), [("shard", 0)]),
    ("replicate_1d_4", (4,), [("replicate", None)]),
    ("replicate_shard_4x8", (4, 8), [("replicate", None), ("shard", -1)]),
]

#: ``ttnn.ShardTensor2dMesh(MeshShape, dims=..., mesh_shape=...)`` (None = replicate along that mesh axis)
#: as third-party DeepSeek-V3 MLA code calls it on a 4x8 mesh: (name, dims, input shape, torch dtype)
SHARD2D_CASES = [
    ("mla_input_none_minus1", (None, -1), (1, 1, 4, 64), torch.float32),
    ("mla_positions_none_0", (None, 0), (32,), torch.int32),
    ("mla_weight_0_none", (0, None), (4, 8, 16), torch.float32),
    ("mla_weight_0_minus2", (0, -2), (4, 8, 16), torch.float32),
    ("mla_none_none", (None, None), (2, 32), torch.float32),
]


def shard2d_input(shape: tuple, dtype: torch.dtype) -> torch.Tensor:
    return torch.arange(math.prod(shape), dtype=torch.float32).reshape(shape).to(dtype)


def mapper_input() -> torch.Tensor:
    return torch.arange(16 * 64, dtype=torch.float32).reshape(16, 64) / 7


def bfp_shard_input() -> torch.Tensor:
    """A row whose 16-wide blocks straddle a 24-column shard boundary."""
    x = torch.ones(2, 48)
    x[0, 16] = 1024.0
    x[1, 30] = -3e5
    return x


def _grid(tt, cols: int):
    return tt.CoreRangeSet({tt.CoreRange(tt.CoreCoord(0, 0), tt.CoreCoord(cols - 1, 0))})


def _height_sharded(tt, cores: int, shard: list[int]):
    spec = tt.ShardSpec(_grid(tt, cores), shard, tt.ShardOrientation.ROW_MAJOR)
    return tt.MemoryConfig(tt.TensorMemoryLayout.HEIGHT_SHARDED, tt.BufferType.L1, spec)


def _mapped(tt, x, mesh_shape, placements):
    mapper = tt.create_mesh_mapper(tt.MeshShape(list(mesh_shape)), tt.MeshMapperConfig(placements))
    return tt.from_torch(x, dtype=tt.float32, mesh_mapper=mapper)


#: name -> f(ttnn module); real ttnn and the emulator must agree on whether each raises.
VALIDATION_CASES = {
    "bfp8_row_major": lambda tt: tt.from_torch(torch.zeros(32, 32), dtype=tt.bfloat8_b, layout=tt.ROW_MAJOR_LAYOUT),
    "bfp4_row_major": lambda tt: tt.from_torch(torch.zeros(32, 32), dtype=tt.bfloat4_b, layout=tt.ROW_MAJOR_LAYOUT),
    "bfp8_default_layout": lambda tt: tt.from_torch(torch.zeros(32, 32), dtype=tt.bfloat8_b),
    "height_shard_even": lambda tt: tt.from_torch(torch.zeros(256, 64), layout=tt.TILE_LAYOUT,
                                                  memory_config=_height_sharded(tt, 8, [32, 64])),
    "height_shard_uneven_fits": lambda tt: tt.from_torch(torch.zeros(250, 64), layout=tt.TILE_LAYOUT,
                                                         memory_config=_height_sharded(tt, 8, [32, 64])),
    "height_shard_too_many_shards": lambda tt: tt.from_torch(torch.zeros(512, 64), layout=tt.TILE_LAYOUT,
                                                             memory_config=_height_sharded(tt, 8, [32, 64])),
    "height_shard_width_mismatch": lambda tt: tt.from_torch(torch.zeros(256, 64), layout=tt.TILE_LAYOUT,
                                                            memory_config=_height_sharded(tt, 8, [32, 32])),
    "height_shard_not_tile_aligned": lambda tt: tt.from_torch(torch.zeros(256, 64), layout=tt.TILE_LAYOUT,
                                                              memory_config=_height_sharded(tt, 8, [20, 64])),
    "row_major_shard_not_tile_aligned": lambda tt: tt.from_torch(torch.zeros(160, 64), layout=tt.ROW_MAJOR_LAYOUT,
                                                                 memory_config=_height_sharded(tt, 8, [20, 64])),
    "sharded_without_spec": lambda tt: tt.from_torch(torch.zeros(256, 64), layout=tt.TILE_LAYOUT, memory_config=tt.MemoryConfig(
        tt.TensorMemoryLayout.HEIGHT_SHARDED, tt.BufferType.L1)),
    "create_sharded_uneven_height": lambda tt: tt.create_sharded_memory_config(
        (250, 64), tt.CoreGrid(x=8, y=1), tt.ShardStrategy.HEIGHT),
    "create_sharded_block": lambda tt: tt.create_sharded_memory_config(
        (1, 1, 256, 64), tt.CoreGrid(x=2, y=4), tt.ShardStrategy.BLOCK),
    "create_sharded_range_set_needs_shard_shape": lambda tt: tt.create_sharded_memory_config(
        (32, 64), _grid(tt, 2), tt.ShardStrategy.WIDTH),
    "mapper_same_dim_twice": lambda tt: _mapped(tt, torch.zeros(16, 64), (2, 4), [tt.PlacementShard(1), tt.PlacementShard(1)]),
    "mapper_uneven_shard": lambda tt: _mapped(tt, torch.zeros(4, 16), (1, 3), [tt.PlacementReplicate(), tt.PlacementShard(1)]),
    "to_torch_multi_shard_without_composer": lambda tt: tt.to_torch(
        _mapped(tt, torch.zeros(4, 16), (1, 2), [tt.PlacementReplicate(), tt.PlacementShard(1)])),
    "shard_tensor_to_mesh_on_a_shape": lambda tt: tt.ShardTensorToMesh(tt.MeshShape(4, 8), dim=0),
    "replicate_tensor_to_mesh_on_a_shape": lambda tt: tt.ReplicateTensorToMesh(tt.MeshShape(4, 8)),
    "create_mesh_mapper_on_a_tuple": lambda tt: tt.create_mesh_mapper((4, 8), tt.MeshMapperConfig(None, -1)),
    "composer_with_a_none_dim": lambda tt: tt.MeshComposerConfig([None, -1]),
    "mapper_config_none_placement": lambda tt: tt.MeshMapperConfig([None, tt.PlacementShard(-1)]),
    "mapper_one_placement_on_4x8": lambda tt: _mapped(tt, torch.zeros(4, 64), (4, 8), [tt.PlacementShard(-1)]),
    "shard2d_none_uneven_4x8": lambda tt: tt.from_torch(torch.zeros(1, 2, 32, 64), mesh_mapper=tt.ShardTensor2dMesh(
        tt.MeshShape(4, 8), dims=(None, 1), mesh_shape=tt.MeshShape(4, 8))),
    "to_dtype_bfp8_row_major_aligned": lambda tt: tt.to_dtype(tt.from_torch(torch.ones(1, 2, 32, 64), dtype=tt.bfloat16),
                                                              tt.bfloat8_b),
    "to_dtype_bfp8_row_major_unaligned_width": lambda tt: tt.to_dtype(
        tt.from_torch(torch.ones(1, 2, 64, 8), dtype=tt.bfloat16), tt.bfloat8_b),
    "to_dtype_bfp8_row_major_unaligned_height": lambda tt: tt.to_dtype(
        tt.from_torch(torch.ones(2, 16, 64), dtype=tt.bfloat16), tt.bfloat8_b),
    "to_dtype_bfp8_tile_unaligned": lambda tt: tt.to_dtype(
        tt.from_torch(torch.ones(1, 2, 30, 8), dtype=tt.bfloat16, layout=tt.TILE_LAYOUT), tt.bfloat8_b),
    "dump_tensor_wrong_extension": lambda tt: tt.dump_tensor("/nonexistent-dir/x.bin", tt.from_torch(torch.zeros(2))),
}
