"""Value rounding to each ttnn data type, bit-identical to real ttnn's host conversion (NUMERICS.md).

The emulator stores every tensor already rounded to its ttnn dtype (``round_to_dtype``), in a torch
storage dtype that represents those values exactly (``storage_torch_dtype``).
"""

from __future__ import annotations

import torch

from .types import FACE_SIZE, DataType

#: magnitude bits (explicit leading one included) of each block-float format
BFP_MANTISSA_BITS = {DataType.BFLOAT8_B: 7, DataType.BFLOAT4_B: 3}

_FLOAT_STORAGE = {
    DataType.BFLOAT16: torch.bfloat16,
    DataType.BFLOAT8_B: torch.bfloat16,
    DataType.BFLOAT4_B: torch.bfloat16,
    DataType.FLOAT32: torch.float32,
}
#: wrap-around width of the integer dtypes (static_cast semantics of the C++ conversion)
_INT_BITS = {DataType.UINT8: 8, DataType.UINT16: 16, DataType.UINT32: 32, DataType.INT32: 32, DataType.INT8: 8}
_SIGNED_INTS = frozenset({DataType.INT32, DataType.INT8})
#: float -> narrow unsigned conversion saturates in ttnn's vectorised path (its scalar tail wraps; not modelled)
_SATURATING_FROM_FLOAT = frozenset({DataType.UINT16, DataType.UINT8})

#: torch dtype that ``ttnn.to_torch`` returns for each ttnn dtype (measured on ttnn 0.81.1)
TO_TORCH_DTYPE = {
    DataType.BFLOAT16: torch.bfloat16,
    DataType.FLOAT32: torch.float32,
    DataType.BFLOAT8_B: torch.float32,
    DataType.BFLOAT4_B: torch.float32,
    DataType.UINT8: torch.uint8,
    DataType.UINT16: torch.uint16,
    DataType.UINT32: torch.uint32,
    DataType.INT32: torch.int32,
    DataType.INT8: torch.int8,
}


def storage_torch_dtype(dtype: DataType) -> torch.dtype:
    """The torch dtype the emulator keeps ``dtype`` values in (exact for every value of ``dtype``)."""
    if dtype in _FLOAT_STORAGE:
        return _FLOAT_STORAGE[dtype]
    if dtype in _INT_BITS:
        return torch.int64
    raise TypeError(f"ttnn emulator: data type {dtype} is not supported")


def is_float_dtype(dtype: DataType) -> bool:
    return dtype in _FLOAT_STORAGE


def round_to_dtype(t: torch.Tensor, dtype: DataType) -> torch.Tensor:
    """``t`` rounded to ``dtype`` as real ttnn's host conversion does, in the storage torch dtype.

    bfloat16: round-to-nearest-even from fp32 (denormals kept); float32: exact (fp64 rounds RNE);
    bfloat8_b / bfloat4_b: block-float per 16 values along the last dim (:func:`quantize_bfp`);
    integers: truncation toward zero, then wrap-around to the type's width (floats to uint16/uint8
    saturate instead, as ttnn's vectorised conversion does).
    """
    if dtype in BFP_MANTISSA_BITS:
        return quantize_bfp(t, dtype, out_dtype=torch.bfloat16)
    if dtype == DataType.BFLOAT16:
        if t.dtype == torch.bfloat16:
            return t
        return (t if t.dtype == torch.float32 else t.to(torch.float32)).to(torch.bfloat16)
    if dtype == DataType.FLOAT32:
        return t.to(torch.float32)
    if dtype in _INT_BITS:
        bits = _INT_BITS[dtype]
        if t.is_floating_point() and dtype in _SATURATING_FROM_FLOAT:
            return t.trunc().clamp(0, (1 << bits) - 1).to(torch.int64)
        values = t.trunc().to(torch.int64) if t.is_floating_point() else t.to(torch.int64)
        values = values & ((1 << bits) - 1)
        if dtype in _SIGNED_INTS:
            values = torch.where(values >= (1 << (bits - 1)), values - (1 << bits), values)
        return values
    raise TypeError(f"ttnn emulator: data type {dtype} is not supported")


def quantize_bfp(t: torch.Tensor, dtype: DataType, out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Block-float quantization of ``t`` (any float dtype) to ``bfloat8_b`` / ``bfloat4_b``, as ``out_dtype``.

    Blocks are 16 consecutive values along the last dim, starting at index 0 (a face row of a 32x32
    tile; the zero tile padding never raises a block's exponent). Per block: shared exponent = the
    largest IEEE biased exponent; each value keeps sign and ``m`` magnitude bits (explicit leading
    one) at step ``2^(E - 127 - (m - 1))``, rounded to nearest-even straight from the fp32 mantissa and
    saturated at ``2^m - 1`` instead of carrying into the exponent. Denormals flush to 0, -0 becomes +0,
    and a NaN/inf keeps itself while zeroing the rest of its block.

    ``out_dtype`` is float32 or bfloat16 (both hold every bfp value exactly). On the CPU the work runs
    in cache-sized slices of rows, so temporaries stay small whatever the size of ``t``.
    """
    if dtype not in BFP_MANTISSA_BITS:
        raise TypeError(f"quantize_bfp: {dtype} is not a block-float data type")
    frac_bits = BFP_MANTISSA_BITS[dtype] - 1  # bits below the explicit leading one
    width = t.shape[-1] if t.dim() else 1
    if width % FACE_SIZE or t.numel() == 0:  # partial blocks: pad, once, on the whole tensor
        return _quantize_blocks(t.to(torch.float32), frac_bits).to(out_dtype)
    rows = t.reshape(-1, width)
    if not rows.is_contiguous():
        rows = rows.contiguous()
    out = torch.empty(rows.shape, dtype=out_dtype, device=t.device)
    step = rows.shape[0] if t.device.type != "cpu" else max(1, _SLICE_VALUES // width)
    for first in range(0, rows.shape[0], step):
        part = rows[first : first + step]
        _quantize_slice(part.to(torch.float32), frac_bits, out[first : first + step])
    return out.reshape(t.shape)


#: values per slice of :func:`quantize_bfp` on the CPU (a few fp32 buffers of this size fit in L2)
_SLICE_VALUES = 1 << 17


def _quantize_slice(x: torch.Tensor, frac_bits: int, out: torch.Tensor) -> None:
    """Quantize fp32 rows ``x`` (width a multiple of 16) into ``out``.

    Common case (every block's exponent E is 0 or in [frac_bits + 2, 254]): ``x * 2^(127 + frac_bits - E)``
    is exact and in fp32's normal range, a value with exponent 0 lands below 0.5 (so rounding flushes
    it; an all-zero/denormal block is scaled as if E were frac_bits + 2), round-half-even and the clamp
    give the signed magnitude, and scaling back by the step is exact. Other slices (inf/NaN, blocks
    with a tiny non-zero E) take the general path :func:`_quantize_blocks`.
    """
    blocks = x.reshape(-1, FACE_SIZE)
    shared = (blocks.view(torch.int32) & 0x7FFFFFFF).amax(dim=-1, keepdim=True) >> 23
    if int(shared.max()) > 254 or bool(((shared > 0) & (shared < frac_bits + 2)).any()):
        out.copy_(_quantize_blocks(x, frac_bits))
        return
    shared.clamp_(min=frac_bits + 2)
    limit = float((1 << (frac_bits + 1)) - 1)
    scaled = blocks * _pow2(127 + frac_bits - shared)
    scaled.round_().clamp_(-limit, limit).mul_(_pow2(shared - (127 + frac_bits)))
    torch.add(scaled.view(x.shape), 0.0, out=out)  # -0 -> +0, cast to out's dtype (exact)


def _quantize_blocks(x: torch.Tensor, frac_bits: int) -> torch.Tensor:
    """The general block-float quantization of fp32 ``x`` (any width, special values), whole-tensor."""
    x = x.contiguous()
    shape = x.shape
    if x.dim() == 0:
        x = x.reshape(1)
    width = x.shape[-1]
    pad = (-width) % FACE_SIZE
    if pad:
        x = torch.nn.functional.pad(x, (0, pad))
    blocks = x.reshape(*x.shape[:-1], -1, FACE_SIZE)
    exponent = (blocks.view(torch.int32) >> 23) & 0xFF
    shared = exponent.amax(dim=-1, keepdim=True)

    # |x| / step with step = 2^(E - 127 - frac_bits): exact power-of-two scaling (split in two factors
    # so that neither over- nor underflows), then round half to even, saturating instead of carrying.
    step_exp = shared - (127 + frac_bits)
    high = (-step_exp).clamp(max=100)
    scaled = blocks.abs().mul_(_pow2(high)).mul_(_pow2(-step_exp - high))
    scaled.masked_fill_(exponent == 0, 0.0)  # denormals (and zeros) flush to zero
    magnitude = scaled.round_().clamp_(max=float((1 << (frac_bits + 1)) - 1))
    low = step_exp.clamp(min=-100)
    values = magnitude.mul_(_pow2(low)).mul_(_pow2(step_exp - low))  # exact, possibly an fp32 denormal
    values = values.copysign_(blocks).add_(0.0)  # -0 -> +0

    special = exponent == 0xFF
    if bool(special.any()):  # a NaN/inf keeps itself and zeroes the rest of its block
        block_special = special.any(dim=-1, keepdim=True)
        values = torch.where(block_special, torch.where(special, blocks, torch.zeros_like(blocks)), values)

    values = values.reshape(*x.shape[:-1], -1)
    if pad:
        values = values[..., :width]
    return values.reshape(shape)


def _pow2(exponent: torch.Tensor) -> torch.Tensor:
    """``2.0 ** exponent`` in fp32 for integer exponents in [-126, 127], built from the bit pattern."""
    return ((exponent + 127) << 23).to(torch.int32).view(torch.float32)
