"""Attention ops: rotary embedding (llama/interleaved form), prefill SDPA and FlashMLA prefill, and the
(paged) decode SDPA / FlashMLA decode. Math in fp32 on the stored inputs; outputs rounded to the
query's dtype. Shapes and argument names follow ttnn 0.81."""

from __future__ import annotations

import inspect
from typing import Any

import torch

from .. import types as T
from ._common import compute_dtype, data, make, require_device, same_mesh
from .trace import device_op

TILE = T.TILE_SIZE
_Q_BLOCK = 256  # queries per block in prefill attention (bounds the score memory)


def _bf16(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.bfloat16).to(torch.float32)


@device_op
def rotary_embedding_llama(input_tensor: Any, cos_cache: Any, sin_cache: Any, trans_mat: Any, *,
                           is_decode_mode: bool = False, memory_config: Any = None,
                           compute_kernel_config: Any = None) -> Any:
    """``ttnn.experimental.rotary_embedding_llama``: ``x * cos + (x @ trans_mat) * sin``.

    ``x @ trans_mat`` multiplies every 32-wide tile of the head dim by the 32x32 ``trans_mat`` (the
    last 32x32 block of the given tensor), which rotates interleaved pairs. Prefill: x [1, H, S, D],
    cos/sin [1, 1 or H, S', D] (S' >= S; the first S rows are used). Decode: x [1, B, H, D], cos/sin
    [1, B, rows, D] (row h for head h when rows >= H, else row 0 for every head). The two products are
    held in the input dtype (as the kernel's intermediate buffers) before the sum.
    """
    op = "ttnn.experimental.rotary_embedding_llama"
    require_device(input_tensor, op)
    same_mesh(op, input_tensor, cos_cache, sin_cache, trans_mat)
    x = compute_dtype(data(input_tensor))
    cos, sin = compute_dtype(data(cos_cache)), compute_dtype(data(sin_cache))
    if x.dim() != 5:
        raise RuntimeError(f"{op}: input must be rank 4, got {tuple(input_tensor.shape)}")
    head_dim = x.shape[-1]
    if head_dim % TILE:
        raise RuntimeError(f"{op}: head dim {head_dim} must be a multiple of {TILE}")
    if cos.shape != sin.shape or cos.shape[-1] != head_dim:
        raise RuntimeError(f"{op}: cos {tuple(cos_cache.shape)} / sin {tuple(sin_cache.shape)} must match the "
                           f"input's head dim {head_dim}")
    if input_tensor.dtype != cos_cache.dtype or cos_cache.dtype != sin_cache.dtype:
        raise RuntimeError(f"{op}: input, cos and sin must have the same dtype")
    rows = x.shape[-2]
    if is_decode_mode:
        if x.shape[1] != 1:
            raise RuntimeError(f"{op}: decode mode expects input [1, batch, heads, head_dim], got {tuple(input_tensor.shape)}")
        if cos.shape[2] != x.shape[2]:
            raise RuntimeError(f"{op}: cos/sin batch {cos.shape[2]} does not match the input batch {x.shape[2]}")
        if cos.shape[-2] >= rows:
            cos, sin = cos[..., :rows, :], sin[..., :rows, :]
        else:
            cos, sin = cos[..., :1, :], sin[..., :1, :]
    else:
        if cos.shape[-2] < rows:
            raise RuntimeError(f"{op}: cos/sin cover {cos.shape[-2]} positions, the input has {rows}")
        cos, sin = cos[..., :rows, :], sin[..., :rows, :]
    trans = compute_dtype(data(trans_mat))
    trans = trans.reshape(trans.shape[0], -1, TILE, TILE)[:, -1]  # [n, 32, 32]
    if trans.shape[0] != x.shape[0]:
        trans = trans.expand(x.shape[0], TILE, TILE)
    # Every 32-wide tile of every row times trans_mat: one product of all tiles (rows) per device.
    rotated = torch.bmm(x.reshape(x.shape[0], -1, TILE), trans).reshape(x.shape)
    keep = _bf16 if input_tensor.dtype != T.DataType.FLOAT32 else (lambda t: t)
    out = keep(x * cos) + keep(rotated * sin)
    return make(out, input_tensor, memory_config=memory_config)


def _repeat_kv(t: torch.Tensor, heads: int, op: str) -> torch.Tensor:
    kv_heads = t.shape[-3]
    if kv_heads == heads:
        return t
    if heads % kv_heads:
        raise RuntimeError(f"{op}: {heads} query heads are not a multiple of {kv_heads} KV heads")
    return t.repeat_interleave(heads // kv_heads, dim=-3)


def _prefill_attention(op: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, attn_mask: Any,
                       is_causal: bool, scale: float | None) -> torch.Tensor:
    """softmax(q k^T * scale + mask) v over [n, b, h, s, d] stacks, in query blocks."""
    heads = q.shape[-3]
    shared = k.shape[-3] == 1 and v.shape[-3] == 1 and heads > 1  # MLA: one latent KV head for all query heads
    if shared:
        # Every head's query rows stacked into one product with the one KV head: the rows of a per-head
        # product over a copy of the KV head, without the copy (a product's rows do not depend on the row
        # count here: query blocks are tile multiples, see ops/_kernel_probe.py on row granules).
        k, v = k.squeeze(-3), v.squeeze(-3)

        def product(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            stacked = x.reshape(*x.shape[:-3], x.shape[-3] * x.shape[-2], x.shape[-1])
            return torch.matmul(stacked, y).reshape(*x.shape[:-1], y.shape[-1])
    else:
        k, v = _repeat_kv(k, heads, op), _repeat_kv(v, heads, op)
        product = torch.matmul
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    s_q, s_k = q.shape[-2], k.shape[-2]
    mask = compute_dtype(data(attn_mask)) if attn_mask is not None else None
    outputs = []
    for start in range(0, s_q, _Q_BLOCK):
        stop = min(s_q, start + _Q_BLOCK)
        scores = product(q[..., start:stop, :], k.transpose(-1, -2)).mul_(scale)  # in place: a fresh product
        if is_causal:
            qpos = torch.arange(start, stop, device=q.device).unsqueeze(1) + (s_k - s_q)
            allowed = torch.arange(s_k, device=q.device).unsqueeze(0) <= qpos
            scores.masked_fill_(~allowed, float("-inf"))
        if mask is not None:
            scores = scores + mask[..., start:stop, :s_k]
        outputs.append(product(torch.softmax(scores, dim=-1), v))
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-2)


@device_op
def scaled_dot_product_attention(input_tensor_q: Any, input_tensor_k: Any, input_tensor_v: Any, *,
                                 attn_mask: Any = None, is_causal: bool = True, scale: float | None = None,
                                 sliding_window_size: Any = None, memory_config: Any = None,
                                 program_config: Any = None, compute_kernel_config: Any = None,
                                 attention_sink: Any = None, cu_window_seqlens: Any = None,
                                 windowed_q_token_offset: int = 0, windowed_q_token_offset_tensor: Any = None,
                                 output_concat_heads: bool = False, attn_mask_block_map: Any = None) -> Any:
    """``ttnn.transformer.scaled_dot_product_attention``: q [b, nqh, s, d], k/v [b, nkv, s, d(v)];
    causal by default; ``attn_mask`` [b, 1, s, s] (additive) only with ``is_causal=False``."""
    op = "ttnn.transformer.scaled_dot_product_attention"
    require_device(input_tensor_q, op)
    same_mesh(op, input_tensor_q, input_tensor_k, input_tensor_v, attn_mask)
    if attn_mask is not None and is_causal:
        raise RuntimeError(f"{op}: attn_mask is only allowed with is_causal=False")
    if attention_sink is not None or sliding_window_size is not None or cu_window_seqlens is not None:
        raise NotImplementedError(f"{op}: attention_sink / sliding windows are not emulated")
    q, k, v = (compute_dtype(data(t)) for t in (input_tensor_q, input_tensor_k, input_tensor_v))
    if q.shape[-1] != k.shape[-1]:
        raise RuntimeError(f"{op}: q head dim {q.shape[-1]} != k head dim {k.shape[-1]}")
    out = _prefill_attention(op, q, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=scale)
    return make(out, input_tensor_q, memory_config=memory_config)


@device_op
def flash_mla_prefill(input_tensor_q: Any, input_tensor_k: Any, head_dim_v: Any, *,
                      attn_mask: Any = None, is_causal: bool = True,
                      scale: float | None = None, memory_config: Any = None, program_config: Any = None,
                      compute_kernel_config: Any = None) -> Any:
    """``ttnn.transformer.flash_mla_prefill(q, kv, head_dim_v)``: MLA prefill attention where V is the
    first ``head_dim_v`` columns of the shared latent ``kv`` [b, 1, s, d]; q [b, nh, s, d]; output
    [b, nh, s, head_dim_v]. (A tensor in place of ``head_dim_v`` is used as V, as ttnn's overload.)"""
    op = "ttnn.transformer.flash_mla_prefill"
    require_device(input_tensor_q, op)
    same_mesh(op, input_tensor_q, input_tensor_k, attn_mask)
    q, k = compute_dtype(data(input_tensor_q)), compute_dtype(data(input_tensor_k))
    input_tensor_v = None if isinstance(head_dim_v, int) else head_dim_v  # ttnn's (q, k, v) overload
    if input_tensor_v is not None:
        v = compute_dtype(data(input_tensor_v))
    else:
        if head_dim_v is None or not 0 < int(head_dim_v) <= k.shape[-1]:
            raise RuntimeError(f"{op}: head_dim_v must be in (0, {k.shape[-1]}], got {head_dim_v}")
        v = k[..., : int(head_dim_v)]
    if q.shape[-1] != k.shape[-1]:
        raise RuntimeError(f"{op}: q head dim {q.shape[-1]} != kv head dim {k.shape[-1]}")
    out = _prefill_attention(op, q, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=scale)
    return make(out, input_tensor_q, memory_config=memory_config)


# --- decode ----------------------------------------------------------------------------------------


def _positions(t: Any, cur_pos: Any, batch: int, n: int, device: torch.device, op: str) -> torch.Tensor:
    """Per device and user, the last cache position to attend to ([n, batch], -1 = skip the user)."""
    if t is not None:
        p = data(t).reshape(data(t).shape[0], -1).long().to(device)
        if p.shape[0] == 1:
            p = p.expand(n, -1)
    elif cur_pos is not None and len(cur_pos):
        p = torch.tensor([int(c) for c in cur_pos], device=device).unsqueeze(0).expand(n, -1)
    else:
        raise RuntimeError(f"{op}: give cur_pos or cur_pos_tensor")
    if p.shape[1] < batch:
        raise RuntimeError(f"{op}: {p.shape[1]} positions for a batch of {batch}")
    return p[:, :batch]


def _decode_attention(op: str, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, pos: torch.Tensor,
                      scale: float | None, is_causal: bool, mask: torch.Tensor | None) -> torch.Tensor:
    """q [n, 1, b, nh, d]; keys/values [n, b, nkv, L, d]; pos [n, b] -> [n, 1, b, nh, dv]."""
    if is_causal and mask is None:
        # Skipped users (position -1) output zeros whatever their scores: compute the others only. Every
        # user's product is its own batch entry, so the active users' values are those of the full batch.
        active = pos >= 0
        if not bool(active.all()):
            out = q.new_zeros(*pos.shape, q.shape[-2], values.shape[-1])
            if bool(active.any()):
                sel = active.nonzero(as_tuple=True)
                out[sel] = _user_attention(op, q[:, 0][sel], keys[sel], values[sel], pos[sel], scale, True, None)
            return out.unsqueeze(1)
    out = _user_attention(op, q[:, 0], keys, values, pos, scale, is_causal, mask)
    if is_causal:
        out = out.masked_fill((pos < 0)[..., None, None], 0.0)
    return out.unsqueeze(1)


#: A shared (MLA) KV head is repeated per query head up to these fp32 bytes of repeated rows and this many
#: positions. The length bound keeps the probabilities x values product's K (the length) far below the size
#: from which, with two threads, a batched product's entry stops having the bits of the same product alone
#: (K = 1024, ``_kernel_probe.py``): both ways then give the same bits.
_REPEAT_KV_BYTES = 4 << 20
_REPEAT_KV_MAX_LENGTH = 256


def _user_attention(op: str, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, pos: torch.Tensor,
                    scale: float | None, is_causal: bool, mask: torch.Tensor | None) -> torch.Tensor:
    """q [..., nh, d]; keys/values [..., nkv, L, d]; pos [...] -> [..., nh, dv] (no zeroing of skipped users)."""
    heads = q.shape[-2]
    qh = q.unsqueeze(-2)  # [..., nh, 1, d]
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    # MLA: one latent KV head for every query head. A long cache is multiplied head by head against it: the
    # same [1, d] x [d, L] products as over a copy of the cache repeated per head (a batched product's entries
    # are computed independently), without the copy; a short one is repeated (cheaper than a loop of products).
    length = keys.shape[-2]
    short = length <= _REPEAT_KV_MAX_LENGTH and keys[..., 0, :, :].numel() * heads * 4 <= _REPEAT_KV_BYTES
    shared = keys.shape[-3] == 1 and heads > 1 and not short
    if shared:
        keys, values = keys.squeeze(-3), values.squeeze(-3)
        scores = torch.stack([torch.matmul(qh[..., h, :, :], keys.transpose(-1, -2)) for h in range(heads)], -3)
        scores = scores * scale
    else:
        keys, values = _repeat_kv(keys, heads, op), _repeat_kv(values, heads, op)
        scores = torch.matmul(qh, keys.transpose(-1, -2)) * scale  # [..., nh, 1, L]
    if is_causal:
        allowed = torch.arange(length, device=q.device) <= pos.unsqueeze(-1)  # [..., L]
        scores = scores.masked_fill(~allowed[..., None, None, :], float("-inf"))
    if mask is not None:
        scores = scores + mask
    probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    if shared:
        return torch.stack([torch.matmul(probs[..., h, :, :], values) for h in range(heads)], -3).squeeze(-2)
    return torch.matmul(probs, values).squeeze(-2)  # [..., nh, dv]


def _paged_view(cache: torch.Tensor, page_table: torch.Tensor, length: int) -> torch.Tensor:
    """Logical [n, b, nkv, length, d] rows of a paged cache [n, blocks, nkv, block, d]."""
    n, _, kv_heads, block, dim = cache.shape
    j = torch.arange(length, device=cache.device)
    blocks = page_table[:, :, j // block]  # [n, b, L]
    if blocks.numel() and (blocks.min() < 0 or blocks.max() >= cache.shape[1]):
        raise RuntimeError(f"paged attention: the page table points outside the cache's {cache.shape[1]} blocks")
    dev = torch.arange(n, device=cache.device).view(n, 1, 1)
    rows = cache[dev, blocks, :, (j % block).view(1, 1, -1)]  # [n, b, L, nkv, d]
    return rows.permute(0, 1, 3, 2, 4)


def _page_table(t: Any, n: int, device: torch.device) -> torch.Tensor:
    pt = data(t).long().to(device)
    pt = pt.reshape(pt.shape[0], pt.shape[-2], pt.shape[-1])
    return pt.expand(n, -1, -1) if pt.shape[0] == 1 else pt


def _decode(op: str, q_t: Any, k_t: Any, v_t: Any, head_dim_v: Any, page_table_tensor: Any, *, is_causal: bool,
            attn_mask: Any, cur_pos: Any, cur_pos_tensor: Any, scale: Any, memory_config: Any,
            sliding_window_size: Any, attention_sink: Any) -> Any:
    require_device(q_t, op)
    same_mesh(op, q_t, k_t, v_t, page_table_tensor, cur_pos_tensor, attn_mask)
    if sliding_window_size is not None or attention_sink is not None:
        raise NotImplementedError(f"{op}: attention_sink / sliding windows are not emulated")
    q = compute_dtype(data(q_t))
    if q.dim() != 5 or q.shape[1] != 1:
        raise RuntimeError(f"{op}: q must be [1, batch, heads, head_dim], got {tuple(q_t.shape)}")
    n, batch = q.shape[0], q.shape[2]
    k = data(k_t)  # stored values; converted to fp32 after gathering the rows in use
    if k.shape[-1] != q.shape[-1]:
        raise RuntimeError(f"{op}: q head dim {q.shape[-1]} != k head dim {k.shape[-1]}")
    pos = _positions(cur_pos_tensor, cur_pos, batch, n, q.device, op) if is_causal else None
    if page_table_tensor is not None:
        pt = _page_table(page_table_tensor, n, q.device)
        if pt.shape[1] < batch:
            raise RuntimeError(f"{op}: the page table has {pt.shape[1]} rows for a batch of {batch}")
        pt = pt[:, :batch]
        length = int(pos.max().item()) + 1 if pos is not None else pt.shape[-1] * k.shape[-2]
        length = max(length, 1)
        capacity = pt.shape[-1] * k.shape[-2]
        if length > capacity:
            raise RuntimeError(f"{op}: position {length - 1} is beyond the page table's capacity of {capacity}")
        if is_causal and attn_mask is None:
            # Users at position -1 on every device output zeros: gather the cache rows of the others only.
            users = (pos >= 0).any(dim=0).nonzero().flatten()
            if users.numel() < batch:
                if v_t is None and (head_dim_v is None or not 0 < int(head_dim_v) <= k.shape[-1]):
                    raise RuntimeError(f"{op}: head_dim_v must be in (0, {k.shape[-1]}], got {head_dim_v}")
                out = q.new_zeros(n, 1, batch, q.shape[-2], data(v_t).shape[-1] if v_t is not None else int(head_dim_v))
                if users.numel():
                    sub_k = compute_dtype(_paged_view(k, pt[:, users], length))
                    sub_v = (compute_dtype(_paged_view(data(v_t), pt[:, users], length)) if v_t is not None
                             else sub_k[..., : int(head_dim_v)])
                    out[:, :, users] = _decode_attention(op, q[:, :, users], sub_k, sub_v, pos[:, users], scale, True, None)
                return make(out, q_t, memory_config=memory_config)
        keys = compute_dtype(_paged_view(k, pt, length))
        values = compute_dtype(_paged_view(data(v_t), pt, length)) if v_t is not None else None
    else:
        length = k.shape[-2]
        if k.shape[1] not in (1, batch):
            raise RuntimeError(f"{op}: the cache batch {k.shape[1]} does not match the batch {batch}")
        keys = compute_dtype(k).expand(n, batch, *k.shape[2:])
        values = compute_dtype(data(v_t)).expand(n, batch, *k.shape[2:-1], -1) if v_t is not None else None
        if pos is not None and int(pos.max().item()) >= length:
            raise RuntimeError(f"{op}: position {int(pos.max().item())} is beyond the cache length {length}")
    if values is None:
        if head_dim_v is None or not 0 < int(head_dim_v) <= keys.shape[-1]:
            raise RuntimeError(f"{op}: head_dim_v must be in (0, {keys.shape[-1]}], got {head_dim_v}")
        values = keys[..., : int(head_dim_v)]
    mask = None
    if attn_mask is not None:
        m = compute_dtype(data(attn_mask))  # [n, 1(b), b?, nh, L] -> [n, b, nh, 1, L]
        mask = m.reshape(n, -1, m.shape[-2], m.shape[-1])[:, :batch, :, :length].unsqueeze(-2)
    if pos is None:
        pos = torch.full((n, batch), length - 1, device=q.device)
    out = _decode_attention(op, q, keys, values, pos, scale, is_causal, mask)
    return make(out, q_t, memory_config=memory_config)


@device_op
def paged_flash_multi_latent_attention_decode(input_tensor_q: Any, input_tensor_k: Any, input_tensor_v: Any = None,
                                              head_dim_v: Any = None, page_table_tensor: Any = None, *,
                                              is_causal: bool = True, attn_mask: Any = None,
                                              cur_pos_tensor: Any = None, attention_sink: Any = None,
                                              scale: float | None = None, sliding_window_size: Any = None,
                                              memory_config: Any = None, program_config: Any = None,
                                              compute_kernel_config: Any = None) -> Any:
    """``ttnn.transformer.paged_flash_multi_latent_attention_decode``: q [1, b, nh, d] against a paged
    latent cache [blocks, 1, block_size, d] (V = its first ``head_dim_v`` columns) through
    ``page_table_tensor`` [b, blocks_per_user]; user i attends positions 0..cur_pos_tensor[i]
    (-1: skipped, output zero). Output [1, b, nh, head_dim_v]."""
    if page_table_tensor is None:
        raise RuntimeError("ttnn.transformer.paged_flash_multi_latent_attention_decode: page_table_tensor is required")
    return _decode("ttnn.transformer.paged_flash_multi_latent_attention_decode", input_tensor_q, input_tensor_k,
                   input_tensor_v, head_dim_v, page_table_tensor, is_causal=is_causal, attn_mask=attn_mask,
                   cur_pos=None, cur_pos_tensor=cur_pos_tensor, scale=scale, memory_config=memory_config,
                   sliding_window_size=sliding_window_size, attention_sink=attention_sink)


@device_op
def flash_multi_latent_attention_decode(input_tensor_q: Any, input_tensor_k: Any, input_tensor_v: Any = None,
                                        head_dim_v: Any = None, *, is_causal: bool = True, attn_mask: Any = None,
                                        cur_pos: Any = (), cur_pos_tensor: Any = None, attention_sink: Any = None,
                                        scale: float | None = None, sliding_window_size: Any = None,
                                        memory_config: Any = None, program_config: Any = None,
                                        compute_kernel_config: Any = None) -> Any:
    """``ttnn.transformer.flash_multi_latent_attention_decode``: as the paged form over a contiguous
    cache [b (or 1), 1, s, d]."""
    return _decode("ttnn.transformer.flash_multi_latent_attention_decode", input_tensor_q, input_tensor_k,
                   input_tensor_v, head_dim_v, None, is_causal=is_causal, attn_mask=attn_mask, cur_pos=cur_pos,
                   cur_pos_tensor=cur_pos_tensor, scale=scale, memory_config=memory_config,
                   sliding_window_size=sliding_window_size, attention_sink=attention_sink)


@device_op
def scaled_dot_product_attention_decode(input_tensor_q: Any, input_tensor_k: Any, input_tensor_v: Any, *,
                                        is_causal: bool = True, attn_mask: Any = None, cur_pos: Any = (),
                                        cur_pos_tensor: Any = None, attention_sink: Any = None,
                                        scale: float | None = None, sliding_window_size: Any = None,
                                        memory_config: Any = None, program_config: Any = None,
                                        compute_kernel_config: Any = None, share_cache: Any = None) -> Any:
    """``ttnn.transformer.scaled_dot_product_attention_decode``: q [1, b, nh, d], k/v [b, nkv, s, d]."""
    return _decode("ttnn.transformer.scaled_dot_product_attention_decode", input_tensor_q, input_tensor_k,
                   input_tensor_v, None, None, is_causal=is_causal, attn_mask=attn_mask, cur_pos=cur_pos,
                   cur_pos_tensor=cur_pos_tensor, scale=scale, memory_config=memory_config,
                   sliding_window_size=sliding_window_size, attention_sink=attention_sink)


@device_op
def paged_scaled_dot_product_attention_decode(input_tensor_q: Any, input_tensor_k: Any, input_tensor_v: Any,
                                              page_table_tensor: Any, *, is_causal: bool = True,
                                              attn_mask: Any = None, cur_pos_tensor: Any = None,
                                              attention_sink: Any = None, scale: float | None = None,
                                              sliding_window_size: Any = None, memory_config: Any = None,
                                              program_config: Any = None, compute_kernel_config: Any = None,
                                              paged_cache_geometry: Any = None, cache_position_modulo: Any = None,
                                              spec_multi_pos_tiles: int = 0) -> Any:
    """``ttnn.transformer.paged_scaled_dot_product_attention_decode`` over paged K and V caches."""
    if paged_cache_geometry is not None or cache_position_modulo is not None:
        raise NotImplementedError("paged_scaled_dot_product_attention_decode: cache geometry overrides are not emulated")
    return _decode("ttnn.transformer.paged_scaled_dot_product_attention_decode", input_tensor_q, input_tensor_k,
                   input_tensor_v, None, page_table_tensor, is_causal=is_causal, attn_mask=attn_mask,
                   cur_pos=None, cur_pos_tensor=cur_pos_tensor, scale=scale, memory_config=memory_config,
                   sliding_window_size=sliding_window_size, attention_sink=attention_sink)


def _required_after_optional(fn: Any, *names: str) -> None:
    """Give ``fn`` ttnn's signature in which ``names`` are required although an optional parameter
    precedes them (legal in nanobind, not in a Python ``def``; callers pass them by keyword)."""
    sig = inspect.signature(fn)
    params = [p.replace(default=inspect.Parameter.empty) if p.name in names else p for p in sig.parameters.values()]
    fn.__signature__ = inspect.Signature(params, __validate_parameters__=False)


_required_after_optional(paged_flash_multi_latent_attention_decode, "head_dim_v", "page_table_tensor")
_required_after_optional(flash_multi_latent_attention_decode, "head_dim_v")


TRANSFORMER_OPS = {
    "scaled_dot_product_attention": scaled_dot_product_attention,
    "flash_mla_prefill": flash_mla_prefill,
    "paged_flash_multi_latent_attention_decode": paged_flash_multi_latent_attention_decode,
    "flash_multi_latent_attention_decode": flash_multi_latent_attention_decode,
    "scaled_dot_product_attention_decode": scaled_dot_product_attention_decode,
    "paged_scaled_dot_product_attention_decode": paged_scaled_dot_product_attention_decode,
}
EXPERIMENTAL_OPS = {"rotary_embedding_llama": rotary_embedding_llama}
__all__: list[str] = []
