"""RMS norm and its distributed form (pre all-gather statistics, post all-gather normalisation)."""

from __future__ import annotations

from typing import Any

import torch

from .. import types as T
from ._common import compute_dtype, data, make, same_mesh, stack_broadcast
from .trace import device_op

TILE = T.TILE_SIZE


def _vector(t: Any, width: int, name: str, op: str) -> torch.Tensor:
    """A per-device gamma/beta vector of ``width`` from a [width], [1,1,width/32,32] or [..., width] tensor."""
    v = compute_dtype(data(t))
    flat = v.reshape(v.shape[0], -1)
    if flat.shape[1] < width:
        raise RuntimeError(f"{op}: {name} has {flat.shape[1]} elements per device, the input width is {width}")
    return flat[:, :width]


def _broadcast_vector(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    v, _ = stack_broadcast(v, x[..., 0].reshape(x.shape[0], -1))
    return v.reshape(v.shape[0], *([1] * (x.dim() - 2)), v.shape[-1])


def _normalize(x: torch.Tensor, mean_square: torch.Tensor, epsilon: float, weight: Any, bias: Any, op: str) -> torch.Tensor:
    out = x * torch.rsqrt(mean_square + epsilon)
    width = x.shape[-1]
    if weight is not None:
        out = out * _broadcast_vector(_vector(weight, width, "weight", op), x)
    if bias is not None:
        out = out + _broadcast_vector(_vector(bias, width, "bias", op), x)
    return out


@device_op
def rms_norm(
    input_tensor: Any,
    *,
    epsilon: float = 1e-12,
    weight: Any = None,
    bias: Any = None,
    residual_input_tensor: Any = None,
    memory_config: Any = None,
    program_config: Any = None,
    compute_kernel_config: Any = None,
) -> Any:
    """``ttnn.rms_norm`` over the last dim: x / sqrt(mean(x^2) + eps) * weight (+ bias)."""
    op = "ttnn.rms_norm"
    same_mesh(op, input_tensor, weight, bias, residual_input_tensor)
    x = compute_dtype(data(input_tensor))
    if residual_input_tensor is not None:
        x = x + compute_dtype(data(residual_input_tensor))
    mean_square = (x * x).mean(dim=-1, keepdim=True)
    return make(_normalize(x, mean_square, epsilon, weight, bias, op), input_tensor, memory_config=memory_config)


@device_op
def rms_norm_pre_all_gather(
    input_tensor: Any,
    *,
    dtype: Any = T.DataType.BFLOAT16,
    residual_input_tensor: Any = None,
    compute_kernel_config: Any = None,
    program_config: Any = None,
    memory_config: Any = None,
    use_2d_core_grid: Any = None,
    fast_and_approximate_mode: bool = False,
) -> Any:
    """``ttnn.rms_norm_pre_all_gather``: per-device sum(x^2) over the last dim, in column 0 of a
    32-wide tile (shape ``[..., 32]``, TILE layout, ``dtype``); gather it along the last dim with
    ``ttnn.all_gather`` and finish with ``ttnn.rms_norm_post_all_gather``."""
    x = compute_dtype(data(input_tensor))
    if residual_input_tensor is not None:
        x = x + compute_dtype(data(residual_input_tensor))
    stats = torch.zeros(*x.shape[:-1], TILE, dtype=torch.float32, device=x.device)
    stats[..., 0] = (x * x).sum(dim=-1)
    return make(stats, input_tensor, dtype=dtype, layout=T.Layout.TILE, memory_config=memory_config)


@device_op
def rms_norm_post_all_gather(
    input_tensor: Any,
    stats: Any,
    *,
    epsilon: float = 1e-12,
    weight: Any = None,
    bias: Any = None,
    memory_config: Any = None,
    compute_kernel_config: Any = None,
    program_config: Any = None,
    dtype: Any = None,
    use_2d_core_grid: Any = None,
) -> Any:
    """``ttnn.rms_norm_post_all_gather``: normalise the local slice with the gathered sum(x^2) of all
    devices (column 0 of every 32-wide tile of ``stats``); the global width is local width x tiles."""
    op = "ttnn.rms_norm_post_all_gather"
    same_mesh(op, input_tensor, stats, weight, bias)
    x = compute_dtype(data(input_tensor))
    s = compute_dtype(data(stats))
    if s.shape[-1] % TILE:
        raise RuntimeError(f"{op}: the last dim of stats ({s.shape[-1]}) must be a multiple of {TILE}")
    if s.shape[1:-1] != x.shape[1:-1]:
        raise RuntimeError(f"{op}: stats {tuple(s.shape[1:])} does not match the input {tuple(x.shape[1:])}")
    num_slices = s.shape[-1] // TILE
    total = s[..., ::TILE].sum(dim=-1, keepdim=True)
    mean_square = total / (x.shape[-1] * num_slices)
    out = _normalize(x, mean_square, epsilon, weight, bias, op)
    return make(out, input_tensor, dtype=dtype, memory_config=memory_config)

__all__ = ["rms_norm", "rms_norm_pre_all_gather", "rms_norm_post_all_gather"]
