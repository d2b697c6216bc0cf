"""A weight too large to prepare whole is multiplied in output-column slices, bit-identical to the whole
(prepared per slice, or for a bf16-stored weight of few-row products widened into one reused buffer)."""

from __future__ import annotations

import pytest
import torch

from deepseek_tt.backend import ttnn
from deepseek_tt.backend.emulator.ops import _precision, matmul

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("transpose_b", [False, True], ids=["b", "bT"])
@pytest.mark.parametrize("fidelity", ["LoFi", "HiFi2", "HiFi4"])
@pytest.mark.parametrize("fp32_acc", [False, True], ids=["bf16acc", "fp32acc"])
@pytest.mark.parametrize("rows", [64, 32, 4], ids=["rows64", "few-rows32", "few-rows4"])
def test_column_slices_equal_the_whole_product(monkeypatch, transpose_b, fidelity, fp32_acc, rows):
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(1, 2))
    a = torch.randn(rows, 96)
    b = torch.randn(200, 96) if transpose_b else torch.randn(96, 200)
    ta = ttnn.from_torch(a, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=mesh, mesh_mapper=ttnn.ReplicateTensorToMesh(mesh))
    tb = ttnn.from_torch(b, dtype=ttnn.bfloat8_b, layout=ttnn.TILE_LAYOUT, device=mesh,
                         mesh_mapper=ttnn.ShardTensorToMesh(mesh, dim=0 if transpose_b else 1))
    config = ttnn.WormholeComputeKernelConfig(math_fidelity=getattr(ttnn.MathFidelity, fidelity), fp32_dest_acc_en=fp32_acc)
    compose = ttnn.ConcatMeshToTensor(mesh, dim=0)

    whole = ttnn.to_torch(ttnn.matmul(ta, tb, transpose_b=transpose_b, compute_kernel_config=config), mesh_composer=compose)
    # budget of one 32-column slice: 100 columns per device -> slices of 32, 32, 32 and 4
    monkeypatch.setattr(matmul, "_CHUNK_BYTES", 96 * matmul._IN1_BYTES_PER_VALUE * 32)
    monkeypatch.setattr(matmul, "_CACHED_SLICE_BYTES", 96 * matmul._IN1_BYTES_PER_VALUE * 32)
    _precision.operand_cache.clear()
    sliced = ttnn.to_torch(ttnn.matmul(ta, tb, transpose_b=transpose_b, compute_kernel_config=config), mesh_composer=compose)

    assert torch.equal(whole, sliced)
    ttnn.close_mesh_device(mesh)
