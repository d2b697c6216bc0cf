"""Emulator numerics: bf16 rounding, block-float bfp8_b / bfp4_b quantization, integer conversion.

The vectorised implementation is checked against a slow, independent per-value reference written from
the format's definition (NUMERICS.md), and against the format's stated properties.
"""

from __future__ import annotations

import math
import struct

import pytest
import torch

from deepseek_tt.backend.emulator import numerics
from deepseek_tt.backend.emulator.types import DataType

pytestmark = pytest.mark.unit

BFP = [(DataType.BFLOAT8_B, 7), (DataType.BFLOAT4_B, 3)]


def _f32_bits(value: float) -> int:
    return struct.unpack("<I", struct.pack("<f", value))[0]


def _reference_bfp_block(block: list[float], magnitude_bits: int) -> list[float]:
    """One 16-value block, from the definition, with Python integers."""
    bits = [_f32_bits(v) for v in block]
    exps = [(b >> 23) & 0xFF for b in bits]
    if any(e == 0xFF for e in exps):
        return [v if (b >> 23) & 0xFF == 0xFF else 0.0 for v, b in zip(block, bits)]
    shared = max(exps)
    out = []
    for b, e in zip(bits, exps):
        if e == 0:
            out.append(0.0)
            continue
        mantissa = (b & 0x7FFFFF) | (1 << 23)
        shift = 23 - (magnitude_bits - 1) + (shared - e)
        q, rem = mantissa >> shift, mantissa & ((1 << shift) - 1)
        half = 1 << (shift - 1)
        if rem > half or (rem == half and q & 1):
            q += 1
        q = min(q, (1 << magnitude_bits) - 1)
        value = math.ldexp(q, shared - 127 - (magnitude_bits - 1))
        out.append(-value if (b >> 31) and q else value)
    return out


def _reference_bfp(x: torch.Tensor, magnitude_bits: int) -> torch.Tensor:
    rows = x.reshape(-1, x.shape[-1]).tolist()
    out = []
    for row in rows:
        padded = row + [0.0] * ((-len(row)) % 16)
        quantized = []
        for i in range(0, len(padded), 16):
            quantized += _reference_bfp_block(padded[i : i + 16], magnitude_bits)
        out.append(quantized[: len(row)])
    return torch.tensor(out, dtype=torch.float32).reshape(x.shape)


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    a, b = a.to(torch.float32), b.to(torch.float32)
    return bool(((a.view(torch.int32) == b.view(torch.int32)) | (a.isnan() & b.isnan())).all())


def _edge_case_matrix() -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(12, 80, generator=g) * torch.exp(torch.randn(12, 80, generator=g) * 4)
    x[0, :16] = torch.tensor([1.0, 1 + 2**-7, 1 + 3 * 2**-7, 2 - 2**-8, 1 + 2**-3, 1 + 3 * 2**-3, -0.0, 1e-39,
                              0.5, -0.25, 2.0**-20, 3.0, 1.5, -1.75, 1.0625, 7.99])
    x[1, :16] = 1.999  # saturation: rounds past the largest magnitude
    x[2, :16] = torch.tensor([2.0**-124, 2.0**-126, 3 * 2.0**-127, 2.0**-130] + [0.0] * 12)  # tiny exponents
    x[3, :4] = torch.tensor([float("inf"), 1.0, 2.0, -3.0])
    x[3, 17] = float("nan")
    x[3, 40] = -float("inf")
    x[4] = 0.0
    x[5, :16] = torch.tensor([3e38, 1e38, -2e38, 1.0] + [0.0] * 12)  # huge exponents
    x[6, :16] = torch.tensor([-0.0] * 16)
    return x


@pytest.mark.parametrize(("dtype", "magnitude_bits"), BFP)
def test_bfp_matches_reference_definition(dtype, magnitude_bits):
    x = _edge_case_matrix()
    assert _same_bits(numerics.quantize_bfp(x, dtype), _reference_bfp(x, magnitude_bits))


@pytest.mark.parametrize(("dtype", "magnitude_bits"), BFP)
@pytest.mark.parametrize("shape", [(5,), (3, 7), (2, 33, 50), (1, 1, 31, 17)])
def test_bfp_odd_shapes_match_reference(dtype, magnitude_bits, shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)))
    assert _same_bits(numerics.quantize_bfp(x, dtype), _reference_bfp(x.reshape(-1, shape[-1]), magnitude_bits).reshape(shape))


def _multi_slice_input() -> torch.Tensor:
    """``[2, 100, 2048]``: several of quantize_bfp's CPU slices, each with other content (common-case
    slices, and slices with NaN/inf, tiny-exponent blocks, denormals, -0, saturation and ties)."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 100, 2048, generator=g) / 45
    x[0, 70:72] *= torch.exp(torch.randn(2, 2048, generator=g) * 6)  # wide exponent spread
    x[0, 75, :80] = _edge_case_matrix()[0]  # ties, denormal, -0
    x[1, 3, 32:48] = 1.999  # saturation
    x[1, 10, 5] = float("nan")
    x[1, 20, 100] = -float("inf")
    x[1, 40, 16:32] = torch.tensor([2.0**-124, 2.0**-126, 3 * 2.0**-127] + [0.0] * 13)  # tiny block
    x[1, 90:92] = torch.round(x[1, 90:92] * 2**8) / 2**8  # many exact ties
    x[1, 99] = -0.0
    x[0, 10:12, 64:96] = 0.0  # all-zero blocks in a common-case slice
    x[0, 12, 128:144] = torch.tensor([1e-39, -1e-40] + [0.0] * 14)  # an all-denormal block there too
    return x


@pytest.mark.parametrize(("dtype", "magnitude_bits"), BFP)
def test_bfp_sliced_path_matches_whole_tensor_path(dtype, magnitude_bits):
    """The cache-sized slices (common case and the general fallback per slice) equal the whole-tensor
    general path, for fp32 / bf16 / transposed inputs and fp32 / bf16 outputs."""
    x = _multi_slice_input()
    assert x.numel() > 3 * numerics._SLICE_VALUES
    frac_bits = magnitude_bits - 1
    expected = numerics._quantize_blocks(x, frac_bits)
    assert _same_bits(numerics.quantize_bfp(x, dtype), expected)
    assert numerics.quantize_bfp(x, dtype, out_dtype=torch.bfloat16).dtype == torch.bfloat16
    assert _same_bits(numerics.quantize_bfp(x, dtype, out_dtype=torch.bfloat16), expected)
    transposed = x.transpose(-1, -2).contiguous().transpose(-1, -2)  # same values, non-contiguous
    assert _same_bits(numerics.quantize_bfp(transposed, dtype), expected)
    half = x.to(torch.bfloat16)
    assert _same_bits(numerics.quantize_bfp(half, dtype), numerics._quantize_blocks(half.float(), frac_bits))
    rows = [(0, 75), (1, 3), (1, 10), (1, 40), (1, 90), (0, 0)]
    for i, r in rows:  # and the per-value definition, on the special rows
        assert _same_bits(expected[i, r], _reference_bfp(x[i, r : r + 1], magnitude_bits)[0]), (i, r)


@pytest.mark.parametrize(("dtype", "magnitude_bits"), BFP)
def test_bfp_properties(dtype, magnitude_bits):
    x = torch.randn(64, 64, generator=torch.Generator().manual_seed(3))
    q = numerics.quantize_bfp(x, dtype).reshape(64, 4, 16)
    blocks = x.reshape(64, 4, 16)
    shared = torch.frexp(blocks.abs().amax(-1, keepdim=True))[1] - 1  # unbiased exponent of the block max
    step = torch.pow(2.0, (shared - (magnitude_bits - 1)).float())
    steps = q / step
    assert torch.equal(steps, steps.round()), "every value is an integer number of the block's steps"
    assert steps.abs().max() <= 2**magnitude_bits - 1
    error, step = (q - blocks).abs(), step.expand_as(q)
    saturating = blocks.abs() >= step * (2**magnitude_bits - 0.5)  # would round up past the largest magnitude
    assert error[~saturating].le(step[~saturating] / 2).all()
    assert error[saturating].le(step[saturating]).all()


def test_bfp_saturates_instead_of_carrying():
    x = torch.full((1, 16), 1.999)
    assert numerics.quantize_bfp(x, DataType.BFLOAT8_B)[0, 0].item() == 1 + 63 / 64
    assert numerics.quantize_bfp(x, DataType.BFLOAT4_B)[0, 0].item() == 1.75


def test_bfp_specials_zero_their_block_only():
    x = torch.ones(1, 32)
    x[0, 3] = float("nan")
    x[0, 20] = -float("inf")
    q = numerics.quantize_bfp(x, DataType.BFLOAT8_B)[0]
    assert math.isnan(q[3]) and q[20].item() == -math.inf
    others = torch.cat([q[:3], q[4:20], q[21:]])
    assert torch.equal(others, torch.zeros_like(others))


def test_bfp_negative_zero_and_denormals_become_positive_zero():
    x = torch.tensor([[-0.0, 1e-40, -1e-41, 1.0] + [0.0] * 12])
    q = numerics.quantize_bfp(x, DataType.BFLOAT8_B)[0]
    assert q[:3].view(torch.int32).eq(0).all() and q[3].item() == 1.0


def test_bfp_blocks_start_at_column_zero_and_never_span_rows():
    x = torch.ones(2, 32)
    x[0, 15] = 1024.0  # only columns 0-15 of row 0 share its exponent
    q = numerics.quantize_bfp(x, DataType.BFLOAT4_B)
    assert torch.equal(q[0, :15], torch.zeros(15))
    assert torch.equal(q[0, 16:], torch.ones(16)) and torch.equal(q[1], torch.ones(32))


def test_round_to_dtype_bfp_storage_is_exact_bf16():
    x = torch.randn(40, 70) * 1e3
    stored = numerics.round_to_dtype(x, DataType.BFLOAT8_B)
    assert stored.dtype == torch.bfloat16
    assert torch.equal(stored.float(), numerics.quantize_bfp(x, DataType.BFLOAT8_B))


def _reference_bf16(value: float) -> float:
    bits = _f32_bits(value)
    upper, lower = bits >> 16, bits & 0xFFFF
    if lower > 0x8000 or (lower == 0x8000 and upper & 1):
        upper += 1
    return struct.unpack("<f", struct.pack("<I", (upper & 0xFFFF) << 16))[0]


def test_bfloat16_round_to_nearest_even():
    values = [1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20, -(1 + 2**-8), 1e-40, 3.14159, 65504.0, -7.7e-39]
    rounded = numerics.round_to_dtype(torch.tensor(values), DataType.BFLOAT16)
    assert rounded.dtype == torch.bfloat16
    assert rounded.float().tolist() == [_reference_bf16(v) for v in values]


def test_integer_conversion_truncates_and_wraps():
    x = torch.tensor([1.7, -1.2, 3e9, 2.5])
    assert numerics.round_to_dtype(x, DataType.UINT32).tolist() == [1, 2**32 - 1, 3_000_000_000, 2]
    assert numerics.round_to_dtype(x[[0, 1, 3]], DataType.INT32).tolist() == [1, -1, 2]
    assert numerics.round_to_dtype(torch.tensor([70000]), DataType.UINT16).tolist() == [70000 - 65536]
    assert numerics.round_to_dtype(torch.tensor([1e6, -1.2, 7.9]), DataType.UINT16).tolist() == [65535, 0, 7]


def test_float32_is_exact():
    x = torch.randn(10, dtype=torch.float64)
    assert torch.equal(numerics.round_to_dtype(x, DataType.FLOAT32), x.to(torch.float32))
