"""ttnn.matmul / ttnn.linear on the emulator: results against torch, the precision model, invalid use."""

from __future__ import annotations

import pytest
import torch

from deepseek_tt.backend import emulator as ttnn
from suites.unit.emulator_ops_helpers import MESHES, bf16, open_mesh, pcc, replicated, sharded, shards

pytestmark = pytest.mark.unit

HIFI4_FP32 = ttnn.WormholeComputeKernelConfig(math_fidelity=ttnn.MathFidelity.HiFi4, fp32_dest_acc_en=True)


@pytest.mark.parametrize("mesh", MESHES)
def test_linear_column_sharded_matches_torch(mesh):
    torch.manual_seed(0)
    x, w, b = torch.randn(1, 1, 32, 128), torch.randn(128, 256), torch.randn(256)
    with open_mesh(*mesh) as device:
        n = device.get_num_devices()
        tx = replicated(device, x)
        tw = sharded(device, w, dim=-1)
        tb = sharded(device, b.reshape(1, 256), dim=-1)
        out = ttnn.linear(tx, tw, bias=tb, compute_kernel_config=HIFI4_FP32, dtype=ttnn.float32)
        assert out.shape == (1, 1, 32, 256 // n) and out.dtype == ttnn.float32
        got = ttnn.to_torch(out, mesh_composer=ttnn.ConcatMeshToTensor(device, dim=-1))
    want = bf16(x) @ bf16(w) + bf16(b)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_linear_bfp8_weight_and_fused_activation():
    torch.manual_seed(1)
    x, w = torch.randn(1, 1, 64, 96), torch.randn(96, 64)
    with open_mesh(1, 1) as device:
        tw = replicated(device, w, dtype=ttnn.bfloat8_b)
        w_stored = ttnn.to_torch(tw)
        out = ttnn.linear(replicated(device, x), tw, activation="silu", compute_kernel_config=HIFI4_FP32)
        got = ttnn.to_torch(out)
        fused = ttnn.linear(replicated(device, x), tw, compute_kernel_config=HIFI4_FP32,
                            program_config=ttnn.MatmulMultiCoreReuseMultiCast1DProgramConfig(
                                compute_with_storage_grid_size=ttnn.CoreCoord(8, 8), in0_block_w=1, out_subblock_h=1,
                                out_subblock_w=1, per_core_M=2, per_core_N=2, fuse_batch=True, mcast_in0=True,
                                fused_activation=ttnn.UnaryWithParam(ttnn.UnaryOpType.SILU)))
    assert not torch.equal(w_stored, bf16(w))  # bfp8 really quantized the weight
    want = bf16(torch.nn.functional.silu(bf16(x) @ w_stored))
    torch.testing.assert_close(got.float(), want, atol=0.02, rtol=0.02)
    torch.testing.assert_close(ttnn.to_torch(fused), got)


def test_matmul_batched_broadcast_and_transposes():
    torch.manual_seed(2)
    a, b = torch.randn(2, 3, 32, 64), torch.randn(64, 32)
    c = torch.randn(2, 3, 32, 64)
    with open_mesh(1, 1) as device:
        ta, tb, tc = replicated(device, a), replicated(device, b), replicated(device, c)
        broadcast = ttnn.to_torch(ttnn.matmul(ta, tb, compute_kernel_config=HIFI4_FP32, dtype=ttnn.float32))
        batched = ttnn.to_torch(ttnn.matmul(ta, tc, transpose_b=True, compute_kernel_config=HIFI4_FP32, dtype=ttnn.float32))
        trans_a = ttnn.to_torch(ttnn.matmul(tc, ta, transpose_a=True, compute_kernel_config=HIFI4_FP32, dtype=ttnn.float32))
    torch.testing.assert_close(broadcast, bf16(a) @ bf16(b), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(batched, bf16(a) @ bf16(c).transpose(-1, -2), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(trans_a, bf16(c).transpose(-1, -2) @ bf16(a), atol=1e-4, rtol=1e-4)


def test_lofi_uses_top_bits_of_each_operand():
    # in0 (srcB) keeps 6 explicit mantissa bits, in1 (srcA) keeps 4 under LoFi.
    a = torch.full((1, 1, 32, 32), 0.0)
    b = torch.full((1, 1, 32, 32), 0.0)
    a[..., 0] = 1 + 2**-6 + 2**-7  # the 2**-7 bit is beyond srcB's 6 bits
    b[..., 0, :] = 1 + 2**-4 + 2**-5  # the 2**-5 bit is beyond srcA's 4 bits
    with open_mesh(1, 1) as device:
        ta, tb = replicated(device, a), replicated(device, b)
        results = {}
        for fidelity in (ttnn.MathFidelity.LoFi, ttnn.MathFidelity.HiFi2, ttnn.MathFidelity.HiFi3, ttnn.MathFidelity.HiFi4):
            cfg = ttnn.WormholeComputeKernelConfig(math_fidelity=fidelity, fp32_dest_acc_en=True)
            results[fidelity] = ttnn.to_torch(ttnn.matmul(ta, tb, compute_kernel_config=cfg, dtype=ttnn.float32))[0, 0, 0, 0].item()
    a_hi, a_full = 1 + 2**-6, 1 + 2**-6 + 2**-7
    b_hi, b_full = 1 + 2**-4, 1 + 2**-4 + 2**-5
    assert results[ttnn.MathFidelity.LoFi] == a_hi * b_hi
    assert results[ttnn.MathFidelity.HiFi2] == a_hi * b_full
    assert results[ttnn.MathFidelity.HiFi3] == a_hi * b_full + (a_full - a_hi) * b_hi
    assert results[ttnn.MathFidelity.HiFi4] == a_full * b_full


def test_bf16_destination_rounds_the_running_sum_per_k_tile():
    a = torch.ones(1, 1, 32, 64)
    b = torch.zeros(1, 1, 64, 32)
    b[..., :32, :] = 1.0
    b[..., 32:, :] = 2**-8  # second K tile adds 0.125 to 32: lost in a bf16 accumulator
    with open_mesh(1, 1) as device:
        ta, tb = replicated(device, a), replicated(device, b)
        fp32_acc = ttnn.matmul(ta, tb, dtype=ttnn.float32, compute_kernel_config=ttnn.WormholeComputeKernelConfig(
            math_fidelity=ttnn.MathFidelity.HiFi4, fp32_dest_acc_en=True))
        bf16_acc = ttnn.matmul(ta, tb, dtype=ttnn.float32, compute_kernel_config=ttnn.WormholeComputeKernelConfig(
            math_fidelity=ttnn.MathFidelity.HiFi4, fp32_dest_acc_en=False))
    assert torch.all(shards(fp32_acc) == 32.125)
    assert torch.all(shards(bf16_acc) == 32.0)


def test_lower_fidelity_means_larger_error():
    torch.manual_seed(3)
    x, w = torch.randn(1, 1, 32, 256), torch.randn(256, 64)
    want = bf16(x) @ bf16(w)
    errors = []
    with open_mesh(1, 1) as device:
        tx, tw = replicated(device, x), replicated(device, w)
        for fidelity in (ttnn.MathFidelity.LoFi, ttnn.MathFidelity.HiFi2, ttnn.MathFidelity.HiFi4):
            cfg = ttnn.WormholeComputeKernelConfig(math_fidelity=fidelity, fp32_dest_acc_en=True)
            got = ttnn.to_torch(ttnn.linear(tx, tw, compute_kernel_config=cfg, dtype=ttnn.float32))
            errors.append((got - want).abs().mean().item())
        default = ttnn.to_torch(ttnn.linear(tx, tw))
    assert errors[0] > errors[1] > errors[2]
    assert pcc(default.float(), want) > 0.999


def test_matmul_inner_dim_mismatch_is_refused():
    with open_mesh(1, 1) as device:
        a, b = replicated(device, torch.randn(32, 64)), replicated(device, torch.randn(96, 32))
        with pytest.raises(RuntimeError, match="width of the first tensor must be equal to the height"):
            ttnn.matmul(a, b)


def test_matmul_refuses_row_major_and_tensors_on_two_meshes():
    with open_mesh(1, 1) as device, open_mesh(1, 1) as other:
        a = replicated(device, torch.randn(32, 32))
        with pytest.raises(RuntimeError, match="TILE layout"):
            ttnn.matmul(replicated(device, torch.randn(32, 32), layout=ttnn.ROW_MAJOR_LAYOUT), a)
        with pytest.raises(RuntimeError, match="same mesh device"):
            ttnn.matmul(a, replicated(other, torch.randn(32, 32)))


def _1d_config(**overrides):
    fields = dict(compute_with_storage_grid_size=ttnn.CoreCoord(8, 8), in0_block_w=2, out_subblock_h=1, out_subblock_w=2,
                  per_core_M=1, per_core_N=2, fuse_batch=True, mcast_in0=True)
    fields.update(overrides)
    return ttnn.MatmulMultiCoreReuseMultiCast1DProgramConfig(**fields)


def test_program_config_is_validated_like_ttnn():
    with open_mesh(1, 1) as device:
        a, b = replicated(device, torch.randn(1, 1, 32, 128)), replicated(device, torch.randn(128, 256))
        assert ttnn.linear(a, b, program_config=_1d_config()).shape == (1, 1, 32, 256)  # 4 cores, Kt 4 % 2
        with pytest.raises(RuntimeError, match="in0_block_w"):
            ttnn.linear(a, b, program_config=_1d_config(in0_block_w=3))
        with pytest.raises(RuntimeError, match="out_subblock"):
            ttnn.linear(a, b, program_config=_1d_config(out_subblock_w=3))
        with pytest.raises(RuntimeError, match="destination tiles"):
            ttnn.linear(a, b, program_config=_1d_config(per_core_N=8, out_subblock_w=8, in0_block_w=1),
                        compute_kernel_config=HIFI4_FP32)
        with pytest.raises(RuntimeError, match="needs 8 cores"):
            ttnn.linear(a, b, program_config=_1d_config(per_core_N=1, out_subblock_w=1,
                                                        compute_with_storage_grid_size=ttnn.CoreCoord(2, 2)))


@pytest.mark.parametrize("rows", [1, 3, 5, 32, 96])
@pytest.mark.parametrize("fidelity, fp32_acc", [(ttnn.MathFidelity.HiFi2, True), (ttnn.MathFidelity.LoFi, False)])
def test_column_major_weights_give_the_row_major_bits(rows, fidelity, fp32_acc, monkeypatch):
    """Dense weights are kept column-major where the kernel probe allows it; any row count (odd ones multiply
    a row-major copy) must give exactly the products of row-major weights."""
    from deepseek_tt.backend.emulator.ops import _precision, matmul as emulator_matmul

    generator = torch.Generator().manual_seed(rows)
    x, w = torch.randn(1, 1, rows, 256, generator=generator), torch.randn(1, 1, 256, 192, generator=generator) / 16
    kernel = ttnn.WormholeComputeKernelConfig(math_fidelity=fidelity, fp32_dest_acc_en=fp32_acc)
    outputs = {}
    with open_mesh(1, 1) as device:
        tx = ttnn.from_torch(x, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=device)
        for column_major in (True, False):
            _precision.operand_cache.clear()
            monkeypatch.setattr(emulator_matmul, "column_major_weights_exact", lambda: column_major)
            tw = ttnn.from_torch(w, dtype=ttnn.bfloat8_b, layout=ttnn.TILE_LAYOUT, device=device)
            outputs[column_major] = ttnn.to_torch(ttnn.linear(tx, tw, compute_kernel_config=kernel, dtype=ttnn.float32))
    _precision.operand_cache.clear()
    assert torch.equal(outputs[True], outputs[False])
