"""Reductions and selection: sum, mean, max, min, topk, argmax (per device, over per-device dims)."""

from __future__ import annotations

import inspect
from typing import Any

import torch

from .. import types as T
from ._common import compute_dtype, data, make, norm_dim
from .trace import device_op


def _reduce_dims(dim: Any, rank: int, op: str) -> list[int]:
    if dim is None:
        return list(range(1, rank + 1))
    dims = [dim] if isinstance(dim, int) else list(dim)
    return sorted({norm_dim(int(d), rank, op) + 1 for d in dims})


def _reduction(name: str, fn: Any, output_layout_arg: bool) -> Any:
    def op(input_tensor: Any, dim: Any = None, keepdim: bool = False, *, memory_config: Any = None,
           compute_kernel_config: Any = None, scalar: float = 1.0, correction: Any = None,
           sub_core_grids: Any = None, fast_and_approximate_mode: bool = False, output_layout: Any = None) -> Any:
        x = compute_dtype(data(input_tensor))
        if not x.is_floating_point():
            x = x.to(torch.float32)
        dims = _reduce_dims(dim, x.dim() - 1, f"ttnn.{name}")
        out = fn(x, dims, keepdim) * scalar
        return make(out, input_tensor, layout=output_layout, memory_config=memory_config)

    if not output_layout_arg:  # ttnn.max / ttnn.min have no output_layout
        sig = inspect.signature(op)
        op.__signature__ = sig.replace(parameters=[p for p in sig.parameters.values() if p.name != "output_layout"])  # type: ignore[attr-defined]
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"``ttnn.{name}`` over per-device ``dim`` (all dims when None); result times ``scalar``."
    return device_op(op)


sum = _reduction("sum", lambda x, d, k: x.sum(dim=d, keepdim=k), True)  # noqa: A001
mean = _reduction("mean", lambda x, d, k: x.mean(dim=d, keepdim=k), True)
max = _reduction("max", lambda x, d, k: x.amax(dim=d, keepdim=k), False)  # noqa: A001
min = _reduction("min", lambda x, d, k: x.amin(dim=d, keepdim=k), False)  # noqa: A001


def _index_dtype(input_tensor: Any, width: int) -> Any:
    """ttnn's default index dtype: UINT16, or UINT32 for float32 inputs / dims wider than 65536."""
    padded = -(-width // 32) * 32
    return T.DataType.UINT32 if input_tensor.dtype == T.DataType.FLOAT32 or padded > 65536 else T.DataType.UINT16


@device_op
def topk(input_tensor: Any, k: int = 32, dim: int = -1, largest: bool = True, sorted: bool = True, *,  # noqa: A002
         memory_config: Any = None, sub_core_grids: Any = None, indices_tensor: Any = None,
         output_tensor: Any = None, stable: bool = False) -> list:
    """``ttnn.topk``: ``[values, indices]`` of the ``k`` largest (or smallest) along ``dim``.

    Values keep the input dtype; indices are UINT16, or UINT32 for float32 inputs and dims wider than
    65536 (ttnn's rule); with ``indices_tensor`` the labels it holds are returned instead (its dtype).
    Ties resolve to the lower index (ttnn's ``stable=True``; unstable device results may order ties
    differently).
    """
    op = "ttnn.topk"
    x = compute_dtype(data(input_tensor))
    d = norm_dim(dim, x.dim() - 1, op) + 1
    if not 1 <= k <= x.shape[d]:
        raise RuntimeError(f"{op}: k={k} must be in [1, {x.shape[d]}] (the size of dim {dim})")
    if indices_tensor is not None and stable:
        raise RuntimeError(f"{op}: indices_tensor cannot be combined with stable=True")
    order = torch.sort(x, dim=d, descending=largest, stable=True).indices.narrow(d, 0, k)
    if not sorted:
        order = torch.sort(order, dim=d).values
    values = torch.gather(x, d, order)
    index_dtype = _index_dtype(input_tensor, x.shape[d])
    labels = order
    if indices_tensor is not None:
        if tuple(indices_tensor.shape) != tuple(input_tensor.shape):
            raise RuntimeError(f"{op}: indices_tensor {indices_tensor.shape} must have the input's shape {input_tensor.shape}")
        if indices_tensor.dtype == T.DataType.UINT16 and index_dtype == T.DataType.UINT32:
            raise RuntimeError(f"{op}: a UINT16 indices_tensor is refused when 32-bit indices are required")
        source = data(indices_tensor).long()
        source = source.expand(x.shape[0], *source.shape[1:]) if source.shape[0] == 1 else source
        labels = torch.gather(source, d, order)
        index_dtype = indices_tensor.dtype
    results = [
        make(values, input_tensor, layout=T.Layout.TILE, memory_config=memory_config),
        make(labels, input_tensor, dtype=index_dtype, layout=T.Layout.TILE, memory_config=memory_config),
    ]
    return results if output_tensor is None else _write_into(output_tensor, results)


@device_op
def sort(input_tensor: Any, dim: int = -1, descending: bool = False, stable: bool = False, *,  # noqa: A001
         memory_config: Any = None, out: Any = None) -> list:
    """``ttnn.sort``: ``[values, indices]`` along ``dim`` (ties: lower index first); index dtype as topk."""
    x = compute_dtype(data(input_tensor))
    d = norm_dim(dim, x.dim() - 1, "ttnn.sort") + 1
    result = torch.sort(x, dim=d, descending=descending, stable=True)
    outs = [
        make(result.values, input_tensor, memory_config=memory_config),
        make(result.indices, input_tensor, dtype=_index_dtype(input_tensor, x.shape[d]), memory_config=memory_config),
    ]
    return outs if out is None else _write_into(out, outs)


def _write_into(targets: Any, results: list) -> list:
    """Copy ``(values, indices)`` results into the caller's preallocated tensors (their dtypes) and return those."""
    for target, result in zip(targets, results):
        target._data = make(data(result), target, dtype=target.dtype)._data
    return list(targets)


@device_op
def cumsum(input: Any, dim: int, *, dtype: Any = None, reverse_order: bool = False, out: Any = None,  # noqa: A002
           memory_config: Any = None, disable_compensated_sum: bool = False) -> Any:
    """``ttnn.cumsum`` along ``dim`` (fp32 accumulation; ``reverse_order`` sums from the end)."""
    x = compute_dtype(data(input))
    d = norm_dim(dim, x.dim() - 1, "ttnn.cumsum") + 1
    x = x.to(torch.float64 if not x.is_floating_point() else torch.float32)
    y = x.flip(d).cumsum(d).flip(d) if reverse_order else x.cumsum(d)
    return make(y, input, dtype=dtype, memory_config=memory_config)


@device_op
def argmax(input_tensor: Any, dim: Any = None, keepdim: bool = False, *, sub_core_grids: Any = None,
           memory_config: Any = None, output_tensor: Any = None, enable_secondary_dm: Any = None) -> Any:
    """``ttnn.argmax`` (UINT32 indices; the first maximum wins; ``dim=None`` flattens)."""
    x = compute_dtype(data(input_tensor))
    if dim is None:
        flat = x.reshape(x.shape[0], -1)
        out = flat.argmax(dim=1)
        out = out.reshape(x.shape[0], *([1] * (x.dim() - 1))) if keepdim else out.reshape(x.shape[0])
    else:
        d = norm_dim(dim, x.dim() - 1, "ttnn.argmax") + 1
        out = x.argmax(dim=d, keepdim=keepdim)
    return make(out, input_tensor, dtype=T.DataType.UINT32, layout=input_tensor.layout, memory_config=memory_config)


__all__ = ["sum", "mean", "max", "min", "topk", "sort", "cumsum", "argmax"]
