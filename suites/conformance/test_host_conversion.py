"""Emulator vs the real wheel: host conversions bit for bit, padding, mesh mappers, validation."""

from __future__ import annotations

import pytest
import torch

from . import cases
from .make_golden_vectors import GOLDEN_DIR, VECTORS_FILE, host_shards, real_vectors, validation_outcomes

pytestmark = pytest.mark.conformance

CONVERSIONS = [("bfloat8_b", "TILE_LAYOUT"), ("bfloat4_b", "TILE_LAYOUT"), ("bfloat16", "ROW_MAJOR_LAYOUT"),
               ("bfloat16", "TILE_LAYOUT"), ("float32", "TILE_LAYOUT")]


def _convert(module, x: torch.Tensor, dtype: str, layout: str, **kwargs) -> torch.Tensor:
    t = module.from_torch(x, dtype=getattr(module, dtype), layout=getattr(module, layout), **kwargs)
    return module.to_torch(t)


def _assert_bit_exact(emulated: torch.Tensor, real: torch.Tensor, what: str) -> None:
    assert emulated.dtype == real.dtype, f"{what}: to_torch dtype {emulated.dtype} vs ttnn {real.dtype}"
    assert emulated.shape == real.shape, f"{what}: shape {list(emulated.shape)} vs ttnn {list(real.shape)}"
    a, b = emulated.float(), real.float()
    same = (a.view(torch.int32) == b.view(torch.int32)) | (a.isnan() & b.isnan())
    if not bool(same.all()):
        idx = (~same).nonzero()[:5].tolist()
        pytest.fail(f"{what}: {int((~same).sum())} values differ, e.g. {[(i, a[tuple(i)].item(), b[tuple(i)].item()) for i in idx]}")


@pytest.mark.parametrize("case", sorted(cases.bfp_cases()))
@pytest.mark.parametrize(("dtype", "layout"), CONVERSIONS)
def test_case_bit_exact(real_ttnn, emulator, case, dtype, layout):
    x = cases.bfp_cases()[case]
    _assert_bit_exact(_convert(emulator, x, dtype, layout), _convert(real_ttnn, x, dtype, layout), f"{case} {dtype} {layout}")


def _random_input(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    rank = int(torch.randint(1, 5, (1,), generator=g))
    shape = [int(torch.randint(1, 4 if i < rank - 2 else 80, (1,), generator=g)) for i in range(rank)]
    kind = seed % 4
    x = torch.randn(*shape, generator=g)
    if kind == 1:
        x = x * torch.exp(torch.randn(*shape, generator=g) * 6)  # wide exponent spread inside blocks
    elif kind == 2:
        x = torch.round(x * 64) / 64  # many exact ties
    elif kind == 3:
        x = x.to(torch.bfloat16)
    return x


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("dtype", ["bfloat8_b", "bfloat4_b"])
def test_random_shapes_and_distributions(real_ttnn, emulator, seed, dtype):
    x = _random_input(seed)
    _assert_bit_exact(_convert(emulator, x, dtype, "TILE_LAYOUT"), _convert(real_ttnn, x, dtype, "TILE_LAYOUT"),
                      f"seed {seed} shape {list(x.shape)} {dtype}")


def _large_input() -> torch.Tensor:
    """``[2, 100, 2048]``, larger than the emulator's CPU conversion slices: common-case slices and
    slices with NaN/inf, tiny-exponent and all-zero blocks, denormals, saturation and ties."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 100, 2048, generator=g) / 45
    x[0, 70:72] *= torch.exp(torch.randn(2, 2048, generator=g) * 6)
    x[0, 10:12, 64:96] = 0.0
    x[0, 12, 128:144] = torch.tensor([1e-39, -1e-40] + [0.0] * 14)
    x[1, 3, 32:48] = 1.999
    x[1, 10, 5], x[1, 20, 100] = float("nan"), -float("inf")
    x[1, 40, 16:32] = torch.tensor([2.0**-124, 2.0**-126, 3 * 2.0**-127] + [0.0] * 13)
    x[1, 90:92] = torch.round(x[1, 90:92] * 2**8) / 2**8
    return x


@pytest.mark.parametrize("dtype", ["bfloat8_b", "bfloat4_b"])
@pytest.mark.parametrize("variant", ["fp32", "bf16", "transposed"])
def test_large_tensor_bit_exact(real_ttnn, emulator, dtype, variant):
    x = _large_input()
    if variant == "bf16":
        x = x.to(torch.bfloat16)
    elif variant == "transposed":
        x = x.transpose(-1, -2).contiguous().transpose(-1, -2)
    _assert_bit_exact(_convert(emulator, x, dtype, "TILE_LAYOUT"), _convert(real_ttnn, x, dtype, "TILE_LAYOUT"),
                      f"large {variant} {dtype}")


@pytest.mark.parametrize("shape", [(1,), (5,), (31, 33), (2, 5, 40), (1, 1, 32, 64), (3, 1, 65, 7), (64, 32)])
def test_padded_shape(real_ttnn, emulator, shape):
    for layout in ("TILE_LAYOUT", "ROW_MAJOR_LAYOUT"):
        real = real_ttnn.from_torch(torch.zeros(shape), dtype=real_ttnn.bfloat16, layout=getattr(real_ttnn, layout))
        emu = emulator.from_torch(torch.zeros(shape), dtype=emulator.bfloat16, layout=getattr(emulator, layout))
        assert list(emu.shape) == list(real.shape) and list(emu.padded_shape) == list(real.padded_shape), (shape, layout)


def test_integer_conversions(real_ttnn, emulator):
    for name, x in cases.integer_cases().items():
        assert emulator.from_torch(x).dtype.name == real_ttnn.from_torch(x).dtype.name, name
        for dtype in ("uint32", "int32", "uint16"):
            real = real_ttnn.to_torch(real_ttnn.from_torch(x, dtype=getattr(real_ttnn, dtype)))
            emu = emulator.to_torch(emulator.from_torch(x, dtype=getattr(emulator, dtype)))
            assert emu.dtype == real.dtype, (name, dtype)
            keep = (x >= 0) & (x < 65536) if dtype == "uint16" and x.is_floating_point() else torch.ones_like(x, dtype=torch.bool)
            assert torch.equal(emu.to(torch.int64)[keep], real.to(torch.int64)[keep]), (name, dtype)


@pytest.mark.parametrize(("name", "mesh_shape", "spec"), cases.MAPPER_CASES, ids=[c[0] for c in cases.MAPPER_CASES])
def test_mesh_mapper(real_ttnn, emulator, name, mesh_shape, spec):
    x = cases.mapper_input()

    def shards(module):
        placements = [module.PlacementShard(d) if kind == "shard" else module.PlacementReplicate() for kind, d in spec]
        mapper = module.create_mesh_mapper(module.MeshShape(list(mesh_shape)), module.MeshMapperConfig(placements))
        return host_shards(module, module.from_torch(x, dtype=module.float32, mesh_mapper=mapper))

    assert torch.equal(shards(emulator), shards(real_ttnn))


def test_validation_outcomes(real_ttnn, emulator):
    assert validation_outcomes(emulator) == validation_outcomes(real_ttnn)


def test_committed_golden_vectors_are_current(real_ttnn):
    """fixtures/golden was made by this wheel from these cases (else: rerun make_golden_vectors)."""
    committed = torch.load(GOLDEN_DIR / VECTORS_FILE, weights_only=True)
    live = real_vectors(real_ttnn)
    assert committed["validation"] == live["validation"]
    assert committed["padded_shapes"] == live["padded_shapes"]
    for section in ("bfp", "integers"):
        assert sorted(committed[section]) == sorted(live[section]), section
        for name, entry in live[section].items():
            for key, value in entry.items():
                old = committed[section][name][key]
                if isinstance(value, torch.Tensor):
                    assert torch.equal(old.nan_to_num(0.123), value.nan_to_num(0.123)), (section, name, key)
                else:
                    assert old == value, (section, name, key)
    for section in ("mappers", "special"):
        for name, value in live[section].items():
            assert torch.equal(committed[section][name].nan_to_num(0.5), value.nan_to_num(0.5)), (section, name)


@pytest.mark.parametrize("form", ["row_col_dims", "override_1d", "override_1d_replicate"])
def test_mesh_mapper_config_forms(real_ttnn, emulator, form):
    x = cases.mapper_input()

    def shards(tt):
        if form == "row_col_dims":
            config = tt.MeshMapperConfig(1, None)
        elif form == "override_1d":
            config = tt.MeshMapperConfig([tt.PlacementShard(0)], tt.MeshShape([8]))
        else:
            config = tt.MeshMapperConfig([tt.PlacementReplicate()], tt.MeshShape([8]))
        mapper = tt.create_mesh_mapper(tt.MeshShape(2, 4), config)
        return host_shards(tt, tt.from_torch(x, dtype=tt.float32, mesh_mapper=mapper))

    assert torch.equal(shards(emulator), shards(real_ttnn))
