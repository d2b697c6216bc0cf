"""The matmul precision model: math fidelity phases and destination-register accumulation.

See NUMERICS.md ("Matmul precision model"). Summary:

* Operands enter the matrix engine through 19-bit source registers (sign, 8-bit exponent, 10 mantissa
  bits): fp32 operands are truncated to that (TF32-like) precision; bf16 / bfp8 / bfp4 values fit.
* ``in0`` (activations) is loaded into srcB, ``in1`` (weights) into srcA. One multiplier pass uses the
  top 5 significant bits of srcA (hidden one + 4) and the top 7 of srcB (hidden one + 6). The fidelity
  phases add the remaining bits: LoFi = A_hi*B_hi; HiFi2 adds A_lo*B_hi; HiFi3 adds A_hi*B_lo;
  HiFi4 adds A_lo*B_lo (the exact product of the TF32 operands). Bits are truncated, not rounded.
* ``fp32_dest_acc_en=False``: the destination register holds bf16, so the running sum over K is
  rounded (RNE) to bf16 after every 32-wide K tile. ``True``: the sum stays in fp32.
* ``packer_l1_acc`` has no further numerical effect in this model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import types as T

TILE = 32
_SRC_MANTISSA_BITS = 10
_SRCA_HI_BITS = 4  # explicit mantissa bits of srcA (in1) used per phase, besides the hidden one
_SRCB_HI_BITS = 6  # explicit mantissa bits of srcB (in0) used per phase
_PARTIALS_BUDGET = 1 << 24  # elements of K-tile partial products materialised at once


@dataclass(frozen=True)
class MatmulPrecision:
    fidelity: T.MathFidelity
    fp32_dest_acc: bool


def matmul_precision(compute_kernel_config: T.WormholeComputeKernelConfig | None) -> MatmulPrecision:
    """The effective precision of a matmul call (ttnn's defaults: LoFi, bf16 destination)."""
    if compute_kernel_config is None:
        return MatmulPrecision(T.MathFidelity.LoFi, False)
    fidelity = compute_kernel_config.math_fidelity
    if fidelity in (None, T.MathFidelity.Invalid):
        fidelity = T.MathFidelity.LoFi
    return MatmulPrecision(fidelity, bool(compute_kernel_config.fp32_dest_acc_en))


def truncate_mantissa(x: torch.Tensor, explicit_bits: int) -> torch.Tensor:
    """Keep ``explicit_bits`` mantissa bits of fp32 values, truncating toward zero."""
    if explicit_bits >= 23:
        return x
    mask = -(1 << (23 - explicit_bits))
    return (x.contiguous().view(torch.int32) & mask).view(torch.float32)


def _split(x: torch.Tensor, hi_bits: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    full = truncate_mantissa(x, _SRC_MANTISSA_BITS)
    hi = truncate_mantissa(full, hi_bits)
    return full, hi, full - hi


def fidelity_matmul(a: torch.Tensor, b: torch.Tensor, fidelity: T.MathFidelity) -> torch.Tensor:
    """fp32 product of in0 ``a`` [..., M, K] and in1 ``b`` [..., K, N] as the fidelity phases compute it."""
    b_full, b_hi, b_lo = _split(b, _SRCA_HI_BITS)  # in1 -> srcA
    a_full, a_hi, a_lo = _split(a, _SRCB_HI_BITS)  # in0 -> srcB
    if fidelity == T.MathFidelity.HiFi4:
        return torch.matmul(a_full, b_full)
    if fidelity == T.MathFidelity.HiFi3:
        return torch.matmul(a_hi, b_full) + torch.matmul(a_lo, b_hi)
    if fidelity == T.MathFidelity.HiFi2:
        return torch.matmul(a_hi, b_full)
    if fidelity == T.MathFidelity.LoFi:
        return torch.matmul(a_hi, b_hi)
    raise ValueError(f"ttnn: unsupported math fidelity {fidelity!r}")


def _round_bf16(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.bfloat16).to(torch.float32)


def device_matmul(a: torch.Tensor, b: torch.Tensor, precision: MatmulPrecision) -> torch.Tensor:
    """fp32 result of ``a @ b`` (broadcasting batch dims) under the precision model."""
    if precision.fp32_dest_acc:
        return fidelity_matmul(a, b, precision.fidelity)
    k = a.shape[-1]
    num_tiles = math.ceil(k / TILE)
    if num_tiles <= 1:
        return _round_bf16(fidelity_matmul(a, b, precision.fidelity))
    pad = num_tiles * TILE - k
    if pad:
        a = torch.nn.functional.pad(a, (0, pad))
        b = torch.nn.functional.pad(b, (0, 0, 0, pad))
    out_shape = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
    group = max(1, min(num_tiles, _PARTIALS_BUDGET // max(1, math.prod(out_shape))))
    acc = None
    for start in range(0, num_tiles, group):
        stop = min(num_tiles, start + group)
        g = stop - start
        a_c = a[..., start * TILE : stop * TILE].unflatten(-1, (g, TILE)).movedim(-2, 0)
        b_c = b[..., start * TILE : stop * TILE, :].unflatten(-2, (g, TILE)).movedim(-3, 0)
        partials = fidelity_matmul(a_c, b_c, precision.fidelity)
        for i in range(g):
            acc = _round_bf16(partials[i]) if acc is None else _round_bf16(acc + partials[i])
    assert acc is not None
    return acc
