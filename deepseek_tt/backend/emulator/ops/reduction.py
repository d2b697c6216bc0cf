"""Reductions and selection: sum, mean, max, min, topk, argmax (per device, over per-device dims)."""

from __future__ import annotations

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


def _reduction(name: str, fn: Any) -> Any:
    @device_op
    def op(input_tensor: Any, dim: Any = None, keepdim: bool = False, *, memory_config: Any = None,
           compute_kernel_config: Any = None, scalar: float = 1.0, correction: Any = None,
           sub_core_grids: Any = None, fast_and_approximate_mode: bool = False, output_layout: Any = None) -> Any:
        x = compute_dtype(data(input_tensor))
        if not x.is_floating_point():
            x = x.to(torch.float32)
        dims = _reduce_dims(dim, x.dim() - 1, f"ttnn.{name}")
        out = fn(x, dims, keepdim) * scalar
        return make(out, input_tensor, layout=output_layout, memory_config=memory_config)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"``ttnn.{name}`` over per-device ``dim`` (all dims when None); result times ``scalar``."
    return op


sum = _reduction("sum", lambda x, d, k: x.sum(dim=d, keepdim=k))  # noqa: A001
mean = _reduction("mean", lambda x, d, k: x.mean(dim=d, keepdim=k))
max = _reduction("max", lambda x, d, k: x.amax(dim=d, keepdim=k))  # noqa: A001
min = _reduction("min", lambda x, d, k: x.amin(dim=d, keepdim=k))  # noqa: A001


@device_op
def topk(input_tensor: Any, k: int = 32, dim: int = -1, largest: bool = True, sorted: bool = True, *,  # noqa: A002
         memory_config: Any = None, sub_core_grids: Any = None, indices_tensor: Any = None,
         output_tensor: Any = None, stable: bool = False) -> list:
    """``ttnn.topk``: ``[values, indices]`` of the ``k`` largest (or smallest) along ``dim``.

    Values keep the input dtype; indices are UINT16 (UINT32 when the dim is wider than 65536). Ties
    resolve to the lower index (stable sort) so results are reproducible.
    """
    x = compute_dtype(data(input_tensor))
    d = norm_dim(dim, x.dim() - 1, "ttnn.topk") + 1
    if not 1 <= k <= x.shape[d]:
        raise RuntimeError(f"ttnn.topk: k={k} must be in [1, {x.shape[d]}] (the size of dim {dim})")
    order = torch.sort(x, dim=d, descending=largest, stable=True).indices.narrow(d, 0, k)
    if not sorted:
        order = torch.sort(order, dim=d).values
    values = torch.gather(x, d, order)
    index_dtype = T.DataType.UINT16 if x.shape[d] <= 65536 else T.DataType.UINT32
    return [
        make(values, input_tensor, memory_config=memory_config),
        make(order, input_tensor, dtype=index_dtype, memory_config=memory_config),
    ]


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


__all__ = ["sum", "mean", "max", "min", "topk", "argmax"]
