"""Shared helpers of the emulator's ops: unwrapping stacked data, building outputs, validating meshes.

Every op works on ``Tensor._data`` (shape ``[num_devices, *per_device_shape]``) so that one torch call
serves all devices of a mesh, and produces its output through ``Tensor.from_stacked``.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import torch

from .. import types as T


_TENSOR_CLS: Any = None


def tensor_cls():
    """The emulator's ``Tensor`` class (imported lazily: tensor.py imports nothing from ops)."""
    global _TENSOR_CLS
    if _TENSOR_CLS is None:
        from ..tensor import Tensor

        _TENSOR_CLS = Tensor
    return _TENSOR_CLS


def is_tensor(value: Any) -> bool:
    return isinstance(value, _TENSOR_CLS or tensor_cls())


def broadcast_shapes(*shapes: Any) -> torch.Size:
    """The broadcast of ``shapes`` (RuntimeError when they do not broadcast), with a fast path for equal
    shapes (the common case of every op call). numpy's, not ``torch.broadcast_shapes``: torch's imports
    its symbolic-shapes machinery (sympy, ~0.4 s) on first use, which would land in a run's first timed op."""
    first = shapes[0]
    if all(s == first for s in shapes[1:]):
        return torch.Size(first)
    try:
        return torch.Size(np.broadcast_shapes(*(tuple(s) for s in shapes)))
    except ValueError as exc:
        raise RuntimeError(str(exc)) from exc


def data(t: Any) -> torch.Tensor:
    """The stacked torch data ``[num_devices, *shape]`` of an emulator tensor."""
    if not is_tensor(t):
        raise TypeError(f"expected a ttnn.Tensor, got {type(t).__name__}")
    d = t._data
    if d is None:
        raise RuntimeError("ttnn: the tensor has been deallocated")
    return d


def device_of(t: Any):
    """The ``MeshDevice`` a tensor lives on (None for a host tensor)."""
    dev = getattr(t, "device", None)
    if callable(dev):
        dev = dev()
    return dev


def num_devices(t: Any) -> int:
    return int(data(t).shape[0])


def mesh_shape(t: Any) -> tuple[int, int]:
    """(rows, cols) of the tensor's mesh; ``(1, num_devices)`` for a host tensor with several shards."""
    dev = device_of(t)
    if dev is None:
        return (1, num_devices(t))
    shape = tuple(int(s) for s in dev.shape)
    return shape if len(shape) == 2 else (1, int(torch.tensor(shape).prod()))


def require_device(t: Any, op: str, name: str = "input_tensor") -> None:
    if device_of(t) is None:
        raise RuntimeError(f"{op}: {name} must be on a device (got a host tensor); use ttnn.to_device first")


def same_mesh(op: str, *tensors: Any) -> None:
    """All tensors must live on the same mesh device (as ttnn requires); raises a clear error otherwise."""
    devices = [(device_of(t), t) for t in tensors if t is not None and is_tensor(t)]
    if not devices:
        return
    first = devices[0][0]
    for dev, t in devices[1:]:
        if dev is not first:
            raise RuntimeError(
                f"{op}: all tensors must be on the same mesh device; got one on {first!r} and one on {dev!r}"
            )


def stack_broadcast(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Align the device dims of two stacked tensors (a host/1-shard tensor broadcasts over devices)."""
    if a.shape[0] != b.shape[0]:
        if a.shape[0] == 1:
            a = a.expand(b.shape[0], *a.shape[1:])
        elif b.shape[0] == 1:
            b = b.expand(a.shape[0], *b.shape[1:])
        else:
            raise RuntimeError(f"tensors live on meshes of {a.shape[0]} and {b.shape[0]} devices")
    return a, b


def output_memory_config(memory_config: Any, like: Any) -> Any:
    if memory_config is not None:
        return memory_config
    if is_tensor(like):
        mc = like.memory_config
        return mc() if callable(mc) else mc
    return T.DRAM_MEMORY_CONFIG


def make(
    stacked: torch.Tensor,
    like: Any,
    *,
    dtype: Any = None,
    layout: Any = None,
    memory_config: Any = None,
    device: Any = "like",
    contiguous: bool = True,
) -> Any:
    """Build an op's output tensor from stacked torch data, taking unset attributes from ``like``.
    ``contiguous=False`` keeps a broadcast view (``expand``) as it is: its copies are never written."""
    dtype = dtype if dtype is not None else like.dtype
    layout = layout if layout is not None else like.layout
    if device == "like":
        device = device_of(like)
    memory_config = output_memory_config(memory_config, like)
    if memory_config.is_sharded() and memory_config.shard_spec is None:
        memory_config = derive_shard_spec(memory_config, stacked.shape[1:], layout)
    return tensor_cls().from_stacked(
        stacked.contiguous() if contiguous else stacked, dtype=dtype, layout=layout, device=device,
        memory_config=memory_config,
    )


def make_deferred(values: Any, like: Any, *, dtype: Any = None, layout: Any = None, memory_config: Any = None) -> Any:
    """As :func:`make` for deferred values (ops/deferred.py, already rounded to ``dtype``): the tensor is
    validated on a placeholder of their shape and then holds them."""
    dtype = dtype if dtype is not None else like.dtype
    layout = layout if layout is not None else like.layout
    device = device_of(like)
    memory_config = output_memory_config(memory_config, like)
    if memory_config.is_sharded() and memory_config.shard_spec is None:
        memory_config = derive_shard_spec(memory_config, values.shape[1:], layout)
    where = device.torch_device if device is not None else torch.device("cpu")
    placeholder = torch.empty((), dtype=values.dtype, device=where).expand(values.shape)
    out = tensor_cls().from_stacked(placeholder, dtype=dtype, layout=layout, device=device,
                                    memory_config=memory_config, rounded=True)
    out._data = values
    return out


def derive_shard_spec(memory_config: Any, shape: Any, layout: Any, grid: Any = None) -> Any:
    """An op output's sharded config without a shard spec (``L1_WIDTH_SHARDED_MEMORY_CONFIG``) gets one
    derived as ttnn ops derive it: the tensor viewed as ``[prod(shape[:-1]), shape[-1]]`` (tile padded)
    split over as many worker cores as there are tiles along the sharded extent (at most the grid), row
    by row."""
    from ..infra import divup, num_cores_to_corerangeset

    grid = grid or T.CoreCoord(8, 8)
    dims = [int(d) for d in shape] or [1]
    height, width = math.prod(dims[:-1]), dims[-1]
    align = 32 if layout == T.Layout.TILE else 1
    height, width = divup(height, align) * align, divup(width, align) * align
    kind = memory_config.memory_layout

    def split(extent: int, cores: int) -> tuple[int, int]:
        per = divup(divup(extent, align), min(cores, divup(extent, align))) * align
        return per, divup(extent, per)

    if kind == T.TensorMemoryLayout.BLOCK_SHARDED:
        shard_h, rows = split(height, grid.y)
        shard_w, cols = split(width, grid.x)
        cores = T.CoreRangeSet({T.CoreRange(T.CoreCoord(0, 0), T.CoreCoord(cols - 1, rows - 1))})
        shape2 = (shard_h, shard_w)
    else:
        along = height if kind == T.TensorMemoryLayout.HEIGHT_SHARDED else width
        per, used = split(along, grid.x * grid.y)
        cores = num_cores_to_corerangeset(used, grid, True)
        shape2 = (per, width) if kind == T.TensorMemoryLayout.HEIGHT_SHARDED else (height, per)
    return memory_config.with_shard_spec(T.ShardSpec(cores, shape2, T.ShardOrientation.ROW_MAJOR))


def compute_dtype(d: torch.Tensor) -> torch.Tensor:
    """fp32 working copy of stored float values (exact for bf16/bfp storage); integer data stays integer."""
    if d.dtype == torch.float32 or not d.is_floating_point():
        return d
    return d.to(torch.float32)


def norm_dim(dim: int, rank: int, op: str = "ttnn") -> int:
    if not -rank <= dim < rank:
        raise RuntimeError(f"{op}: dim {dim} is out of range for a rank-{rank} tensor")
    return dim % rank


def as_int_list(values: Iterable[Any]) -> list[int]:
    return [int(v) for v in values]
