"""ttnn.matmul / ttnn.linear on stacked mesh data, with the precision model of precision.py."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import torch

from .. import types as T
from . import _activations as activations
from .. import numerics
from ._common import (
    broadcast_shapes, compute_dtype, data, device_of, make, make_deferred, require_device, same_mesh, stack_broadcast,
)
from ._decode_slots import LiveRows
from .deferred import DeferredRows, gather_rows, is_deferred
from ._kernel_probe import column_major_weights_exact, group_products_exact, row_granule
from ._precision import (
    In1Operand,
    device_matmul,
    in1_of_parts,
    in1_part,
    in1_parts,
    matmul_of_terms,
    matmul_precision,
    operand_cache,
    phase_terms,
    split_in1,
    split_in1_column_major,
)
from .trace import device_op

TILE = T.TILE_SIZE
_FLOAT_DTYPES = (T.DataType.BFLOAT16, T.DataType.FLOAT32, T.DataType.BFLOAT8_B, T.DataType.BFLOAT4_B)


def _check_operand(t: Any, name: str, op: str) -> None:
    require_device(t, op, name)
    if t.layout != T.Layout.TILE:
        raise RuntimeError(f"{op}: {name} must be in TILE layout (got {t.layout}); use ttnn.to_layout first")
    if t.dtype not in _FLOAT_DTYPES:
        raise RuntimeError(f"{op}: {name} has dtype {t.dtype}; matmul supports BFLOAT16, FLOAT32, BFLOAT8_B, BFLOAT4_B")


def _check_program_config(program_config: Any, op: str) -> Any:
    if program_config is None:
        return None
    if not isinstance(program_config, T.MATMUL_PROGRAM_CONFIGS):
        raise TypeError(f"{op}: program_config must be a matmul program config, got {type(program_config).__name__}")
    return getattr(program_config, "fused_activation", None)


def _tiles(n: int) -> int:
    return -(-n // TILE)


def validate_program_config(cfg: Any, op: str, batch: int, m: int, k: int, n: int, fp32_acc: bool) -> None:
    """The program-config checks ttnn makes before building a matmul program (blocking and grid fit)."""
    if cfg is None:
        return
    name = type(cfg).__name__
    if cfg.per_core_M <= 0 or cfg.per_core_N <= 0:
        raise RuntimeError(f"{op}: {name}: per_core_M ({cfg.per_core_M}) and per_core_N ({cfg.per_core_N}) must be > 0")
    kt, nt = _tiles(k), _tiles(n)
    fuse = getattr(cfg, "fuse_batch", False)
    mt = _tiles(batch * m) if fuse else _tiles(m)
    if not isinstance(cfg, T.MatmulMultiCoreReuseMultiCastDRAMShardedProgramConfig) and kt % cfg.in0_block_w:
        raise RuntimeError(f"{op}: {name}: Kt ({kt}) must be divisible by in0_block_w ({cfg.in0_block_w})")
    if hasattr(cfg, "out_subblock_h"):
        h, w = cfg.out_subblock_h, cfg.out_subblock_w
        if h <= 0 or w <= 0 or cfg.per_core_M % h or cfg.per_core_N % w:
            raise RuntimeError(f"{op}: {name}: per_core_M ({cfg.per_core_M}) / per_core_N ({cfg.per_core_N}) must be "
                               f"divisible by out_subblock_h ({h}) / out_subblock_w ({w})")
        limit = 4 if fp32_acc else 8
        if h * w > limit:
            raise RuntimeError(f"{op}: {name}: out_subblock_h * out_subblock_w = {h * w} exceeds the {limit} destination "
                               f"tiles available ({'fp32' if fp32_acc else 'bf16'} accumulation)")
        if not isinstance(cfg, T.MatmulMultiCoreReuseProgramConfig) and w != cfg.per_core_N and h != 1:
            raise RuntimeError(f"{op}: {name}: out_subblock_w ({w}) must equal per_core_N ({cfg.per_core_N}) "
                               f"or out_subblock_h ({h}) must be 1")
    grid = getattr(cfg, "compute_with_storage_grid_size", None)
    if grid is None:
        return
    cores_m, cores_n = -(-mt // cfg.per_core_M), -(-nt // cfg.per_core_N)
    if isinstance(cfg, T.MatmulMultiCoreReuseMultiCast1DProgramConfig):
        needed = cores_n if cfg.mcast_in0 else cores_m
        if needed > grid.x * grid.y:
            raise RuntimeError(f"{op}: {name}: needs {needed} cores but the grid {grid.x}x{grid.y} has {grid.x * grid.y}")
    elif isinstance(cfg, T.MatmulMultiCoreReuseMultiCastProgramConfig):
        rows, cols = (grid.x, grid.y) if cfg.transpose_mcast else (grid.y, grid.x)
        if cores_m > rows or cores_n > cols:
            raise RuntimeError(f"{op}: {name}: a {cores_m}x{cores_n} block grid does not fit the core grid "
                               f"{grid.x}x{grid.y} (transpose_mcast={cfg.transpose_mcast})")


#: Per-batch-weight (expert) products deferred to the rows that are read (deferred.py); 0 turns it off.
DEFER_EXPERT_ROWS = os.environ.get("DEEPSEEK_TT_EMULATOR_DEFER_ROWS", "1") != "0"
#: Bytes per weight value of a prepared in1 operand and its temporaries (fp32 ``full``, ``hi`` and ``lo``).
_IN1_BYTES_PER_VALUE = 12
#: Weights whose prepared operand would exceed this are multiplied in column slices (not cached).
_CHUNK_BYTES = int(os.environ.get("DEEPSEEK_TT_EMULATOR_MATMUL_CHUNK_MB", "512")) << 20
#: ... in slices of this size (prepared operand bytes) when the product has at most ``_FEW_ROWS`` rows.
_CACHED_SLICE_BYTES = 8 << 20
_FEW_ROWS = 32
#: fp32 bytes of the expert weights widened for one batched product of deferred rows (cache-sized).
_EXPERT_BATCH_BYTES = 4 << 20
#: A bucket of deferred rows of at most 1 / this of the groups is multiplied group by group on the cached weights.
_FEW_GROUPS_FRACTION = 4


def _prepare_in1(b_storage: torch.Tensor, transpose_b: bool, rank: int) -> In1Operand:
    """in1 as ``[devices, *batch, K, N]`` in fp32, split for the fidelity phases. A dense weight (no batch
    entries) is kept column-major where that is exact on this machine (``_kernel_probe``): faster to multiply."""
    b = compute_dtype(b_storage)
    if b.dim() == 2:
        b = b.unsqueeze(-1)
    if math.prod(b.shape[1:-2]) == 1 and column_major_weights_exact():
        b_t = b if transpose_b else b.transpose(-1, -2)
        return split_in1_column_major(b_t.reshape(b_t.shape[0], *([1] * (rank - b_t.dim())), *b_t.shape[1:]))
    if transpose_b:
        b = b.transpose(-1, -2)
    b = b.reshape(b.shape[0], *([1] * (rank - b.dim())), *b.shape[1:]).contiguous()
    return split_in1(b)


def _in1_column_slices(b_storage: torch.Tensor, transpose_b: bool, rank: int, rows: int,
                       parts: tuple[str, ...]) -> Iterator[In1Operand]:
    """Prepared in1 operands of consecutive output-column slices, a tile multiple each, within the budget;
    for a product of few rows (a decode step), slices that stay in the CPU's cache between being prepared and
    multiplied (the product reads the weight once, as a plain torch one does).

    Every output column depends only on its own weight column: with one thread the sliced product has the
    whole one's bits. With two, how the CPU's kernel splits the work depends on the slice width (measured: a
    4-row product of the full-dims LM head in 32 MB slices differs from 16 or 64 MB ones), so the bits are
    those of this slicing: deterministic, not the whole product's.
    """
    n_dim = b_storage.dim() - 2 if transpose_b else b_storage.dim() - 1
    n = b_storage.shape[n_dim]
    per_column = b_storage.numel() // n * _IN1_BYTES_PER_VALUE
    budget = _CACHED_SLICE_BYTES if rows <= _FEW_ROWS and rows % row_granule() == 0 else _CHUNK_BYTES
    step = max(TILE, budget // per_column // TILE * TILE)
    if b_storage.dtype != torch.bfloat16 or "hi" in parts:
        for start in range(0, n, step):
            yield _prepare_in1(b_storage.narrow(n_dim, start, min(step, n - start)), transpose_b, rank)
        return
    # A bf16-stored weight whose full part alone is read: that part is its values widened (TF32 holds them
    # exactly), each slice into one reused row-major buffer (the row-major product is the exact one; no fresh
    # pages to fault in per slice). Each slice is multiplied before the next is widened.
    buffer = None
    for start in range(0, n, step):
        width = min(step, n - start)
        b = b_storage.narrow(n_dim, start, width)
        b = b.transpose(-1, -2) if transpose_b else b
        b = b.reshape(b.shape[0], *([1] * (rank - b.dim())), *b.shape[1:])
        if buffer is None or width != buffer.shape[-1]:
            buffer = torch.empty(b.shape, dtype=torch.float32, device=b.device)
        yield in1_of_parts({"full": buffer.copy_(b)})


def _device_matmul_broadcast(op: str, a: torch.Tensor, b: In1Operand, precision: Any) -> torch.Tensor:
    """``device_matmul`` after broadcasting the device dim and checking the batch dims."""
    if a.shape[0] != b.full.shape[0]:
        a, _ = stack_broadcast(a, b.full)
        if b.full.shape[0] == 1:
            b = b.expand_devices(a.shape[0])
    try:
        broadcast_shapes(a.shape[:-2], b.full.shape[:-2])
    except RuntimeError as exc:
        raise RuntimeError(
            f"{op}: batch dims of input_tensor_a {tuple(a.shape[1:-2])} and input_tensor_b {tuple(b.full.shape[1:-2])} "
            "do not broadcast"
        ) from exc
    return device_matmul(a, b, precision)


def _matmul(
    op: str,
    input_tensor_a: Any,
    input_tensor_b: Any,
    *,
    bias: Any,
    transpose_a: bool,
    transpose_b: bool,
    memory_config: Any,
    dtype: Any,
    program_config: Any,
    activation: Any,
    compute_kernel_config: Any,
    defer: bool = True,
) -> Any:
    _check_operand(input_tensor_a, "input_tensor_a", op)
    _check_operand(input_tensor_b, "input_tensor_b", op)
    same_mesh(op, input_tensor_a, input_tensor_b, bias)
    fused = _check_program_config(program_config, op)
    if defer and DEFER_EXPERT_ROWS and bias is None and not transpose_a:
        deferred = _deferred_expert_matmul(
            op, input_tensor_a, input_tensor_b, transpose_b=transpose_b, memory_config=memory_config, dtype=dtype,
            program_config=program_config, fused=fused, activation=activation,
            compute_kernel_config=compute_kernel_config,
        )
        if deferred is not None:
            return deferred
    a = compute_dtype(data(input_tensor_a))
    b_storage = data(input_tensor_b)
    if a.dim() < 2 or b_storage.dim() < 2:
        raise RuntimeError(f"{op}: input tensors must have rank >= 1 per device")
    if a.dim() == 2:  # per-device rank 1: a row vector
        a = a.unsqueeze(1)
    if transpose_a:
        a = a.transpose(-1, -2)
    b_shape = list(b_storage.shape) if b_storage.dim() > 2 else list(b_storage.shape) + [1]
    if transpose_b:
        b_shape[-1], b_shape[-2] = b_shape[-2], b_shape[-1]
    if a.shape[-1] != b_shape[-2]:
        raise RuntimeError(
            f"{op}: the width of the first tensor must be equal to the height of the second tensor "
            f"(input_tensor_a {tuple(a.shape[1:])} x input_tensor_b {tuple(b_shape[1:])}: {a.shape[-1]} != {b_shape[-2]})"
        )
    # Align per-device batch dims (the device dim stays first).
    rank = max(a.dim(), len(b_shape))
    a = a.reshape(a.shape[0], *([1] * (rank - a.dim())), *a.shape[1:])

    precision = matmul_precision(compute_kernel_config)
    batch = math.prod(a.shape[1:-2]) if a.dim() > 3 else 1
    validate_program_config(program_config, op, batch, a.shape[-2], a.shape[-1], b_shape[-1], precision.fp32_dest_acc)
    rows = a.shape[-2]
    live = LiveRows.of(device_of(input_tensor_a), rows)  # a decode step's empty slots: not computed, NaN
    if live is not None:
        a = live.select(a)
    if b_storage.numel() * _IN1_BYTES_PER_VALUE > _CHUNK_BYTES and b_storage.dim() > 2:
        # A weight too large to prepare whole (e.g. a full-dims LM head): output columns in slices.
        operands = _in1_column_slices(b_storage, transpose_b, rank, a.shape[-2], in1_parts(precision.fidelity))
    else:
        operands = [operand_cache.get(b_storage, (bool(transpose_b), rank), lambda: _prepare_in1(b_storage, transpose_b, rank))]
    outs = [_device_matmul_broadcast(op, a, b, precision) for b in operands]
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)
    if live is not None:
        out = live.restore(out, rows)
    if bias is not None:
        bias_data = compute_dtype(data(bias))
        if bias_data.shape[-1] != out.shape[-1]:
            raise RuntimeError(f"{op}: bias width {bias_data.shape[-1]} does not match the output width {out.shape[-1]}")
        bias_row = bias_data.reshape(bias_data.shape[0], -1, bias_data.shape[-1])[:, :1, :]
        out = out + bias_row.reshape(bias_row.shape[0], *([1] * (out.dim() - 2)), out.shape[-1])
    out = activations.apply(out, fused)
    out = activations.apply(out, activation)
    orig_rank = max(data(input_tensor_a).dim(), data(input_tensor_b).dim())
    if out.dim() > orig_rank:  # undo the rank-1 promotion
        out = out.reshape(out.shape[0], *out.shape[out.dim() - orig_rank + 1 :])
    return make(
        out,
        input_tensor_a,
        dtype=dtype or input_tensor_a.dtype,
        layout=T.Layout.TILE,
        memory_config=memory_config or T.DRAM_MEMORY_CONFIG,
    )


def _deferred_expert_matmul(op: str, input_tensor_a: Any, input_tensor_b: Any, *, transpose_b: bool, memory_config: Any,
                            dtype: Any, program_config: Any, fused: Any, activation: Any,
                            compute_kernel_config: Any) -> Any:
    """A product of per-batch weights (experts: ``[.., E, T, K] x [.., E, K, N]``, same batch dims) as deferred
    rows (deferred.py), or None for any other product."""
    a_store = input_tensor_a._stacked
    b_storage = data(input_tensor_b)
    if b_storage.dim() < 4 or a_store.dim() != b_storage.dim():
        return None
    batch = tuple(b_storage.shape[1:-2])
    groups = math.prod(batch)
    if groups < 2 or tuple(a_store.shape[1:-2]) != batch or a_store.shape[0] != b_storage.shape[0]:
        return None
    if b_storage.numel() * _IN1_BYTES_PER_VALUE > _CHUNK_BYTES:
        return None
    k, n_out = (b_storage.shape[-1], b_storage.shape[-2]) if transpose_b else (b_storage.shape[-2], b_storage.shape[-1])
    if a_store.shape[-1] != k:
        return None  # the dense path reports the mismatch
    if is_deferred(a_store) and a_store.groups != groups:
        return None
    precision = matmul_precision(compute_kernel_config)
    rows = a_store.shape[-2]
    validate_program_config(program_config, op, groups, rows, k, n_out, precision.fp32_dest_acc)
    out_dtype = dtype or input_tensor_a.dtype
    rank = b_storage.dim()

    def operand() -> In1Operand:
        return operand_cache.get(b_storage, (bool(transpose_b), rank), lambda: _prepare_in1(b_storage, transpose_b, rank))

    def compact_part(part: str) -> torch.Tensor:
        """Part ``part`` of the operand of bf16-stored weights (bf16 / bfloat8_b / bfloat4_b), which bf16 holds
        exactly (at most 7 explicit mantissa bits): ``[n, *batch, K, N]``, half the bytes of fp32 to read."""
        def build() -> In1Operand:
            b = b_storage.transpose(-1, -2) if transpose_b else b_storage
            values = in1_part(b, part).to(torch.bfloat16).contiguous()
            return In1Operand(values, values)
        return operand_cache.get(b_storage, (bool(transpose_b), rank, "bf16", part), build).full

    def finish(out: torch.Tensor) -> torch.Tensor:
        out = activations.apply(activations.apply(out, fused), activation)
        return numerics.round_to_dtype(out, out_dtype)

    live = LiveRows.of(device_of(input_tensor_a), rows)  # declared at the op, whenever the rows are read

    def full() -> torch.Tensor:
        a = compute_dtype(a_store.full() if is_deferred(a_store) else a_store)
        if live is None:
            return finish(_device_matmul_broadcast(op, a, operand(), precision))
        return finish(live.restore(_device_matmul_broadcast(op, live.select(a), operand(), precision), rows))

    def some_rows(groups_idx: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
        if is_deferred(a_store):
            a = a_store.rows(groups_idx, sel)
        else:
            a = gather_rows(a_store, groups, groups_idx, sel)
        a = compute_dtype(a)
        n = b_storage.shape[0]
        if groups_idx.numel() * _FEW_GROUPS_FRACTION <= groups and group_products_exact():
            # A bucket of few groups (a decode step's experts; in prefill, most row-size buckets): each multiplied
            # by its cached weight in place, no gathered copy; where probed exact, a group's product alone has
            # the bits of its batched entry below.
            # The fidelity phases' operands are split once for the bucket (element-wise, so a group's slice
            # of them is what its own split gives) and each group's products are taken on those slices.
            # bf16-stored weights are read from their compact bf16 operand, each group's slice widened into one
            # reused fp32 buffer that stays in the CPU's cache: the same values in the same layout (the same
            # bits), half the bytes read from memory, which bounds these few-row products.
            if b_storage.dtype == torch.bfloat16:
                stored = {part: compact_part(part) for part in in1_parts(precision.fidelity)}
            else:
                b = operand()
                if b.column_major and a.shape[-2] % row_granule():
                    b = b.row_major()
                stored = {part: getattr(b, part) for part in in1_parts(precision.fidelity)}
            whole = in1_of_parts({part: values.reshape(n, groups, k, n_out) for part, values in stored.items()})
            terms = phase_terms(a, whole, precision.fidelity)
            buffers: dict[int, torch.Tensor] = {}

            def group_weight(y: torch.Tensor, g: int) -> torch.Tensor:
                if y.dtype == torch.float32:
                    return y[:, g : g + 1]
                buffer = buffers.get(id(y))
                if buffer is None:
                    buffer = buffers[id(y)] = torch.empty((n, 1, k, n_out), dtype=torch.float32, device=y.device)
                return buffer.copy_(y[:, g : g + 1])

            outs = []
            for i, g in enumerate(groups_idx.tolist()):
                group_terms = [(x[:, i : i + 1].contiguous(), group_weight(y, g)) for x, y in terms]
                outs.append(matmul_of_terms(group_terms, precision))
            return finish(torch.cat(outs, dim=1))
        # A cache-sized batch of groups at a time: their cached weights gathered (bf16 storage read at half the
        # bytes of fp32 and widened after the gather: the products are memory-bound) and multiplied as one
        # batched product, whose every batch entry has the bits of that group's product alone.
        if b_storage.dtype == torch.bfloat16:
            stored = {part: compact_part(part) for part in in1_parts(precision.fidelity)}
        else:
            b = operand()
            stored = {part: getattr(b, part) for part in in1_parts(precision.fidelity)}
        parts = {part: values.reshape(n, groups, k, n_out) for part, values in stored.items()}
        chunk = max(1, _EXPERT_BATCH_BYTES // (k * n_out * 4))
        outs = []
        for start in range(0, groups_idx.numel(), chunk):
            batch = groups_idx[start : start + chunk].to(b_storage.device)
            weights = in1_of_parts({part: values.index_select(1, batch).to(torch.float32) for part, values in parts.items()})
            outs.append(_device_matmul_broadcast(op, a[:, start : start + batch.numel()], weights, precision))
        return finish(torch.cat(outs, dim=1))

    values = DeferredRows.create((*a_store.shape[:-1], n_out), numerics.storage_torch_dtype(out_dtype), groups, rows,
                                 full, some_rows, b_storage.device)
    return make_deferred(values, input_tensor_a, dtype=out_dtype, layout=T.Layout.TILE,
                         memory_config=memory_config or T.DRAM_MEMORY_CONFIG)


@device_op
def matmul(
    input_tensor_a: Any,
    input_tensor_b: Any,
    *,
    transpose_a: bool = False,
    transpose_b: bool = False,
    memory_config: Any = None,
    dtype: Any = None,
    program_config: Any = None,
    activation: Any = None,
    compute_kernel_config: Any = None,
    core_grid: Any = None,
    output_tile: Any = None,
    optional_output_tensor: Any = None,
    global_cb: Any = None,
    sub_device_id: Any = None,
    prefetcher_pipes: Any = (),
) -> Any:
    """``ttnn.matmul``: batched matrix product (torch broadcasting of batch dims, as ttnn)."""
    return _matmul(
        "ttnn.matmul",
        input_tensor_a,
        input_tensor_b,
        bias=None,
        transpose_a=transpose_a,
        transpose_b=transpose_b,
        memory_config=memory_config,
        dtype=dtype,
        program_config=program_config,
        activation=activation,
        compute_kernel_config=compute_kernel_config,
    )


@device_op
def linear(
    input_tensor_a: Any,
    input_tensor_b: Any,
    *,
    bias: Any = None,
    transpose_a: bool = False,
    transpose_b: bool = False,
    memory_config: Any = None,
    dtype: Any = None,
    program_config: Any = None,
    activation: Any = None,
    compute_kernel_config: Any = None,
    core_grid: Any = None,
    output_tile: Any = None,
    optional_output_tensor: Any = None,
    global_cb: Any = None,
    sub_device_id: Any = None,
    prefetcher_pipes: Any = (),
    in0_column_offset: Any = None,
) -> Any:
    """``ttnn.linear``: ``input_tensor_a @ input_tensor_b (+ bias)``, then the fused activation."""
    return _matmul(
        "ttnn.linear",
        input_tensor_a,
        input_tensor_b,
        bias=bias,
        transpose_a=transpose_a,
        transpose_b=transpose_b,
        memory_config=memory_config,
        dtype=dtype,
        program_config=program_config,
        activation=activation,
        compute_kernel_config=compute_kernel_config,
    )

__all__ = ["matmul", "linear"]
