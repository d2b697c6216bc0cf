"""Tensor-level ops and ``ttnn.Tensor`` operators/methods as real ttnn defines them.

``t + u`` is ``ttnn.add(t, u)`` (``-``, ``*``, ``/``, comparisons, ``@`` likewise: device tensors only,
as on hardware), ``t[...]`` slices (integer indices drop the dim; a scalar result raises), ``t.reshape``
and ``t.to(layout)`` work on host tensors too. Also ``unsqueeze_to_4D``, ``copy``, ``to_dtype``,
``from_host_shards``, the tilize / untilize family, ``all_broadcast`` and the async CCL names of
``ttnn.experimental`` (their semaphores are validated; the emulated collectives need none).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from .. import types as T
from ..infra import Tile, global_semaphore
from ..mesh import MeshShape
from ._common import data, device_of, is_tensor, make, tensor_cls
from .trace import device_op


def _require_device_storage(t: Any, op: str) -> None:
    if is_tensor(t) and device_of(t) is None:
        raise RuntimeError(f"{op}: input_tensor_a.storage_type() == StorageType::DEVICE (the tensor is on host)")


def _binary(name: str, reverse: bool = False):
    def method(self: Any, other: Any, *args: Any, **kwargs: Any) -> Any:
        from .. import __dict__ as ttnn_names  # the emulator module's namespace (ops registered there)

        _require_device_storage(self, f"ttnn.Tensor operator ({name})")
        fn = ttnn_names[name]
        return fn(other, self, *args, **kwargs) if reverse else fn(self, other, *args, **kwargs)

    method.__name__ = f"__{'r' if reverse else ''}{name}__"
    return method


def _rdiv(self: Any, other: Any) -> Any:
    """``other / self`` (``ttnn.rdiv``)."""
    _require_device_storage(self, "ttnn.Tensor operator (rdiv)")
    x = data(self).to(torch.float32)
    return make(float(other) / x, self)


def _getitem(self: Any, slices: Any) -> Any:
    """Torch-style indexing with ttnn's rules (ttnn.operations.core.__getitem__)."""
    shape = list(self.shape)
    rank = len(shape)
    items = list(slices) if isinstance(slices, tuple) else [slices]
    if items.count(Ellipsis) > 1:
        raise ValueError("Only one ellipsis ('...') is allowed in a slice.")
    if Ellipsis in items:
        at = items.index(Ellipsis)
        missing = rank - (len(items) - 1)
        if missing < 0:
            raise IndexError(f"Too many indices for tensor of dimension {rank}")
        items[at : at + 1] = [slice(None)] * missing
    items += [slice(None)] * (rank - len(items))
    if len(items) > rank:
        raise IndexError(f"Too many indices for tensor of dimension {rank}")
    starts, ends, steps, dropped = [], [], [], []
    for dim, item in enumerate(items):
        if isinstance(item, int):
            idx = item if item >= 0 else item + shape[dim]
            if not 0 <= idx < shape[dim]:
                raise IndexError(f"Index {item} (converted to {idx}) is out of bounds for dimension {dim} of size {shape[dim]}")
            starts.append(idx), ends.append(idx + 1), steps.append(1), dropped.append(dim)
        elif isinstance(item, slice):
            start, stop, step = item.indices(shape[dim])
            starts.append(start), ends.append(stop), steps.append(step)
        else:
            raise TypeError(f"Invalid slice type: {item}")
    if device_of(self) is None and any(s != 1 for s in steps):
        raise RuntimeError("Host tensors cannot be accessed with non-unit stride")
    x = data(self)
    view = x[(slice(None),) + tuple(slice(a, b, c) for a, b, c in zip(starts, ends, steps))]
    keep = [n for d, n in enumerate(view.shape[1:]) if d not in dropped]
    if not keep:
        raise RuntimeError("ttnn.Tensor.__getitem__: cannot return a scalar!")
    return make(view.reshape(view.shape[0], *keep), self)


def _reshape(self: Any, shape: Any, /, *more: int) -> Any:
    """``Tensor.reshape(shape)`` or ``Tensor.reshape(d0, d1, ...)``."""
    from .data_movement import reshape

    dims = (shape, *more) if more or isinstance(shape, int) else shape
    return reshape(self, list(dims))


_original_to = None


def _to(self: Any, device: Any, mem_config: Any = None, cq_id: Any = None) -> Any:
    """``Tensor.to(layout)`` converts the layout; ``Tensor.to(device, mem_config)`` moves to a device."""
    if isinstance(device, T.Layout):
        from .data_movement import to_layout

        return to_layout(self, device)
    return _original_to(self, device, mem_config, cq_id)


def _install_tensor_methods() -> None:
    global _original_to
    cls = tensor_cls()
    if getattr(cls, "_ttnn_operators_installed", False):
        return
    for op, name in (("add", "add"), ("sub", "subtract"), ("mul", "multiply"), ("truediv", "div"),
                     ("gt", "gt"), ("ge", "ge"), ("lt", "lt"), ("le", "le"), ("matmul", "matmul")):
        setattr(cls, f"__{op}__", _binary(name))
    cls.__radd__ = _binary("add")
    cls.__rmul__ = _binary("multiply")
    cls.__rsub__ = _binary("subtract", reverse=True)
    cls.__rtruediv__ = _rdiv
    cls.__getitem__ = _getitem
    cls.reshape = _reshape
    _original_to = cls.to
    cls.to = _to
    cls._ttnn_operators_installed = True


# --- tensor ops --------------------------------------------------------------------------------------


@device_op
def unsqueeze_to_4D(tensor: Any) -> Any:  # noqa: N802 (ttnn's name)
    """Left-pad the shape with 1s to rank 4 (a rank above 4 must squeeze, as ``Shape.to_rank(4)``)."""
    shape = list(tensor.shape)
    if len(shape) > 4:
        if any(d != 1 for d in shape[: len(shape) - 4]):
            raise RuntimeError(f"ttnn.unsqueeze_to_4D: cannot squeeze {shape} to rank 4")
        shape = shape[len(shape) - 4 :]
    x = data(tensor)
    return make(x.reshape(x.shape[0], *([1] * (4 - len(shape)) + shape)), tensor)


@device_op
def copy(input_a: Any, input_b: Any) -> Any:
    """``ttnn.copy(input_a, input_b)``: write ``input_a``'s values into ``input_b`` (same shape), rounded to
    ``input_b``'s dtype; returns ``input_b``."""
    if tuple(input_a.shape) != tuple(input_b.shape):
        raise RuntimeError(f"ttnn.copy: input shapes differ ({list(input_a.shape)} vs {list(input_b.shape)})")
    result = make(data(input_a), input_b, dtype=input_b.dtype, layout=input_b.layout, memory_config=input_b.memory_config())
    input_b._data = result._data
    return input_b


def to_dtype(tensor: Any, dtype: Any) -> Any:
    """Host conversion of a host tensor's values to ``dtype`` (bfp needs TILE layout, as in ttnn)."""
    if device_of(tensor) is not None:
        raise RuntimeError("ttnn.to_dtype: only host tensors can be converted (use ttnn.typecast on device)")
    layout = tensor.layout
    if dtype in T.BLOCK_FLOAT_DTYPES:
        layout = T.Layout.TILE
    return tensor_cls().from_stacked(data(tensor), dtype=dtype, layout=layout, device=None,
                                     memory_config=tensor.memory_config(), mesh_shape=tensor.mesh_shape)


def from_host_shards(tensors: Sequence[Any], mesh_shape: MeshShape) -> Any:
    """A multi-device host tensor from one host tensor per device of ``mesh_shape`` (same spec each)."""
    if not isinstance(mesh_shape, MeshShape):
        raise TypeError(f"from_host_shards(): mesh_shape must be a ttnn.MeshShape, got {type(mesh_shape).__name__}")
    tensors = list(tensors)
    if len(tensors) != mesh_shape.mesh_size():
        raise RuntimeError(f"ttnn.from_host_shards: tensor_shards.size() == mesh_shape.mesh_size() "
                           f"({len(tensors)} shards for mesh {mesh_shape})")
    first = tensors[0]
    for t in tensors:
        if device_of(t) is not None:
            raise RuntimeError("ttnn.from_host_shards: every shard must be a host tensor")
        if (tuple(t.shape), t.dtype, t.layout) != (tuple(first.shape), first.dtype, first.layout):
            raise RuntimeError("ttnn.from_host_shards: all shards must have the same shape, dtype and layout")
    stacked = torch.cat([data(t) for t in tensors])
    return tensor_cls().from_stacked(stacked, dtype=first.dtype, layout=first.layout, device=None,
                                     memory_config=first.memory_config(), mesh_shape=mesh_shape, rounded=True)


def _relayout(t: Any, layout: Any, dtype: Any, memory_config: Any, values: torch.Tensor | None = None) -> Any:
    return make(data(t) if values is None else values, t, dtype=dtype or t.dtype, layout=layout, memory_config=memory_config)


@device_op
def tilize(input_tensor: Any, *, memory_config: Any = None, dtype: Any = None, use_multicore: bool = True,
           use_low_perf: bool = False, tile: Any = None, sub_core_grids: Any = None) -> Any:
    """ROW_MAJOR -> TILE; the last two dims must be tile multiples (use the padding variants otherwise)."""
    if input_tensor.layout != T.Layout.ROW_MAJOR:
        raise RuntimeError("ttnn.tilize: Can only tilize row major data")
    shape = list(input_tensor.shape)
    if len(shape) < 2 or shape[-1] % 32 or shape[-2] % 32:
        raise RuntimeError(f"ttnn.tilize: the last two dims of {shape} must be multiples of the 32x32 tile")
    if tile is not None and not isinstance(tile, Tile):
        raise TypeError(f"ttnn.tilize: tile must be a ttnn.Tile, got {tile!r}")
    return _relayout(input_tensor, T.Layout.TILE, dtype, memory_config)


@device_op
def tilize_with_val_padding(input_tensor: Any, output_tensor_shape: Any, pad_value: float, *, memory_config: Any = None,
                            dtype: Any = None, use_multicore: bool = True, sub_core_grids: Any = None) -> Any:
    """ROW_MAJOR -> TILE padded to ``output_tensor_shape`` with ``pad_value`` (the logical shape becomes it)."""
    if input_tensor.layout != T.Layout.ROW_MAJOR:
        raise RuntimeError("ttnn.tilize_with_val_padding: Can only tilize row major data")
    x = data(input_tensor)
    target = [int(d) for d in output_tensor_shape]
    if len(target) != x.dim() - 1 or any(t < s for t, s in zip(target, x.shape[1:])):
        raise RuntimeError(f"ttnn.tilize_with_val_padding: output shape {target} must be at least the input shape {list(x.shape[1:])}")
    pad = []
    for t, s in zip(reversed(target), reversed(x.shape[1:])):
        pad += [0, t - s]
    out = torch.nn.functional.pad(x.to(torch.float32), pad, value=float(pad_value))
    return _relayout(input_tensor, T.Layout.TILE, dtype, memory_config, out)


@device_op
def tilize_with_zero_padding(input_tensor: Any, *, memory_config: Any = None, output_dtype: Any = None,
                             use_multicore: bool = True, sub_core_grids: Any = None) -> Any:
    """ROW_MAJOR -> TILE, the last two dims zero-padded to tile multiples."""
    shape = list(input_tensor.shape)
    target = shape[:-2] + [math.ceil(d / 32) * 32 for d in shape[-2:]]
    return tilize_with_val_padding(input_tensor, target, 0.0, memory_config=memory_config, dtype=output_dtype)


@device_op
def untilize(input_tensor: Any, *, memory_config: Any = None, use_multicore: bool = True, sub_core_grids: Any = None) -> Any:
    """TILE -> ROW_MAJOR (bfloat16 / float32 / integer data; bfp must be typecast first)."""
    if input_tensor.layout != T.Layout.TILE:
        raise RuntimeError("ttnn.untilize: Can only untilize tile major data")
    if input_tensor.dtype in T.BLOCK_FLOAT_DTYPES:
        raise RuntimeError(f"ttnn.untilize: {input_tensor.dtype} cannot be row-major; typecast to bfloat16 first")
    return _relayout(input_tensor, T.Layout.ROW_MAJOR, None, memory_config)


@device_op
def untilize_with_unpadding(input_tensor: Any, output_tensor_end: Any, *, memory_config: Any = None,
                            use_multicore: bool = True, sub_core_grids: Any = None) -> Any:
    """TILE -> ROW_MAJOR keeping ``[0, end]`` (inclusive ends) of every dim."""
    if input_tensor.layout != T.Layout.TILE:
        raise RuntimeError("ttnn.untilize_with_unpadding: Can only untilize tile major data")
    x = data(input_tensor)
    ends = [int(e) for e in output_tensor_end]
    if len(ends) != x.dim() - 1 or any(not 0 <= e < s for e, s in zip(ends, x.shape[1:])):
        raise RuntimeError(f"ttnn.untilize_with_unpadding: end {ends} is outside the tensor {list(x.shape[1:])}")
    view = x[(slice(None),) + tuple(slice(0, e + 1) for e in ends)]
    return _relayout(input_tensor, T.Layout.ROW_MAJOR, None, memory_config, view)


# --- collectives with real ttnn's other names ----------------------------------------------------------


def all_broadcast(input_tensor: Any, *, cluster_axis: int | None = None, subdevice_id: Any = None, memory_config: Any = None,
                  num_links: int | None = 1, topology: Any = T.Topology.Linear, use_l1_small_for_semaphores: bool = False) -> list:
    """``ttnn.all_broadcast``: one output per group member; output k holds, on every device of the group,
    member k's tensor."""
    from .collectives import _check_collective, group_members

    size = _check_collective(input_tensor, cluster_axis, "ttnn.all_broadcast")
    members = group_members(data(input_tensor), input_tensor, cluster_axis)  # [n, size, ...]
    return [make(members[:, k], input_tensor, memory_config=memory_config) for k in range(size)]


def _check_semaphores(semaphores: Any, op: str) -> None:
    items = semaphores if isinstance(semaphores, (list, tuple)) else [semaphores]
    if not items or not all(isinstance(s, global_semaphore) for s in items):
        raise TypeError(f"{op}: multi_device_global_semaphore must hold ttnn global semaphores "
                        f"(ttnn.create_global_semaphore), got {semaphores!r}")


_AG_KEYWORDS = {"persistent_output_buffer", "persistent_output_tensor", "num_links", "memory_config", "topology",
                "subdevice_id", "cluster_axis", "use_optimal_ccl_for_llama", "use_broadcast", "barrier_semaphore",
                "chunks_per_sync", "num_workers_per_link", "num_buffers_per_channel", "sub_core_grids", "dim",
                "multi_device_global_semaphore", "mesh_device"}


def _bind(op: str, names: list[str], args: tuple, kwargs: dict, allowed: set[str]) -> dict:
    bound = dict(zip(names, args))
    if len(args) > len(names):
        raise TypeError(f"{op}(): too many positional arguments")
    for key, value in kwargs.items():
        if key not in allowed or key in bound:
            raise TypeError(f"{op}(): unexpected or repeated argument {key!r}")
        bound[key] = value
    for key in ("dim", "multi_device_global_semaphore"):
        if bound.get(key) is None:
            raise TypeError(f"{op}(): incompatible function arguments ({key} is required)")
    return bound


def all_gather_async(input_tensor: Any, *args: Any, **kwargs: Any) -> Any:
    """``ttnn.experimental.all_gather_async`` in its three ttnn overloads: ``(x, dim, semaphores, *, ...)``,
    ``(x, persistent_output_buffer, dim, semaphores, *, cluster_axis, ...)`` and
    ``(x, dim, cluster_axis, mesh_device, topology, semaphores, *, ...)``: ``ttnn.all_gather`` once the
    semaphores are validated."""
    from .collectives import all_gather

    op = "ttnn.experimental.all_gather_async"
    if args and not isinstance(args[0], int):
        names = ["persistent_output_buffer", "dim", "multi_device_global_semaphore"]
    elif len(args) > 2:
        names = ["dim", "cluster_axis", "mesh_device", "topology", "multi_device_global_semaphore"]
    else:
        names = ["dim", "multi_device_global_semaphore"]
    b = _bind(op, names, args, kwargs, _AG_KEYWORDS)
    _check_semaphores(b["multi_device_global_semaphore"], op)
    out = all_gather(input_tensor, b["dim"], cluster_axis=b.get("cluster_axis"), memory_config=b.get("memory_config"),
                     topology=b.get("topology", T.Topology.Ring))
    target = b.get("persistent_output_buffer") or b.get("persistent_output_tensor")
    if target is not None:
        target._data = out._data
        return target
    return out


_RS_KEYWORDS = {"persistent_output_buffers", "dim", "multi_device_global_semaphore", "barrier_semaphore", "num_links",
                "memory_config", "intermediate_memory_config", "topology", "subdevice_id", "cluster_axis",
                "chunks_per_sync", "num_workers_per_link", "num_buffers_per_channel", "compute_kernel_config"}


def reduce_scatter_minimal_async(input_tensor: Any, *args: Any, **kwargs: Any) -> Any:
    """``ttnn.experimental.reduce_scatter_minimal_async(x, persistent_output_buffers, dim, semaphores, *, ...)``:
    ``ttnn.reduce_scatter`` once the semaphores are validated."""
    from .collectives import reduce_scatter

    op = "ttnn.experimental.reduce_scatter_minimal_async"
    b = _bind(op, ["persistent_output_buffers", "dim", "multi_device_global_semaphore"], args, kwargs, _RS_KEYWORDS)
    _check_semaphores(b["multi_device_global_semaphore"], op)
    return reduce_scatter(input_tensor, b["dim"], cluster_axis=b.get("cluster_axis"), memory_config=b.get("memory_config"),
                          topology=b.get("topology", T.Topology.Ring))


_install_tensor_methods()

EXPERIMENTAL_OPS = {"all_gather_async": all_gather_async, "reduce_scatter_minimal_async": reduce_scatter_minimal_async}

__all__ = [
    "unsqueeze_to_4D", "copy", "to_dtype", "from_host_shards", "tilize", "tilize_with_val_padding",
    "tilize_with_zero_padding", "untilize", "untilize_with_unpadding", "all_broadcast",
]
