"""Block-wise fp8 (e4m3) weights as in the official DeepSeek-V3 checkpoint.

A weight ``W`` [M, N] is stored as ``W_fp8`` (float8_e4m3fn) and ``W.weight_scale_inv`` (fp32) of shape
[ceil(M/bm), ceil(N/bn)] with blocks of bm x bn = 128 x 128; the value is ``W_fp8 * scale_inv`` of its
block. Edge blocks are ragged when M or N is not a multiple of the block (e.g. the 576-row
``kv_a_proj_with_mqa``), exactly as DeepSeek's own ``weight_dequant`` kernel treats them.
Dequantization walks over row blocks and broadcasts one scale per block, so no full-size scale
tensor is ever built.
"""

from __future__ import annotations

import math

import torch

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8_DTYPE).max)  # 448
DEFAULT_BLOCK: tuple[int, int] = (128, 128)


def scale_grid_shape(weight_shape: tuple[int, ...] | torch.Size, block: tuple[int, int] = DEFAULT_BLOCK) -> tuple[int, int]:
    """Shape of ``weight_scale_inv`` for a 2-D weight: (ceil(M / bm), ceil(N / bn))."""
    if len(weight_shape) != 2:
        raise ValueError(f"fp8 block scales need a 2-D weight, got shape {tuple(weight_shape)}")
    rows, cols = weight_shape
    return math.ceil(rows / block[0]), math.ceil(cols / block[1])


def dequantize_fp8_blocks(
    weight: torch.Tensor,
    scale_inv: torch.Tensor,
    block: tuple[int, int] = DEFAULT_BLOCK,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``weight`` (fp8) x its per-block ``scale_inv`` -> a ``dtype`` tensor of the weight's shape.

    The product is formed in fp32 (as transformers' and DeepSeek's kernels do) and then cast.
    Memory: the output plus one fp32 row block at a time; scales are broadcast, never expanded.
    """
    expected = scale_grid_shape(weight.shape, block)
    if tuple(scale_inv.shape) != expected:
        raise ValueError(
            f"scale_inv shape {tuple(scale_inv.shape)} does not match weight shape {tuple(weight.shape)} "
            f"with {block[0]}x{block[1]} blocks (expected {expected})"
        )
    rows, cols = weight.shape
    bm, bn = block
    full_cols = (cols // bn) * bn  # columns in complete blocks; the rest form the ragged edge block
    out = torch.empty((rows, cols), dtype=dtype)
    scales = scale_inv.to(torch.float32)
    for rb in range(expected[0]):
        r0, r1 = rb * bm, min(rows, (rb + 1) * bm)
        values = weight[r0:r1].to(torch.float32)
        if full_cols:  # [r, nb, bn] *= [nb, 1]: one scale per block, broadcast, never expanded
            values[:, :full_cols].unflatten(1, (full_cols // bn, bn)).mul_(scales[rb, : full_cols // bn, None])
        if full_cols < cols:
            values[:, full_cols:].mul_(scales[rb, -1])
        out[r0:r1] = values
    return out


def quantize_fp8_blocks(
    weight: torch.Tensor, block: tuple[int, int] = DEFAULT_BLOCK
) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2-D float weight -> (float8_e4m3fn weight, fp32 ``scale_inv`` per block), amax-scaled to 448.

    An all-zero block gets scale 1. ``dequantize_fp8_blocks`` of the result is the fp8 rounding of
    ``weight`` within each block.
    """
    grid = scale_grid_shape(weight.shape, block)
    rows, cols = weight.shape
    bm, bn = block
    w = weight.to(torch.float32)
    padded = torch.zeros(grid[0] * bm, grid[1] * bn, dtype=torch.float32)
    padded[:rows, :cols] = w
    blocks = padded.view(grid[0], bm, grid[1], bn)
    amax = blocks.abs().amax(dim=(1, 3))
    scale_inv = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
    q = (blocks / scale_inv[:, None, :, None]).clamp_(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    q = q.view(grid[0] * bm, grid[1] * bn)[:rows, :cols].contiguous()
    return q, scale_inv.contiguous()


__all__ = ["DEFAULT_BLOCK", "FP8_DTYPE", "FP8_MAX", "dequantize_fp8_blocks", "quantize_fp8_blocks", "scale_grid_shape"]
