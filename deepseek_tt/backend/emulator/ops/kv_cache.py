"""KV-cache updates: ``ttnn.experimental.paged_update_cache`` / ``paged_fill_cache`` and the non-paged
``ttnn.update_cache`` / ``ttnn.fill_cache``. They write into the cache tensor in place (and return it);
written rows are rounded to the cache dtype (bfp blocks never span rows, so other rows are unchanged).
``mesh_coords`` restricts the write to those devices of the mesh."""

from __future__ import annotations

from typing import Any

import torch

from .. import numerics
from .. import types as T
from ._common import data, mesh_shape, require_device, same_mesh
from ._precision import operand_cache
from .trace import device_op

TILE = T.TILE_SIZE


def _check_tilized(op: str, cache_tensor: Any, input_tensor: Any) -> None:
    if cache_tensor.layout != T.Layout.TILE:
        raise RuntimeError(f"{op}: cache tensor must be tilized (TILE layout)")
    if input_tensor.layout != T.Layout.TILE:
        raise RuntimeError(f"{op}: input tensor must be tilized (TILE layout)")


def _device_mask(cache: Any, mesh_coords: Any) -> torch.Tensor:
    rows, cols = mesh_shape(cache)
    n = rows * cols
    if mesh_coords is None:
        return torch.ones(n, dtype=torch.bool)
    mask = torch.zeros(n, dtype=torch.bool)
    for coord in mesh_coords:
        r, c = int(coord[0]), int(coord[1])
        if not (0 <= r < rows and 0 <= c < cols):
            raise RuntimeError(f"mesh_coords: {tuple(coord)} is outside the mesh {rows}x{cols}")
        mask[r * cols + c] = True
    return mask


def _per_device_ints(t: Any, n: int) -> torch.Tensor:
    v = data(t).long()
    v = v.reshape(v.shape[0], -1)
    return v.expand(n, -1) if v.shape[0] == 1 else v


def _write_rows(cache: Any, dev: torch.Tensor, first: torch.Tensor, second: torch.Tensor, rows: torch.Tensor) -> None:
    """cache[dev, first, :, second, :] = rows (each [m, nkv, d]), rounded to the cache dtype."""
    store = cache._data
    rounded = numerics.round_to_dtype(rows.to(torch.float32), cache.dtype).to(store.dtype)
    store[dev.to(store.device), first.to(store.device), :, second.to(store.device)] = rounded.to(store.device)
    operand_cache.invalidate(store)


@device_op
def paged_update_cache(cache_tensor: Any, input_tensor: Any, *, update_idxs: Any = (), update_idxs_tensor: Any = None,
                       share_cache: Any = None, page_table: Any = None, batch_offset: int = 0,
                       compute_kernel_config: Any = None, mesh_coords: Any = None, block_size: Any = None,
                       num_kv_heads: Any = None, cache_position_modulo: Any = None) -> Any:
    """``ttnn.experimental.paged_update_cache``: write one token per user.

    ``input_tensor`` [1, b, nkv(padded), d] (FLOAT32 or BFLOAT16); user i's row goes to position
    ``update_idxs[_tensor][i]`` (skipped when -1). With ``page_table`` [b, blocks_per_user] the cache is
    paged, [blocks, nkv, block_size, d], and position p lands in block ``page_table[i, p // block_size]``
    at offset ``p % block_size``; without it the cache is [B, nkv, max_seq, d] and user i is row
    ``batch_offset + i``.
    """
    op = "ttnn.experimental.paged_update_cache"
    require_device(cache_tensor, op, "cache_tensor")
    same_mesh(op, cache_tensor, input_tensor, update_idxs_tensor, page_table)
    _check_tilized(op, cache_tensor, input_tensor)
    if input_tensor.dtype not in (T.DataType.FLOAT32, T.DataType.BFLOAT16):
        raise RuntimeError(f"{op}: data type of input tensor must be FLOAT32 or BFLOAT16, got {input_tensor.dtype}")
    if cache_position_modulo is not None or block_size is not None or num_kv_heads is not None:
        raise NotImplementedError(f"{op}: cache geometry overrides are not emulated")
    cache = cache_tensor._data
    x = data(input_tensor)
    n = cache.shape[0]
    if x.dim() != 5 or x.shape[1] != 1:
        raise RuntimeError(f"{op}: input must be [1, batch, heads, head_dim], got {tuple(input_tensor.shape)}")
    if x.shape[-1] != cache.shape[-1]:
        raise RuntimeError(f"{op}: input head dim {x.shape[-1]} != cache head dim {cache.shape[-1]}")
    kv_heads = cache.shape[2]
    if x.shape[3] < kv_heads:
        raise RuntimeError(f"{op}: input has {x.shape[3]} heads, the cache {kv_heads}")
    batch = x.shape[2]
    if update_idxs_tensor is not None:
        pos = _per_device_ints(update_idxs_tensor, n)
    elif len(update_idxs):
        pos = torch.tensor([int(p) for p in update_idxs]).unsqueeze(0).expand(n, -1)
    else:
        raise RuntimeError(f"{op}: give update_idxs or update_idxs_tensor")
    if pos.shape[1] < batch:
        raise RuntimeError(f"{op}: {pos.shape[1]} update indices for a batch of {batch}")
    pos = pos[:, :batch].cpu()
    active = (pos >= 0) & _device_mask(cache_tensor, mesh_coords).unsqueeze(1)
    dev, user = active.nonzero(as_tuple=True)
    p = pos[dev, user]
    rows = x[dev.to(x.device), 0, user.to(x.device), :kv_heads]  # [m, nkv, d]
    if page_table is not None:
        pt = data(page_table).long().cpu()
        pt = pt.reshape(pt.shape[0], pt.shape[-2], pt.shape[-1])
        pt = pt.expand(n, -1, -1) if pt.shape[0] == 1 else pt
        block = cache.shape[3]
        logical = p // block
        if p.numel() and int(logical.max()) >= pt.shape[-1]:
            raise RuntimeError(f"{op}: position {int(p.max())} is beyond the page table's capacity")
        blocks = pt[dev, user, logical]
        if blocks.numel() and (blocks.min() < 0 or blocks.max() >= cache.shape[1]):
            raise RuntimeError(f"{op}: the page table points outside the cache's {cache.shape[1]} blocks")
        _write_rows(cache_tensor, dev, blocks, p % block, rows)
    else:
        target = user + int(batch_offset)
        if p.numel() and (int(target.max()) >= cache.shape[1] or int(p.max()) >= cache.shape[3]):
            raise RuntimeError(f"{op}: user row or position is outside the cache {tuple(cache_tensor.shape)}")
        _write_rows(cache_tensor, dev, target, p, rows)
    return cache_tensor


@device_op
def paged_fill_cache(cache_tensor: Any, input_tensor: Any, page_table: Any, *, batch_idx_tensor: Any = None,
                     batch_idx: int = 0, compute_kernel_config: Any = None, mesh_coords: Any = None,
                     block_size: Any = None, cache_position_modulo: Any = None, valid_seq_len_tensor: Any = None) -> Any:
    """``ttnn.experimental.paged_fill_cache``: copy a prefill sequence [1 (or b), nkv, s, d] into the paged
    cache [blocks, nkv, block_size, d] for user ``batch_idx`` (or ``batch_idx_tensor[j]`` for input row j)
    through ``page_table`` [users, blocks_per_user]. A raw tile copy: the input dtype must equal the
    cache dtype, and whole 32-row tiles are written (rows past ``s`` carry the tile padding, zero)."""
    op = "ttnn.experimental.paged_fill_cache"
    require_device(cache_tensor, op, "cache_tensor")
    same_mesh(op, cache_tensor, input_tensor, page_table, batch_idx_tensor)
    _check_tilized(op, cache_tensor, input_tensor)
    if input_tensor.dtype != cache_tensor.dtype:
        raise RuntimeError(f"{op}: input tensor dtype ({input_tensor.dtype}) must match cache tensor dtype "
                           f"({cache_tensor.dtype}); cast prefill K/V to the cache dtype before filling")
    if cache_position_modulo is not None or block_size is not None or valid_seq_len_tensor is not None:
        raise NotImplementedError(f"{op}: bounded / geometry-override fills are not emulated")
    cache = cache_tensor._data
    x = data(input_tensor)
    n = cache.shape[0]
    if x.dim() != 5 or x.shape[-1] != cache.shape[-1] or x.shape[2] != cache.shape[2]:
        raise RuntimeError(f"{op}: input {tuple(input_tensor.shape)} does not fit the cache {tuple(cache_tensor.shape)}")
    in_batch, seq = x.shape[1], x.shape[3]
    if batch_idx_tensor is not None:
        users = _per_device_ints(batch_idx_tensor, n)[:, :in_batch].cpu()
    else:
        if in_batch != 1:
            raise RuntimeError(f"{op}: an input batch of {in_batch} needs batch_idx_tensor")
        users = torch.full((n, 1), int(batch_idx))
    pt = data(page_table).long().cpu()
    pt = pt.reshape(pt.shape[0], pt.shape[-2], pt.shape[-1])
    pt = pt.expand(n, -1, -1) if pt.shape[0] == 1 else pt
    block = cache.shape[3]
    padded = min(-(-seq // TILE) * TILE, pt.shape[-1] * block)
    if seq > pt.shape[-1] * block:
        raise RuntimeError(f"{op}: {seq} positions exceed the page table's capacity of {pt.shape[-1] * block}")
    if users.numel() and (users.min() < 0 or users.max() >= pt.shape[1]):
        raise RuntimeError(f"{op}: batch index out of range for a page table of {pt.shape[1]} users")
    rows = torch.nn.functional.pad(x[:, 0:in_batch], (0, 0, 0, padded - seq)) if padded > seq else x
    mask = _device_mask(cache_tensor, mesh_coords)
    pos = torch.arange(padded)
    for j in range(in_batch):
        dev = mask.nonzero(as_tuple=True)[0]
        if not dev.numel():
            continue
        blocks = pt[dev.unsqueeze(1), users[dev, j].unsqueeze(1), (pos // block).unsqueeze(0)]  # [m, padded]
        if blocks.min() < 0 or blocks.max() >= cache.shape[1]:
            raise RuntimeError(f"{op}: the page table points outside the cache's {cache.shape[1]} blocks")
        seq_rows = rows[dev.to(x.device), j].permute(0, 2, 1, 3)  # [m, padded, nkv, d]
        d_idx = dev.unsqueeze(1).expand_as(blocks)
        offsets = (pos % block).unsqueeze(0).expand_as(blocks)
        cache[d_idx.to(cache.device), blocks.to(cache.device), :, offsets.to(cache.device)] = seq_rows.to(cache.dtype).to(cache.device)
    operand_cache.invalidate(cache)
    return cache_tensor


@device_op
def update_cache(cache: Any, input: Any, update_idx: int, *, batch_offset: int = 0,  # noqa: A002
                 compute_kernel_config: Any = None) -> Any:
    """``ttnn.update_cache``: ``cache[batch_offset + i, :, update_idx] = input[0, i]`` for every user i."""
    batch = data(input).shape[2]
    return paged_update_cache(cache, input, update_idxs=[int(update_idx)] * batch, batch_offset=batch_offset)


@device_op
def fill_cache(cache_tensor: Any, input_tensor: Any, batch_idx: int, *, update_idx: int = 0) -> Any:
    """``ttnn.fill_cache``: ``cache[batch_idx, :, update_idx : update_idx + s] = input[0]``."""
    op = "ttnn.fill_cache"
    same_mesh(op, cache_tensor, input_tensor)
    cache, x = cache_tensor._data, data(input_tensor)
    seq = x.shape[3]
    if update_idx + seq > cache.shape[3] or batch_idx >= cache.shape[1]:
        raise RuntimeError(f"{op}: input {tuple(input_tensor.shape)} at ({batch_idx}, {update_idx}) does not fit "
                           f"the cache {tuple(cache_tensor.shape)}")
    values = numerics.round_to_dtype(x[:, 0].to(torch.float32), cache_tensor.dtype).to(cache.dtype)
    cache[:, batch_idx, :, update_idx : update_idx + seq] = values.to(cache.device)
    operand_cache.invalidate(cache)
    return cache_tensor


EXPERIMENTAL_OPS = {"paged_update_cache": paged_update_cache, "paged_fill_cache": paged_fill_cache}
__all__ = ["update_cache", "fill_cache"]
