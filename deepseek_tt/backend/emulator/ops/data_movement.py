"""Data movement: reshape, permute, transpose, concat, slice, pad, repeat, typecast, layout and memory
conversions, gather/scatter, embedding. All per device on the stacked data (dim 0 is the device)."""

from __future__ import annotations

import builtins
import enum
import math
from typing import Any, Sequence

import torch

from .. import types as T
from ._common import as_int_list, compute_dtype, data, device_of, is_tensor, make, make_deferred, norm_dim, same_mesh
from .deferred import is_deferred
from .trace import device_op


def _rank(t: Any) -> int:
    return data(t).dim() - 1


class TileReshapeMapMode(enum.Enum):
    """``ttnn.TileReshapeMapMode`` (no effect on values)."""

    CACHE = 0
    RECREATE = 1


class EmbeddingsType(enum.Enum):
    """``ttnn.EmbeddingsType`` (GENERIC and PADDED behave alike here; BINARY is not emulated)."""

    GENERIC = 0
    PADDED = 1
    BINARY = 2


@device_op
def reshape(input_tensor: Any, shape: Any, *, memory_config: Any = None, pad_value: Any = None,
            reshape_tile_mode: Any = TileReshapeMapMode.CACHE, sub_core_grids: Any = None,
            skip_padding_fill: bool = False) -> Any:
    """``ttnn.reshape`` of the per-device shape (one -1 allowed)."""
    x = input_tensor._stacked if is_tensor(input_tensor) else data(input_tensor)
    new = as_int_list(shape)
    if new.count(-1) > 1:
        raise RuntimeError("ttnn.reshape: at most one dimension may be -1")
    volume = math.prod(x.shape[1:])
    if -1 in new:
        known = math.prod(d for d in new if d != -1)
        if known == 0 or volume % known:
            raise RuntimeError(f"ttnn.reshape: cannot reshape {tuple(x.shape[1:])} into {tuple(new)}")
        new[new.index(-1)] = volume // known
    if math.prod(new) != volume:
        raise RuntimeError(
            f"ttnn.reshape: the new shape {tuple(new)} has {math.prod(new)} elements, the tensor "
            f"{tuple(x.shape[1:])} has {volume}"
        )
    if is_deferred(x):
        view = x.reshaped((x.shape[0], *new))
        if view is not None:
            return make_deferred(view, input_tensor, memory_config=memory_config)
        x = data(input_tensor)
    return make(x.reshape(x.shape[0], *new), input_tensor, memory_config=memory_config)


def _dims(dims: Sequence[int], rank: int, op: str) -> list[int]:
    out = [norm_dim(int(d), rank, op) for d in dims]
    if sorted(out) != list(range(rank)):
        raise RuntimeError(f"{op}: dims {list(dims)} are not a permutation of a rank-{rank} tensor's dims")
    return out


@device_op
def permute(input_tensor: Any, dims: Sequence[int], *, memory_config: Any = None, pad_value: float = 0.0) -> Any:
    """``ttnn.permute`` of the per-device dims."""
    order = _dims(dims, _rank(input_tensor), "ttnn.permute")
    return make(data(input_tensor).permute(0, *[d + 1 for d in order]), input_tensor, memory_config=memory_config)


@device_op
def transpose(input_tensor: Any, dim1: int, dim2: int, *, memory_config: Any = None, pad_value: float = 0.0) -> Any:
    """``ttnn.transpose`` of two per-device dims."""
    rank = _rank(input_tensor)
    d1, d2 = norm_dim(dim1, rank, "ttnn.transpose") + 1, norm_dim(dim2, rank, "ttnn.transpose") + 1
    return make(data(input_tensor).transpose(d1, d2), input_tensor, memory_config=memory_config)


@device_op
def squeeze(input_tensor: Any, dim: Any = None) -> Any:
    """``ttnn.squeeze`` of per-device dims of size 1."""
    x = data(input_tensor)
    rank = x.dim() - 1
    if dim is None:
        dims = [d for d in range(rank) if x.shape[d + 1] == 1]
    else:
        dims = [norm_dim(d, rank, "ttnn.squeeze") for d in ([dim] if isinstance(dim, int) else dim)]
    keep = [x.shape[d + 1] for d in range(rank) if not (d in dims and x.shape[d + 1] == 1)]
    return make(x.reshape(x.shape[0], *keep), input_tensor)


@device_op
def unsqueeze(input_tensor: Any, dim: int) -> Any:
    """``ttnn.unsqueeze``."""
    x = data(input_tensor)
    d = norm_dim(dim, x.dim(), "ttnn.unsqueeze")
    return make(x.unsqueeze(d + 1), input_tensor)


@device_op
def concat(tensors: Sequence[Any], dim: int = 0, *, memory_config: Any = None, output_tensor: Any = None,
           groups: int = 1, sub_core_grids: Any = None) -> Any:
    """``ttnn.concat`` along a per-device dim (same rank, dtype and layout required, as in ttnn)."""
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("ttnn.concat: needs at least one tensor")
    same_mesh("ttnn.concat", *tensors)
    first = tensors[0]
    rank = _rank(first)
    d = norm_dim(dim, rank, "ttnn.concat")
    for t in tensors[1:]:
        if _rank(t) != rank:
            raise RuntimeError(f"ttnn.concat: all tensors must have the same rank ({rank} vs {_rank(t)})")
        if t.dtype != first.dtype or t.layout != first.layout:
            raise RuntimeError("ttnn.concat: all tensors must have the same dtype and layout")
        for i in range(rank):
            if i != d and data(t).shape[i + 1] != data(first).shape[i + 1]:
                raise RuntimeError(
                    f"ttnn.concat: shapes {tuple(first.shape)} and {tuple(t.shape)} differ outside dim {dim}"
                )
    if groups != 1:
        parts = [data(t).unflatten(d + 1, (groups, -1)) for t in tensors]
        out = torch.cat(parts, dim=d + 2).flatten(d + 1, d + 2)
    else:
        out = torch.cat([data(t) for t in tensors], dim=d + 1)
    return make(out, first, memory_config=memory_config)


def _slice_args(x: torch.Tensor, starts: Any, ends: Any, steps: Any, op: str) -> list[slice]:
    rank = x.dim() - 1
    starts = as_int_list(starts.to_torch().flatten().tolist() if is_tensor(starts) else starts)
    ends = as_int_list(ends.to_torch().flatten().tolist() if is_tensor(ends) else ends)
    steps = as_int_list(steps) if steps is not None else [1] * rank
    if not (len(starts) == len(ends) == len(steps) == rank):
        raise RuntimeError(f"{op}: starts/ends/steps must each have {rank} entries (the tensor's rank)")
    out = []
    for i, (s, e, st) in enumerate(zip(starts, ends, steps)):
        size = x.shape[i + 1]
        s = s + size if s < 0 else s
        e = e + size if e < 0 else e
        if st <= 0:
            raise RuntimeError(f"{op}: steps must be positive, got {st} on dim {i}")
        if not (0 <= s <= e <= size):
            raise RuntimeError(f"{op}: slice [{s}:{e}] is out of range for dim {i} of size {size}")
        out.append(builtins.slice(s, e, st))
    return out


@device_op
def slice(input_tensor: Any, starts: Any, ends: Any, slice_step: Any = None, *, memory_config: Any = None,  # noqa: A001
          output_tensor: Any = None, pad_value: Any = None, slice_dim: Any = None, num_devices: Any = None,
          sub_core_grids: Any = None, **kwargs: Any) -> Any:
    """``ttnn.slice(x, starts, ends, steps)`` of the per-device shape (ends exclusive); the keywords of
    ttnn's other overloads (``steps``, ``slice_start``, ``slice_end``) are accepted too."""
    steps = kwargs.pop("steps", slice_step)
    starts = kwargs.pop("slice_start", starts)
    ends = kwargs.pop("slice_end", ends)
    if kwargs:
        raise TypeError(f"ttnn.slice: unexpected keyword arguments {sorted(kwargs)}")
    x = data(input_tensor)
    index = _slice_args(x, starts, ends, steps, "ttnn.slice")
    return make(x[(builtins.slice(None),) + tuple(index)], input_tensor, memory_config=memory_config)


@device_op
def pad(input_tensor: Any, padding: Any, value: Any, *args: Any, use_multicore: bool = True,
        memory_config: Any = None, sub_core_grids: Any = None) -> Any:
    """``ttnn.pad(x, padding=[(before, after), ...], value)`` (or the ``output_padded_shape,
    input_tensor_start, value`` form)."""
    x = data(input_tensor)
    rank = x.dim() - 1
    pairs: list[tuple[int, int]]
    if args:  # (output_padded_shape, input_tensor_start, value)
        out_shape, start, value = as_int_list(padding), as_int_list(value), args[0]
        pairs = [(s, o - s - n) for o, s, n in zip(out_shape, start, x.shape[1:])]
    else:
        pairs = [(int(p[0]), int(p[1])) for p in padding]
    if len(pairs) > rank:
        raise RuntimeError(f"ttnn.pad: {len(pairs)} padding pairs for a rank-{rank} tensor")
    pairs = [(0, 0)] * (rank - len(pairs)) + pairs
    if any(b < 0 or a < 0 for b, a in pairs):
        raise RuntimeError(f"ttnn.pad: negative padding {pairs}")
    flat = [v for b, a in reversed(pairs) for v in (b, a)]
    out = torch.nn.functional.pad(x, flat, value=float(value))
    return make(out, input_tensor, memory_config=memory_config)


@device_op
def repeat(input_tensor: Any, repeat_dims: Sequence[int], *, memory_config: Any = None,
           optional_output_tensor: Any = None) -> Any:
    """``ttnn.repeat``: tile the per-device tensor ``repeat_dims`` times along each dim."""
    x = data(input_tensor)
    reps = as_int_list(repeat_dims)
    if len(reps) != x.dim() - 1:
        raise RuntimeError(f"ttnn.repeat: repeat_dims needs {x.dim() - 1} entries, got {len(reps)}")
    if all(r == 1 or size == 1 for r, size in zip(reps, x.shape[1:])):
        # Copies of size-1 dims only (e.g. the tokens once per expert): a broadcast view, not a copy; the
        # expert products read the rows they need from it (ops/deferred.py).
        return make(x.expand(x.shape[0], *(r * size for r, size in zip(reps, x.shape[1:]))), input_tensor,
                    memory_config=memory_config, contiguous=False)
    return make(x.repeat(1, *reps), input_tensor, memory_config=memory_config)


@device_op
def repeat_interleave(input_tensor: Any, repeats: int, dim: int, *, memory_config: Any = None) -> Any:
    """``ttnn.repeat_interleave`` along a per-device dim."""
    x = data(input_tensor)
    d = norm_dim(dim, x.dim() - 1, "ttnn.repeat_interleave") + 1
    return make(x.repeat_interleave(int(repeats), dim=d), input_tensor, memory_config=memory_config)


@device_op
def typecast(input_tensor: Any, dtype: Any, *args: Any, memory_config: Any = None,
             output_tensor: Any = None, sub_core_grids: Any = None) -> Any:
    """``ttnn.typecast(x, dtype)`` (or ttnn's ``(x, input_dtype, output_dtype)`` form): round to the new dtype."""
    target = args[0] if args else dtype
    x = data(input_tensor)
    if target in T.INTEGER_DTYPES and x.is_floating_point():
        x = torch.trunc(x.to(torch.float32))
    return make(x, input_tensor, dtype=target, memory_config=memory_config)


@device_op
def to_layout(tensor: Any, layout: Any, dtype: Any = None, memory_config: Any = None,
              sub_core_grids: Any = None, pad_value: float = 0.0) -> Any:
    """``ttnn.to_layout``: ROW_MAJOR <-> TILE (logical values unchanged; bfp needs TILE)."""
    target_dtype = dtype or tensor.dtype
    if layout == T.Layout.ROW_MAJOR and target_dtype in T.BLOCK_FLOAT_DTYPES:
        raise RuntimeError(
            f"ttnn.to_layout: {target_dtype} is a block-float dtype and needs TILE layout; typecast to bfloat16 first"
        )
    return tensor_with(tensor, dtype=target_dtype, layout=layout, memory_config=memory_config)


def tensor_with(tensor: Any, *, dtype: Any = None, layout: Any = None, memory_config: Any = None) -> Any:
    """A copy of ``tensor`` with some attributes changed (values re-rounded to the dtype)."""
    from ._common import tensor_cls

    stored = tensor._stacked
    if is_deferred(stored) and (dtype is None or dtype == tensor.dtype):  # values unchanged: still deferred
        return make_deferred(stored, tensor, dtype=tensor.dtype, layout=layout or tensor.layout,
                             memory_config=memory_config)
    return tensor_cls().from_stacked(
        data(tensor),
        dtype=dtype or tensor.dtype,
        layout=layout or tensor.layout,
        device=device_of(tensor),
        memory_config=memory_config or (tensor.memory_config() if callable(tensor.memory_config) else tensor.memory_config),
    )


@device_op
def to_memory_config(tensor: Any, memory_config: Any, dtype: Any = None, output_tensor: Any = None) -> Any:
    """``ttnn.to_memory_config`` (validates the new memory config; values unchanged unless ``dtype``)."""
    return tensor_with(tensor, dtype=dtype, memory_config=memory_config)


@device_op
def sharded_to_interleaved(input_tensor: Any, memory_config: Any = None, output_dtype: Any = None) -> Any:
    """``ttnn.sharded_to_interleaved``."""
    return tensor_with(input_tensor, dtype=output_dtype, memory_config=memory_config or T.DRAM_MEMORY_CONFIG)


@device_op
def interleaved_to_sharded(input_tensor: Any, sharded_memory_config: Any, output_dtype: Any = None, *,
                           keep_l1_aligned: Any = False, preallocated_output: Any = None) -> Any:
    """``ttnn.interleaved_to_sharded(x, sharded_memory_config[, output_dtype])``."""
    if not isinstance(sharded_memory_config, T.MemoryConfig):
        raise NotImplementedError("ttnn emulator: interleaved_to_sharded with (grid, shard_shape, ...) is not supported")
    return tensor_with(input_tensor, dtype=output_dtype, memory_config=sharded_memory_config)


@device_op
def reshard(input_tensor: Any, output_memory_config: Any, output_tensor: Any = None) -> Any:
    """``ttnn.reshard``."""
    return tensor_with(input_tensor, memory_config=output_memory_config)


@device_op
def clone(input: Any, *, dtype: Any = None, memory_config: Any = None, compute_kernel_config: Any = None) -> Any:  # noqa: A002
    """``ttnn.clone`` (optionally to another dtype / memory config)."""
    return tensor_with(input, dtype=dtype, memory_config=memory_config)


@device_op
def gather(input: Any, dim: int, index: Any, *, sparse_grad: bool = False, memory_config: Any = None,  # noqa: A002
           out: Any = None, sub_core_grids: Any = None) -> Any:
    """``ttnn.gather`` (torch.gather semantics per device)."""
    same_mesh("ttnn.gather", input, index)
    x, idx = data(input), data(index).long()
    d = norm_dim(dim, x.dim() - 1, "ttnn.gather") + 1
    if idx.numel() and (idx.min() < 0 or idx.max() >= x.shape[d]):
        raise RuntimeError(f"ttnn.gather: index out of range for dim {dim} of size {x.shape[d]}")
    return make(torch.gather(x, d, idx.expand(x.shape[0], *idx.shape[1:])), input, memory_config=memory_config)


@device_op
def scatter(input: Any, dim: int, index: Any, src: Any, *, memory_config: Any = None, reduce: Any = None,  # noqa: A002
            sub_core_grids: Any = None) -> Any:
    """``ttnn.scatter`` (torch.scatter semantics per device; ``reduce`` None, "add"/"sum", "multiply", "amax", "amin")."""
    same_mesh("ttnn.scatter", input, index, src)
    x, idx, s = compute_dtype(data(input)), data(index).long(), compute_dtype(data(src))
    d = norm_dim(dim, x.dim() - 1, "ttnn.scatter") + 1
    if idx.numel() and (idx.min() < 0 or idx.max() >= x.shape[d]):
        raise RuntimeError(f"ttnn.scatter: index out of range for dim {dim} of size {x.shape[d]}")
    idx = idx.expand(x.shape[0], *idx.shape[1:])
    s = s.expand(x.shape[0], *s.shape[1:]).to(x.dtype)
    if reduce is None:
        out = torch.scatter(x, d, idx, s)
    else:
        mode = {"add": "sum", "sum": "sum", "multiply": "prod", "prod": "prod", "amax": "amax", "amin": "amin"}.get(reduce)
        if mode is None:
            raise RuntimeError(f"ttnn.scatter: unsupported reduce {reduce!r}")
        out = torch.scatter_reduce(x, d, idx, s, reduce=mode)
    return make(out, input, memory_config=memory_config)


@device_op
def embedding(input_tensor: Any, weight: Any, *, padding_idx: Any = None, layout: Any = None,
              embeddings_type: Any = EmbeddingsType.GENERIC, dtype: Any = None, memory_config: Any = None,
              output_tensor: Any = None) -> Any:
    """``ttnn.embedding(ids, weight)``: rows of ``weight`` ([V, H], or [1, 1, V, H]) for integer ids.

    As ttnn's EmbeddingOperation: ids ``[S]`` give ``[S, H]``; ids ``[B, ..., S]`` (the middle dims 1) give
    ``[B, S, H]``; the layout is ``layout``, else the weight's."""
    same_mesh("ttnn.embedding", input_tensor, weight)
    ids = data(input_tensor)
    if ids.is_floating_point():
        if not torch.equal(ids, torch.round(ids)):
            raise RuntimeError("ttnn.embedding: input_tensor must hold integer token ids")
    ids = ids.long()
    w = data(weight)
    w = w.reshape(w.shape[0], w.shape[-2], w.shape[-1])
    vocab = w.shape[1]
    if ids.numel() and (ids.min() < 0 or ids.max() >= vocab):
        raise RuntimeError(f"ttnn.embedding: token id {int(ids.max())} is out of range for a vocabulary of {vocab}")
    if ids.shape[0] != w.shape[0]:
        if w.shape[0] == 1:
            w = w.expand(ids.shape[0], -1, -1)
        elif ids.shape[0] == 1:
            ids = ids.expand(w.shape[0], *ids.shape[1:])
    flat = ids.reshape(ids.shape[0], -1)
    rows = torch.gather(w, 1, flat.unsqueeze(-1).expand(-1, -1, w.shape[-1]))
    out = rows.reshape(*ids.shape, w.shape[-1])
    if padding_idx is not None:
        out = out.masked_fill((ids == int(padding_idx)).unsqueeze(-1), 0)
    id_shape = list(ids.shape[1:])
    if len(id_shape) > 1 and math.prod(id_shape[1:-1]) != 1:
        raise RuntimeError(f"ttnn.embedding: ids of shape {id_shape} cannot be viewed as [batch, 1, 1, sentence]")
    out_shape = [id_shape[-1], w.shape[-1]] if len(id_shape) == 1 else [id_shape[0], id_shape[-1], w.shape[-1]]
    out = out.reshape(out.shape[0], *out_shape)
    return make(out, weight, dtype=dtype or weight.dtype, layout=layout or weight.layout,
                memory_config=memory_config or input_tensor.memory_config())

__all__ = [
    "reshape", "permute", "transpose", "squeeze", "unsqueeze", "concat", "slice", "pad", "repeat",
    "repeat_interleave", "typecast", "to_layout", "to_memory_config", "sharded_to_interleaved",
    "interleaved_to_sharded", "reshard", "clone", "gather", "scatter", "embedding", "TileReshapeMapMode",
    "EmbeddingsType",
]
