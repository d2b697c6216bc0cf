"""Collectives along ``cluster_axis`` of the mesh, on the stacked data (device index = row * cols + col).

``cluster_axis=1`` groups the devices of each mesh row (the collective runs along the columns),
``cluster_axis=0`` those of each column, ``None`` the whole mesh in row-major order. Reductions
follow the device's order and precision (NUMERICS.md, "Collectives"): reduce_scatter accumulates each
output chunk around the ring (starting after the chunk's owner, ending at it), all_reduce in group
order; partial sums are held in bfloat16 unless the tensor is float32.
"""

from __future__ import annotations

from typing import Any

import torch

from .. import types as T
from ._common import compute_dtype, data, make, mesh_shape, norm_dim, require_device
from .trace import device_op


def groups(t: Any, cluster_axis: int | None, op: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(group id per device, position in its group per device, group size) for ``cluster_axis``."""
    rows, cols = mesh_shape(t)
    index = torch.arange(rows * cols)
    row, col = index // cols, index % cols
    if cluster_axis is None:
        return torch.zeros_like(index), index, rows * cols
    if cluster_axis in (1, -1):
        return row, col, cols
    if cluster_axis in (0, -2):
        return col, row, rows
    raise RuntimeError(f"{op}: invalid cluster_axis {cluster_axis}; must be 0, 1 or None on a 2D mesh")


def _grid(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    return x.reshape(rows, cols, *x.shape[1:])


def group_gather(x: torch.Tensor, t: Any, dim: int, cluster_axis: int | None) -> torch.Tensor:
    """Stacked per-device concatenation of the group's shards along per-device ``dim`` (ttnn order)."""
    rows, cols = mesh_shape(t)
    n = rows * cols
    if cluster_axis is None:
        out = x.movedim(0, dim).flatten(dim, dim + 1)
        return out.unsqueeze(0).expand(n, *out.shape)
    g = _grid(x, rows, cols)
    if cluster_axis in (1, -1):
        out = g.movedim(1, 1 + dim).flatten(1 + dim, 2 + dim)  # [rows, ...]
        out = out.unsqueeze(1).expand(rows, cols, *out.shape[1:])
    else:
        out = g.movedim(0, 1 + dim).flatten(1 + dim, 2 + dim)  # [cols, ...]
        out = out.unsqueeze(0).expand(rows, cols, *out.shape[1:])
    return out.reshape(n, *out.shape[2:])


def group_members(x: torch.Tensor, t: Any, cluster_axis: int | None) -> torch.Tensor:
    """``[num_devices, group_size, ...]``: for every device the shards of its group, in group order."""
    rows, cols = mesh_shape(t)
    n = rows * cols
    if cluster_axis is None:
        return x.unsqueeze(0).expand(n, *x.shape)
    g = _grid(x, rows, cols)
    if cluster_axis in (1, -1):
        return g.unsqueeze(1).expand(rows, cols, *g.shape[1:]).reshape(n, cols, *x.shape[1:])
    m = g.transpose(0, 1)  # [cols, rows, ...]
    return m.unsqueeze(0).expand(rows, cols, *m.shape[1:]).reshape(n, rows, *x.shape[1:])


def _check_collective(t: Any, cluster_axis: Any, op: str, *, allow_single: bool = False) -> int:
    require_device(t, op)
    _, _, size = groups(t, cluster_axis, op)
    if size == 1 and not allow_single:
        raise RuntimeError(
            f"{op} collective will only work for num_devices > 1, got 1 "
            f"(cluster_axis={cluster_axis} of mesh {tuple(mesh_shape(t))})"
        )
    return size


def _accumulate_dtype(t: Any) -> torch.dtype:
    return torch.float32 if t.dtype == T.DataType.FLOAT32 else torch.bfloat16


@device_op
def all_gather(input_tensor: Any, dim: int, *, cluster_axis: int | None = None, memory_config: Any = None,
               output_tensor: Any = None, subdevice_id: Any = None, sub_core_grids: Any = None,
               num_links: Any = None, topology: Any = None, chunks_per_sync: Any = None,
               num_workers_per_link: Any = None, num_buffers_per_channel: Any = None,
               use_l1_small_for_semaphores: bool = False, **_: Any) -> Any:
    """``ttnn.all_gather``: every device gets its group's shards concatenated along ``dim``."""
    op = "ttnn.all_gather"
    _check_collective(input_tensor, cluster_axis, op)
    x = data(input_tensor)
    d = norm_dim(dim, x.dim() - 1, op)
    return make(group_gather(x, input_tensor, d, cluster_axis), input_tensor, memory_config=memory_config)


@device_op
def reduce_scatter(input_tensor: Any, dim: int, *, cluster_axis: int | None = None, subdevice_id: Any = None,
                   memory_config: Any = None, intermediate_memory_config: Any = None, output_tensor: Any = None,
                   num_links: Any = None, topology: Any = None, chunks_per_sync: Any = None,
                   num_workers_per_link: Any = None, num_buffers_per_channel: Any = None,
                   compute_kernel_config: Any = None, use_l1_small_for_semaphores: bool = False, **_: Any) -> Any:
    """``ttnn.reduce_scatter``: sum over the group, device at group position p keeps chunk p of ``dim``."""
    op = "ttnn.reduce_scatter"
    size = _check_collective(input_tensor, cluster_axis, op)
    x = data(input_tensor)
    d = norm_dim(dim, x.dim() - 1, op)
    if x.shape[d + 1] % size:
        raise RuntimeError(f"{op}: dim {dim} of size {x.shape[d + 1]} is not divisible by the {size} devices")
    _, pos, _ = groups(input_tensor, cluster_axis, op)
    members = group_members(compute_dtype(x), input_tensor, cluster_axis)  # [n, size, ...]
    chunk = x.shape[d + 1] // size
    acc_dtype = _accumulate_dtype(input_tensor)
    n = x.shape[0]
    dev = torch.arange(n, device=x.device)
    p = pos.to(x.device)
    # Chunk p of device p's output: contributions of members p+1, p+2, ..., p (mod size), in that order.
    def contribution(step: int) -> torch.Tensor:
        src = (p + 1 + step) % size
        return _chunk_of(members[dev, src], d + 1, size, chunk, p)

    acc = contribution(0).to(acc_dtype).to(torch.float32)
    for step in range(1, size):
        acc = (acc + contribution(step)).to(acc_dtype).to(torch.float32)
    return make(acc, input_tensor, memory_config=memory_config)


def _chunk_of(shard: torch.Tensor, dim: int, size: int, chunk: int, p: torch.Tensor) -> torch.Tensor:
    """Per device i, chunk ``p[i]`` of ``shard[i]`` along ``dim``."""
    split = shard.unflatten(dim, (size, chunk)).movedim(dim, 1)  # [n, size, ..., chunk, ...]
    return split[torch.arange(shard.shape[0], device=shard.device), p.to(shard.device)]


@device_op
def all_reduce(input_tensor: Any, *, cluster_axis: int | None = None, subdevice_id: Any = None,
               memory_config: Any = None, num_links: Any = None, topology: Any = None, **_: Any) -> Any:
    """``ttnn.all_reduce`` (sum): every device of a group gets the sum of the group's shards.

    Partial sums are accumulated in group order and held in bfloat16 (float32 tensors: float32), as the
    documentation of ttnn.all_reduce states. A group of one device returns a copy of its input.
    """
    op = "ttnn.all_reduce"
    size = _check_collective(input_tensor, cluster_axis, op, allow_single=True)
    x = compute_dtype(data(input_tensor))
    members = group_members(x, input_tensor, cluster_axis)
    acc_dtype = _accumulate_dtype(input_tensor)
    acc = members[:, 0].to(acc_dtype).to(torch.float32)
    for i in range(1, size):
        acc = (acc + members[:, i]).to(acc_dtype).to(torch.float32)
    return make(acc, input_tensor, memory_config=memory_config)


@device_op
def mesh_partition(input_tensor: Any, dim: int, cluster_axis: int | None = None, *, memory_config: Any = None) -> Any:
    """``ttnn.mesh_partition``: device at group position p keeps chunk p of its own tensor along ``dim``."""
    op = "ttnn.mesh_partition"
    require_device(input_tensor, op)
    x = data(input_tensor)
    d = norm_dim(dim, x.dim() - 1, op) + 1
    _, pos, size = groups(input_tensor, cluster_axis, op)
    if x.shape[d] % size:
        raise RuntimeError(f"{op}: dim {dim} of size {x.shape[d]} is not divisible by the {size} devices")
    return make(_chunk_of(x, d, size, x.shape[d] // size, pos), input_tensor, memory_config=memory_config)


def _coord_index(coord: Any, t: Any) -> int:
    rows, cols = mesh_shape(t)
    r, c = (int(coord[0]), int(coord[1])) if len(coord) == 2 else (0, int(coord[0]))
    if not (0 <= r < rows and 0 <= c < cols):
        raise RuntimeError(f"ttnn.point_to_point: coordinate {tuple(coord)} is outside the mesh {rows}x{cols}")
    return r * cols + c


@device_op
def point_to_point(input_tensor: Any, sender_coord: Any, receiver_coord: Any, *, output_tensor: Any = None,
                   intermediate_tensor: Any = None, topology: Any = T.Topology.Linear) -> Any:
    """``ttnn.point_to_point``: the receiver's shard of the output is the sender's shard of the input.

    The other shards keep ``output_tensor``'s values when one is given; in a fresh output they are
    unspecified on device and zero here.
    """
    op = "ttnn.point_to_point"
    require_device(input_tensor, op)
    x = data(input_tensor)
    src, dst = _coord_index(sender_coord, input_tensor), _coord_index(receiver_coord, input_tensor)
    base = data(output_tensor).clone() if output_tensor is not None else torch.zeros_like(x)
    base[dst] = x[src]
    result = make(base, input_tensor)
    if output_tensor is not None:
        output_tensor._data = result._data
        return output_tensor
    return result


@device_op
def all_to_all_async_generic(input_tensor: Any, in_dim: int, out_dim: int, *, persistent_output_buffer: Any = None,
                             num_links: Any = None, memory_config: Any = None, topology: Any = None,
                             subdevice_id: Any = None, cluster_axis: int | None = None) -> Any:
    """``ttnn.experimental.all_to_all_async_generic``: each device splits its tensor along ``out_dim``
    into group-size chunks, sends chunk q to group member q, and concatenates what it receives along
    ``in_dim`` in group order."""
    op = "ttnn.experimental.all_to_all_async_generic"
    _check_collective(input_tensor, cluster_axis, op)
    x = data(input_tensor)
    rank = x.dim() - 1
    di, do = norm_dim(in_dim, rank, op) + 1, norm_dim(out_dim, rank, op) + 1
    _, pos, size = groups(input_tensor, cluster_axis, op)
    if x.shape[do] % size:
        raise RuntimeError(f"{op}: out_dim of size {x.shape[do]} is not divisible by the {size} devices")
    members = group_members(x, input_tensor, cluster_axis)  # [n, size, ...]
    n = x.shape[0]
    chunk = x.shape[do] // size
    pieces = members.unflatten(do + 1, (size, chunk))  # [n, size(src), ..., size(chunk), chunk, ...]
    pieces = pieces.movedim(do + 1, 2)  # [n, size(src), size(chunk), ...]
    mine = pieces[torch.arange(n, device=x.device), :, pos.to(x.device)]  # [n, size(src), ...] chunk = my position
    out = mine.movedim(1, di).flatten(di, di + 1)
    return make(out, input_tensor, memory_config=memory_config)


@device_op
def fast_reduce_nc(input: Any, *, dims: Any = (), output: Any = None, memory_config: Any = None,  # noqa: A002
                   compute_kernel_config: Any = None, sub_core_grids: Any = None) -> Any:
    """``ttnn.experimental.fast_reduce_nc``: sum over the given (outer) dims, keeping them as size 1."""
    x = compute_dtype(data(input))
    d = [norm_dim(int(i), x.dim() - 1, "ttnn.experimental.fast_reduce_nc") + 1 for i in dims]
    out = x.sum(dim=d, keepdim=True) if d else x
    return make(out, input, memory_config=memory_config or T.DRAM_MEMORY_CONFIG)


EXPERIMENTAL_OPS = {
    "all_to_all_async_generic": all_to_all_async_generic,
    "fast_reduce_nc": fast_reduce_nc,
}

__all__ = ["all_gather", "reduce_scatter", "all_reduce", "mesh_partition", "point_to_point"]
