"""Tensor creation on a device (or host): zeros, ones, full, arange and their ``*_like`` forms."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from .. import numerics
from .. import types as T
from ._common import as_int_list, data, device_of, tensor_cls
from .trace import device_op


def _create(values: torch.Tensor, dtype: Any, layout: Any, device: Any, memory_config: Any, rounded: bool = False) -> Any:
    shards = device.get_num_devices() if device is not None else 1
    target = device.torch_device if device is not None else torch.device("cpu")
    stacked = values.to(target).unsqueeze(0).expand(shards, *values.shape)
    return tensor_cls().from_stacked(
        stacked.contiguous(), dtype=dtype, layout=layout, device=device,
        memory_config=memory_config if memory_config is not None else T.DRAM_MEMORY_CONFIG, rounded=rounded,
    )


@device_op
def full(shape: Sequence[int], fill_value: float, dtype: Any = None, layout: Any = None, device: Any = None,
         memory_config: Any = None, optional_tensor: Any = None) -> Any:
    """``ttnn.full``: every device of ``device`` gets a ``shape`` tensor of ``fill_value``."""
    dtype = dtype or T.DataType.BFLOAT16
    layout = layout or T.Layout.ROW_MAJOR
    if dtype in T.BLOCK_FLOAT_DTYPES:
        # Every block of a constant holds the same value: round one block, not the whole tensor.
        value = numerics.round_to_dtype(torch.full((T.FACE_SIZE,), float(fill_value)), dtype)[0]
        return _create(torch.full(as_int_list(shape), value.item(), dtype=value.dtype), dtype, layout, device,
                       memory_config, rounded=True)
    return _create(torch.full(as_int_list(shape), float(fill_value)), dtype, layout, device, memory_config)


@device_op
def zeros(shape: Sequence[int], dtype: Any = None, layout: Any = None, device: Any = None, memory_config: Any = None) -> Any:
    """``ttnn.zeros``."""
    return full(shape, 0.0, dtype, layout, device, memory_config)


@device_op
def ones(shape: Sequence[int], dtype: Any = None, layout: Any = None, device: Any = None, memory_config: Any = None) -> Any:
    """``ttnn.ones``."""
    return full(shape, 1.0, dtype, layout, device, memory_config)


@device_op
def full_like(tensor: Any, fill_value: float, dtype: Any = None, layout: Any = None, device: Any = None,
              memory_config: Any = None, optional_tensor: Any = None) -> Any:
    """``ttnn.full_like``: same shape, dtype, layout and device as ``tensor`` unless given."""
    x = data(tensor)
    out = torch.full_like(x, float(fill_value), dtype=torch.float32)
    mc = memory_config or tensor.memory_config()
    dev = device if device is not None else device_of(tensor)
    return tensor_cls().from_stacked(out, dtype=dtype or tensor.dtype, layout=layout or tensor.layout, device=dev,
                                     memory_config=mc)


@device_op
def zeros_like(tensor: Any, dtype: Any = None, layout: Any = None, device: Any = None, memory_config: Any = None,
               optional_tensor: Any = None) -> Any:
    """``ttnn.zeros_like``."""
    return full_like(tensor, 0.0, dtype, layout, device, memory_config)


@device_op
def ones_like(tensor: Any, dtype: Any = None, layout: Any = None, device: Any = None, memory_config: Any = None,
              optional_tensor: Any = None) -> Any:
    """``ttnn.ones_like``."""
    return full_like(tensor, 1.0, dtype, layout, device, memory_config)


@device_op
def arange(start: int, end: int, step: int = 1, *, dtype: Any = T.DataType.BFLOAT16, device: Any = None,
           memory_config: Any = T.DRAM_MEMORY_CONFIG, layout: Any = T.Layout.ROW_MAJOR) -> Any:
    """``ttnn.arange(start, end, step)``: a 1-D tensor."""
    return _create(torch.arange(int(start), int(end), int(step), dtype=torch.float64).to(torch.float32),
                   dtype, layout, device, memory_config)


__all__ = ["full", "zeros", "ones", "full_like", "zeros_like", "ones_like", "arange"]
