"""MoE all-to-all: ``ttnn.all_to_all_dispatch`` and ``ttnn.all_to_all_combine``, with ttnn 0.81 signatures.

Dispatch group: the devices along ``cluster_axis`` that share the other mesh coordinate (the whole mesh
when None). ``expert_mapping_tensor`` is ``[1, 1, E, D]`` per device (replicated), one-hot: row e has a
1 in the column of the global device index (row-major over the whole mesh) that holds expert e.
"""

from __future__ import annotations

from typing import Any

import torch

from .. import types as T
from ._common import compute_dtype, data, device_of, make, require_device, same_mesh
from ._decode_slots import live_decode_slots
from .collectives import group_gather, groups
from .deferred import DeferredRows, flat_rows, is_deferred, row_selection
from .trace import device_op


def _mapping(expert_mapping_tensor: Any, num_devices: int, op: str) -> torch.Tensor:
    m = data(expert_mapping_tensor)
    if m.dim() != 5:
        raise RuntimeError(f"{op}: expert_mapping_tensor must be rank 4 ([1, 1, E, D] per device)")
    table = m[0, 0, 0].long() != 0  # [E, D]; replicated on every device
    if table.shape[-1] != num_devices:
        raise RuntimeError(
            f"{op}: expert_mapping_tensor has {table.shape[-1]} device columns, the mesh has {num_devices} devices"
        )
    return table


def _rank4(t: Any, name: str, op: str) -> torch.Tensor:
    x = data(t)
    if x.dim() != 5:
        raise RuntimeError(f"{op}: {name} must be rank 4 per device, got shape {tuple(t.shape)}")
    return x


@device_op
def all_to_all_dispatch(input_tensor: Any, expert_indices_tensor: Any, expert_mapping_tensor: Any, *,
                        cluster_axis: int | None = None, output_tensors: Any = None, num_links: Any = None,
                        topology: Any = None, memory_config: Any = None, subdevice_id: Any = None,
                        output_concat_dim: int | None = 1) -> list:
    """``ttnn.all_to_all_dispatch``: send every token to the devices holding its selected experts.

    Per device: ``input_tensor`` [B, S, 1, H] (or [B, 1, S, H]) tokens, ``expert_indices_tensor`` the
    same with K expert ids. Returns ``[tokens, metadata]``: tokens [1, B*D[A], S, H] (concat dim 1) or
    [1, B, S*D[A], H] (dim 2), holding the group's tokens that selected an expert of this device and
    zero rows elsewhere (placeholder rows are unspecified on device); metadata the same shape with K
    instead of H: the all-gathered expert indices.
    """
    op = "ttnn.all_to_all_dispatch"
    require_device(input_tensor, op)
    same_mesh(op, input_tensor, expert_indices_tensor, expert_mapping_tensor)
    x = _rank4(input_tensor, "input_tensor", op)
    idx = _rank4(expert_indices_tensor, "expert_indices_tensor", op)
    if x.shape[:-1] != idx.shape[:-1]:
        raise RuntimeError(f"{op}: input_tensor {tuple(input_tensor.shape)} and expert_indices_tensor "
                           f"{tuple(expert_indices_tensor.shape)} must match on all dims but the last")
    if output_concat_dim not in (1, 2):
        raise RuntimeError(f"{op}: output_concat_dim must be 1 or 2, got {output_concat_dim}")
    n = x.shape[0]
    table = _mapping(expert_mapping_tensor, n, op)
    groups(input_tensor, cluster_axis, op)
    tokens = x.reshape(n, x.shape[1], -1, x.shape[-1])  # [n, B, S, H]
    ids = idx.reshape(n, idx.shape[1], -1, idx.shape[-1]).long()  # [n, B, S, K]
    if ids.numel() and (ids.min() < 0 or ids.max() >= table.shape[0]):
        raise RuntimeError(f"{op}: expert index out of range for {table.shape[0]} experts")
    gdim = output_concat_dim - 1
    g_tokens = group_gather(tokens, input_tensor, gdim, cluster_axis)  # [n, B', S', H]
    g_ids = group_gather(ids, input_tensor, gdim, cluster_axis)  # [n, B', S', K]
    columns = table.t().to(g_ids.device)  # [D, E]
    mine = columns[torch.arange(n, device=g_ids.device).view(n, 1, 1, 1), g_ids].any(dim=-1)  # [n, B', S']
    out_tokens = torch.where(mine.unsqueeze(-1), g_tokens, torch.zeros((), dtype=g_tokens.dtype, device=g_tokens.device))
    mc = memory_config or T.DRAM_MEMORY_CONFIG
    return [
        make(out_tokens.unsqueeze(1), input_tensor, layout=T.Layout.ROW_MAJOR, memory_config=mc),
        make(g_ids.unsqueeze(1), expert_indices_tensor, layout=T.Layout.ROW_MAJOR, memory_config=mc),
    ]


@device_op
def all_to_all_combine(input_tensor: Any, expert_metadata_tensor: Any, expert_mapping_tensor: Any, *,
                       local_reduce: bool = False, output_shard_dim: int | None = 1, cluster_axis: int | None = None,
                       subdevice_id: Any = None, memory_config: Any = None, output_tensor: Any = None,
                       num_links: Any = None, topology: Any = None) -> Any:
    """``ttnn.all_to_all_combine``: return expert outputs to the tokens' devices, one row per top-k slot.

    Per device: ``input_tensor`` [E_local, B*D[A], S, H] (expert outputs for the dispatched tokens; local
    experts in ascending global id) or [1, B*D[A], S, H] with ``local_reduce``; ``expert_metadata_tensor``
    [1, B*D[A], S, K] from dispatch. Output [K, B, S, H] (``output_shard_dim`` 1; [K, B*D[A], S/D[A], H]
    for 2): row k of a token is the output of its k-th expert, taken from the group device holding that
    expert; zero when that device is outside the group (an expert on another mesh row/column), or the
    value already in ``output_tensor`` when one is given (it is written in place and returned). With
    ``local_reduce`` a device's (already reduced) row goes to the first slot whose expert it holds and
    the other slots of that device stay zero.
    """
    op = "ttnn.all_to_all_combine"
    require_device(input_tensor, op)
    same_mesh(op, input_tensor, expert_metadata_tensor, expert_mapping_tensor)
    x = input_tensor._stacked  # deferred expert outputs (deferred.py) are evaluated for the rows read only
    if not is_deferred(x) or x.dim() != 5:
        x = _rank4(input_tensor, "input_tensor", op)
    meta = _rank4(expert_metadata_tensor, "expert_metadata_tensor", op).long()
    n = x.shape[0]
    table = _mapping(expert_mapping_tensor, n, op)
    num_experts = table.shape[0]
    if num_experts % n:
        raise RuntimeError(f"{op}: the number of experts ({num_experts}) must be divisible by the devices ({n})")
    if not local_reduce and x.shape[1] != num_experts // n:
        raise RuntimeError(f"{op}: input_tensor's leading dim ({x.shape[1]}) must equal experts / devices "
                           f"({num_experts // n}) unless local_reduce is set")
    if output_shard_dim not in (1, 2):
        raise RuntimeError(f"{op}: output_shard_dim must be 1 or 2, got {output_shard_dim}")
    group_id, pos, size = groups(input_tensor, cluster_axis, op)
    meta = meta[:, 0]  # [n, B', S', K]
    tokens_b, tokens_s, k = meta.shape[1], meta.shape[2], meta.shape[3]
    if x.shape[2:4] != meta.shape[1:3]:
        raise RuntimeError(f"{op}: input_tensor {tuple(input_tensor.shape)} does not match the metadata "
                           f"{tuple(expert_metadata_tensor.shape)} on the token dims")
    along = tokens_b if output_shard_dim == 1 else tokens_s
    if along % size:
        raise RuntimeError(f"{op}: metadata dim {output_shard_dim} ({along}) is not divisible by the {size} devices")
    local = along // size
    device = x.device
    table = table.to(device)
    dev_of_expert = table.float().argmax(dim=1)  # [E]
    held = table.any(dim=1)
    local_index = (table.long().cumsum(dim=0) - 1).gather(1, dev_of_expert.unsqueeze(1)).squeeze(1)
    ar = torch.arange(n, device=device)
    offs = (pos.to(device) * local).view(n, 1)
    sel = offs + torch.arange(local, device=device).view(1, local)  # [n, local]
    if output_shard_dim == 1:
        meta_mine = meta[ar.view(n, 1), sel]  # [n, local, S', K]
        b_idx = sel.view(n, local, 1, 1)
        s_idx = torch.arange(tokens_s, device=device).view(1, 1, tokens_s, 1)
    else:
        meta_mine = meta[ar.view(n, 1, 1), torch.arange(tokens_b, device=device).view(1, tokens_b, 1), sel.view(n, 1, local)]
        b_idx = torch.arange(tokens_b, device=device).view(1, tokens_b, 1, 1)
        s_idx = sel.view(n, 1, local, 1)
    src = dev_of_expert[meta_mine]  # [n, b, s, K]
    valid = held[meta_mine] & (group_id.to(device)[src] == group_id.to(device).view(n, 1, 1, 1))
    if local_reduce:
        same = src.unsqueeze(-1) == src.unsqueeze(-2)  # [.., K, K]
        earlier = torch.ones(k, k, dtype=torch.bool, device=device).tril(-1)
        valid = valid & ~(same & earlier).any(dim=-1)
        expert_row = torch.zeros_like(src)
    else:
        expert_row = local_index[meta_mine]
    own_shape = (n, local, tokens_s) if output_shard_dim == 1 else (n, tokens_b, local)
    live = live_decode_slots(device_of(input_tensor), own_shape[1] * own_shape[2])
    if live is not None:  # a decode step's empty slots: not computed, NaN (_decode_slots.py)
        live = live.to(device).view(own_shape)
        valid = valid & live.unsqueeze(-1)
    if is_deferred(x):
        values = _read_rows(x, valid, src, expert_row, b_idx, s_idx)
    else:
        values = x[src, expert_row, b_idx, s_idx]  # [n, b, s, K, H]
    valid = valid.permute(0, 3, 1, 2).unsqueeze(-1)  # [n, K, b, s, 1]
    values = values.permute(0, 3, 1, 2, 4)  # [n, K, b, s, H]
    if output_tensor is not None:
        base = data(output_tensor)
        if tuple(base.shape) != tuple(values.shape):
            raise RuntimeError(f"{op}: output_tensor {tuple(output_tensor.shape)} must be {tuple(values.shape[1:])}")
        out = _poison_empty_slots(torch.where(valid, values.to(base.dtype), base), live)
        output_tensor._data = make(out, output_tensor)._data
        return output_tensor
    out = _poison_empty_slots(torch.where(valid, values, torch.zeros((), dtype=values.dtype, device=device)), live)
    return make(out, input_tensor, layout=T.Layout.ROW_MAJOR, memory_config=memory_config or T.DRAM_MEMORY_CONFIG)


def _poison_empty_slots(out: torch.Tensor, live: torch.Tensor | None) -> torch.Tensor:
    """``out`` [n, K, b, s, H] with NaN in the rows of empty decode slots (``live`` [n, b, s] False)."""
    if live is None or bool(live.all()):
        return out
    return out.masked_fill(~live.view(live.shape[0], 1, *live.shape[1:], 1), float("nan"))


def _read_rows(x: DeferredRows, valid: torch.Tensor, src: torch.Tensor, expert_row: torch.Tensor,
               b_idx: torch.Tensor, s_idx: torch.Tensor) -> torch.Tensor:
    """``x[src, expert_row, b_idx, s_idx]`` ([n, b, s, K, H]) of deferred ``x`` [n, E, B, S, H] where ``valid``
    (anything elsewhere): only the rows valid slots read are computed, into one compact buffer that the
    slots index (no dense [n, E, B*S, H] copy)."""
    n, groups, bdim, sdim, width = x.shape
    src, expert_row, b_idx, s_idx = torch.broadcast_tensors(src, expert_row, b_idx, s_idx)
    flat_row = b_idx * sdim + s_idx
    buckets = None
    if (x.groups, x.group_rows) == (groups, bdim * sdim):
        needed = torch.zeros(n, groups, bdim * sdim, dtype=torch.bool)
        needed[src[valid].cpu(), expert_row[valid].cpu(), flat_row[valid].cpu()] = True
        buckets = row_selection(needed)
    if buckets is None:  # the whole product is cheaper (or the rows are numbered otherwise)
        return x.full()[src, expert_row, b_idx, s_idx]
    # where[d, g * rows + r]: the compact row of device d holding row r of group g (the last one, zeros, for
    # rows nobody reads).
    total = sum(sel.shape[1] * sel.shape[2] for _, sel in buckets)
    where = torch.full((n, groups * bdim * sdim), total, dtype=torch.long)
    parts, offset = [], 0
    for groups_idx, sel in buckets:
        count = sel.shape[1] * sel.shape[2]
        flat = flat_rows(groups, bdim * sdim, groups_idx, sel)  # [n, G' * M]
        where.scatter_(1, flat.cpu(), torch.arange(offset, offset + count).expand(n, count))
        parts.append(x.rows(groups_idx, sel).reshape(n, count, width))
        offset += count
    parts.append(torch.zeros(n, 1, width, dtype=x.dtype, device=x.device))
    compact = torch.cat(parts, dim=1)  # [n, total + 1, H]
    rows = where.to(x.device)[src, expert_row * (bdim * sdim) + flat_row]  # [n, b, s, K]
    return compact[src, rows]


@device_op
def moe_expert_token_remap(topk_tensor: Any, expert_mapping_tensor: Any, expert_metadata_tensor: Any, *,
                           memory_config: Any = None, optional_output_mapping_tensor: Any = None,
                           optional_output_reduced_tensor: Any = None, reduction_size: int = 16) -> tuple:
    """``ttnn.moe_expert_token_remap``: per device, the top-k weights of its local experts.

    Per device: ``topk_tensor`` [1, B, S, E] (weights of every global expert), ``expert_mapping_tensor``
    [1, 1, E, D] (one-hot expert -> device over the whole mesh), ``expert_metadata_tensor`` [1, B, S, K]
    (the selected global expert ids, from all_to_all_dispatch). Returns ``(mapping, reduced)``:
    mapping [1, B, S, E/D] holds the token's weight for local expert j (the device's experts in
    ascending global id) when the token selected it, else 0; reduced [1, B*S/reduction_size, E/D]
    (UINT16) is 1 where any token of that chunk of ``reduction_size`` tokens has a non-zero weight.
    """
    op = "ttnn.moe_expert_token_remap"
    for t, name in ((topk_tensor, "topk_tensor"), (expert_mapping_tensor, "expert_mapping_tensor"),
                    (expert_metadata_tensor, "expert_metadata_tensor")):
        require_device(t, op, name)
        if t.layout != T.Layout.ROW_MAJOR:
            raise RuntimeError(f"{op}: {name} must be in row major layout")
        if len(t.shape) != 4:
            raise RuntimeError(f"{op}: {name} must be rank 4, got {list(t.shape)}")
    same_mesh(op, topk_tensor, expert_mapping_tensor, expert_metadata_tensor)
    for t, name in ((expert_metadata_tensor, "Metadata"), (expert_mapping_tensor, "Mapping")):
        if t.dtype != T.DataType.UINT16:
            raise RuntimeError(f"{op}: {name} tensor must be uint16, got {t.dtype}")
    topk = compute_dtype(data(topk_tensor))
    n = topk.shape[0]
    table = _mapping(expert_mapping_tensor, n, op).to(topk.device)  # [E, D]
    if table.shape[0] != topk.shape[-1]:
        raise RuntimeError(f"{op}: Expected mapping shape dim 2 to be equal to topk dim 3 (number of experts), "
                           f"got {table.shape[0]} and {topk.shape[-1]} respectively")
    meta = data(expert_metadata_tensor).long()
    if meta.shape[2] != topk.shape[2]:
        raise RuntimeError(f"{op}: Expected metadata dim 1 to be equal to topk dim 1 (batch size), "
                           f"got {meta.shape[2]} and {topk.shape[2]}, respectively")
    if meta.shape[1:4] != topk.shape[1:4]:
        raise RuntimeError(f"{op}: metadata {list(expert_metadata_tensor.shape)} and topk {list(topk_tensor.shape)} "
                           "must match on the batch and sequence dims")
    per_device = table.sum(dim=0)
    local = table.shape[0] // n
    if bool((per_device != local).any()):
        raise RuntimeError(f"{op}: every device must hold experts / devices = {local} experts; the mapping gives "
                           f"{per_device.tolist()}")
    tokens = meta.shape[2] * meta.shape[3]
    if reduction_size <= 0 or tokens % reduction_size:
        raise RuntimeError(f"{op}: reduction_size ({reduction_size}) must be positive and divide batch * seq ({tokens})")
    experts = table.t().long().argsort(dim=1, descending=True, stable=True)[:, :local].sort(dim=1).values  # [D, local]
    weights = topk.gather(-1, experts.view(n, 1, 1, 1, local).expand(*topk.shape[:-1], local))  # [n, 1, B, S, local]
    selected = (meta.unsqueeze(-1) == experts.view(n, 1, 1, 1, 1, local)).any(dim=-2)  # [n, 1, B, S, local]
    mapping = torch.where(selected, weights, torch.zeros((), dtype=weights.dtype, device=weights.device))
    reduced = (mapping.reshape(n, 1, tokens // reduction_size, reduction_size, local) != 0).any(dim=3)
    mc = memory_config or T.DRAM_MEMORY_CONFIG
    out_mapping = make(mapping, topk_tensor, layout=T.Layout.ROW_MAJOR, memory_config=mc)
    out_reduced = make(reduced.to(torch.int32), topk_tensor, dtype=T.DataType.UINT16, layout=T.Layout.ROW_MAJOR,
                       memory_config=mc)
    outputs = []
    for result, given, name in ((out_mapping, optional_output_mapping_tensor, "optional_output_mapping_tensor"),
                                (out_reduced, optional_output_reduced_tensor, "optional_output_reduced_tensor")):
        if given is None:
            outputs.append(result)
            continue
        if tuple(given.shape) != tuple(result.shape):
            raise RuntimeError(f"{op}: {name} has shape {list(given.shape)}, the output is {list(result.shape)}")
        given._data = make(data(result), given, dtype=given.dtype)._data
        outputs.append(given)
    return tuple(outputs)


__all__ = ["all_to_all_dispatch", "all_to_all_combine", "moe_expert_token_remap"]
