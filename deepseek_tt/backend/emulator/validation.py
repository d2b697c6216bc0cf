"""Checks that real ttnn performs, raising ``RuntimeError`` with ttnn's wording plus what was wrong."""

from __future__ import annotations

import math
from typing import Sequence

from .types import (
    BLOCK_FLOAT_DTYPES,
    TILE_SIZE,
    DataType,
    Layout,
    MemoryConfig,
    ShardOrientation,
    TensorMemoryLayout,
)


def check_dtype_layout(dtype: DataType, layout: Layout, where: str) -> None:
    """bfloat8_b / bfloat4_b exist only in TILE layout (ttnn: ``Layout must be Layout::TILE ...``)."""
    if dtype in BLOCK_FLOAT_DTYPES and layout != Layout.TILE:
        raise RuntimeError(
            f"{where}: Layout must be Layout::TILE for bfloat8_b or bfloat4_b! (got dtype {dtype}, layout {layout})"
        )


def check_memory_config(memory_config: MemoryConfig, padded_shape: Sequence[int], layout: Layout, where: str) -> None:
    """Reject a sharded config that real ttnn rejects when it builds the tensor spec.

    The tensor is viewed as 2-D ``[prod(shape[:-1]), shape[-1]]``. Shards may be uneven (the last one
    partially filled), but they must fit on the shard grid, match the unsharded extent and, in TILE
    layout, be whole tiles.
    """
    if not isinstance(memory_config, MemoryConfig):
        raise TypeError(f"{where}: memory_config must be a ttnn.MemoryConfig, got {type(memory_config).__name__}")
    if not memory_config.is_sharded():
        return
    spec = memory_config.shard_spec
    if spec is None:
        raise RuntimeError(f"{where}: Shard spec must not be None for sharded tensors ({memory_config})")
    shard_h, shard_w = spec.shape
    if shard_h <= 0 or shard_w <= 0:
        raise RuntimeError(f"{where}: shard shape {list(spec.shape)} must be positive")
    if layout == Layout.TILE and (shard_h % TILE_SIZE or shard_w % TILE_SIZE):
        raise RuntimeError(
            f"{where}: shard shape {list(spec.shape)} is not aligned to the 32x32 tile of a TILE-layout tensor"
        )
    dims = list(padded_shape) or [1]
    height, width = math.prod(dims[:-1]), dims[-1]
    shards_h, shards_w = -(-height // shard_h), -(-width // shard_w)
    cores = spec.grid.num_cores()
    box = spec.grid.bounding_box().grid_size() if cores else None
    layout_kind = memory_config.memory_layout
    problem = None
    if layout_kind == TensorMemoryLayout.HEIGHT_SHARDED:
        if shard_w != width:
            problem = f"height-sharded shard width {shard_w} differs from the tensor width {width}"
        elif shards_h > cores:
            problem = f"{shards_h} shards of height {shard_h} for height {height} do not fit on {cores} cores"
    elif layout_kind == TensorMemoryLayout.WIDTH_SHARDED:
        if shard_h != height:
            problem = f"width-sharded shard height {shard_h} differs from the tensor height {height}"
        elif shards_w > cores:
            problem = f"{shards_w} shards of width {shard_w} for width {width} do not fit on {cores} cores"
    elif layout_kind == TensorMemoryLayout.BLOCK_SHARDED:
        rows, cols = (box.y, box.x) if spec.orientation == ShardOrientation.ROW_MAJOR else (box.x, box.y)
        if shards_h > rows or shards_w > cols:
            problem = (
                f"a {shards_h}x{shards_w} block of shards {list(spec.shape)} for [{height}, {width}] does not fit "
                f"on the {rows}x{cols} core grid"
            )
    if problem:
        raise RuntimeError(f"{where}: invalid shard spec for tensor shape {list(padded_shape)}: {problem}")


def check_same_mesh(where: str, *tensors: object) -> None:
    """All tensors live on the same mesh device (ttnn cannot mix tensors of two meshes in one op)."""
    devices = [t.device() for t in tensors if t is not None and hasattr(t, "device")]
    first = next((d for d in devices if d is not None), None)
    for d in devices:
        if d is not None and d is not first:
            raise RuntimeError(f"{where}: input tensors live on different mesh devices ({first} and {d})")
