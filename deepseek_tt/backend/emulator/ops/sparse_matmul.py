"""``ttnn.sparse_matmul``: batched matmul that computes only the batch pairs a sparsity mask selects.

Modes (per device; ``E`` sparse groups), as ttnn 0.81.1 documents them:

=================  =================  ==============  ==============  ============  ===================
is_input_a_sparse  is_input_b_sparse  input_tensor_a  input_tensor_b  sparsity      output
=================  =================  ==============  ==============  ============  ===================
True               True               [1, E, M, K]    [1, E, K, N]    [1, 1, 1, E]  [1, E, M, N]
False              True               [A, B, M, K]    [1, E, K, N]    [A, B, 1, E]  [A, B, 1, E, M, N]
True               False              [A, E, M, K]    [1, E, K, N]    [1, 1, A, E]  [A, E, M, N]
=================  =================  ==============  ==============  ============  ===================

A pair whose sparsity entry is zero is skipped and reads zero (ttnn zero-fills the output first). With ``nnz`` and an
``optional_output_tensor`` of shape ``[1, nnz, M, N]`` the active results are packed in sparsity scan
order. With ``indices`` (a ROW_MAJOR UINT16 stick of group ids; B sparse) only those groups of B are
computed, in index order, and ``sparsity`` is not read. Products follow the matmul precision model.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .. import types as T
from ._common import broadcast_shapes, compute_dtype, data, make, require_device, same_mesh
from ._precision import device_matmul, matmul_precision, split_in1
from .trace import device_op

_FLOAT_DTYPES = (T.DataType.BFLOAT16, T.DataType.FLOAT32, T.DataType.BFLOAT8_B, T.DataType.BFLOAT4_B)
OP = "ttnn.sparse_matmul"


def _check_inputs(a: Any, b: Any, sparsity: Any, is_a_sparse: bool, is_b_sparse: bool) -> None:
    for t, name in ((a, "input_tensor_a"), (b, "input_tensor_b"), (sparsity, "sparsity")):
        require_device(t, OP, name)
    same_mesh(OP, a, b, sparsity)
    for t, name in ((a, "A"), (b, "B")):
        if t.layout != T.Layout.TILE:
            raise RuntimeError(f"{OP}: Input tensor {name} must be TILE layout, got {t.layout}")
        if t.dtype not in _FLOAT_DTYPES:
            raise RuntimeError(f"{OP}: Input tensor {name} must be a floating point type, got {t.dtype}")
    if sparsity.layout != T.Layout.ROW_MAJOR:
        raise RuntimeError(f"{OP}: Sparsity tensor must be ROW_MAJOR layout, got {sparsity.layout}")
    if sparsity.dtype != T.DataType.BFLOAT16:
        raise RuntimeError(f"{OP}: the sparsity tensor must be bfloat16, got {sparsity.dtype}")
    if not (is_a_sparse or is_b_sparse):
        raise RuntimeError(f"{OP}: sparse_matmul requires at least one of is_input_a_sparse or is_input_b_sparse to be true")
    if len(a.shape) != 4 or len(b.shape) != 4 or len(sparsity.shape) != 4:
        raise RuntimeError(f"{OP}: input_tensor_a, input_tensor_b and sparsity must have rank 4, got "
                           f"{list(a.shape)}, {list(b.shape)}, {list(sparsity.shape)}")
    if a.shape[-1] != b.shape[-2]:
        raise RuntimeError(f"{OP}: Dimension K (A.shape[-1] {a.shape[-1]}) and B.shape[-2] ({b.shape[-2]}) must match")


def _check_program_config(program_config: Any) -> None:
    """ttnn 0.81.1 requires ``program_config`` and supports only the 1-D config with ``mcast_in0=True``."""
    if not isinstance(program_config, T.MatmulMultiCoreReuseMultiCast1DProgramConfig) or not program_config.mcast_in0:
        raise RuntimeError(f"{OP}: only MatmulMultiCoreReuseMultiCast1DProgramConfig with mcast_in0=True is supported, "
                           f"got {program_config!r}")


def _pairs(a: torch.Tensor, b: torch.Tensor, is_a_sparse: bool, is_b_sparse: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacked ``[n, *batch, M, K]`` / ``[n, *batch, K, N]`` views of every batch pair, in output order."""
    n = a.shape[0]
    if is_a_sparse:  # A's blocks pair with B's groups one to one (B broadcasts over A's leading dim)
        return a, b
    a_batch, b_batch = a.shape[1:-2], b.shape[1:-2]
    a_x = a.reshape(n, *a_batch, *([1] * len(b_batch)), *a.shape[-2:])
    b_x = b.reshape(b.shape[0], *([1] * len(a_batch)), *b_batch, *b.shape[-2:])
    return a_x, b_x


def _products(a: torch.Tensor, b: torch.Tensor, active: torch.Tensor, precision: Any) -> torch.Tensor:
    """``a @ b`` for the active batch pairs only (zeros elsewhere): ``[n, *batch, M, N]``."""
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a_flat = a.expand(*batch, *a.shape[-2:]).reshape(-1, *a.shape[-2:])
    b_flat = b.expand(*batch, *b.shape[-2:]).reshape(-1, *b.shape[-2:])
    out = torch.zeros(a_flat.shape[0], a.shape[-2], b.shape[-1], dtype=torch.float32, device=a.device)
    keep = active.reshape(-1).nonzero().flatten()
    if keep.numel():
        out[keep] = device_matmul(a_flat[keep], split_in1(b_flat[keep].contiguous()), precision)
    return out.reshape(*batch, a.shape[-2], b.shape[-1])


@device_op
def sparse_matmul(
    input_tensor_a: Any,
    input_tensor_b: Any,
    *,
    sparsity: Any,
    program_config: Any,
    nnz: int | None = None,
    is_input_a_sparse: bool = False,
    is_input_b_sparse: bool = True,
    memory_config: Any = None,
    dtype: Any = None,
    compute_kernel_config: Any = None,
    core_grid: Any = None,
    output_tile: Any = None,
    optional_output_tensor: Any = None,
    global_cb: Any = None,
    sub_device_id: Any = None,
    indices: Any = None,
    bias: Any = None,
) -> Any:
    """``ttnn.sparse_matmul`` (see the module docstring for the modes and shapes)."""
    _check_inputs(input_tensor_a, input_tensor_b, sparsity, is_input_a_sparse, is_input_b_sparse)
    _check_program_config(program_config)
    a = compute_dtype(data(input_tensor_a))
    b = compute_dtype(data(input_tensor_b))
    precision = matmul_precision(compute_kernel_config)
    if indices is not None:
        out = _indexed(a, b, indices, nnz, is_input_a_sparse, is_input_b_sparse, bias, precision, input_tensor_a)
    else:
        if bias is not None:
            raise RuntimeError(f"{OP}: bias is supported in indexed/gather mode only (pass indices=)")
        a_batch, b_batch = math.prod(a.shape[1:-2]), math.prod(b.shape[1:-2])
        length = b_batch if is_input_a_sparse and is_input_b_sparse else a_batch if is_input_a_sparse else a_batch * b_batch
        if math.prod(sparsity.shape) != length:
            raise RuntimeError(f"{OP}: sparsity logical_volume ({math.prod(sparsity.shape)}) must equal batch_length "
                               f"({length}) [sparsity_shape={list(sparsity.shape)}, is_input_a_sparse={is_input_a_sparse}, "
                               f"is_input_b_sparse={is_input_b_sparse}]")
        if nnz is not None and not 0 < nnz <= length:
            raise RuntimeError(f"{OP}: nnz ({nnz}) must be greater than 0 and at most the batch length ({length})")
        a_x, b_x = _pairs(a, b, is_input_a_sparse, is_input_b_sparse)
        batch = broadcast_shapes(a_x.shape[:-2], b_x.shape[:-2])
        active = data(sparsity).reshape(batch) != 0
        if nnz is not None and bool((active.reshape(active.shape[0], -1).sum(dim=1) != nnz).any()):
            raise RuntimeError(f"{OP}: nnz ({nnz}) differs from the non-zero count of sparsity "
                               f"{active.reshape(active.shape[0], -1).sum(dim=1).tolist()} (the device would hang)")
        out = _products(a_x, b_x, active, precision)
        if optional_output_tensor is not None and tuple(optional_output_tensor.shape) != tuple(out.shape[1:]):
            compact = (1, nnz, out.shape[-2], out.shape[-1])
            if nnz is None or tuple(optional_output_tensor.shape) != compact:
                raise RuntimeError(f"{OP}: optional_output_tensor shape {list(optional_output_tensor.shape)} is neither "
                                   f"the output shape {list(out.shape[1:])} nor the compact [1, nnz, M, N]")
            flat = out.reshape(out.shape[0], -1, *out.shape[-2:])
            mask = active.reshape(active.shape[0], -1)
            out = torch.stack([flat[d][mask[d]] for d in range(flat.shape[0])]).reshape(out.shape[0], *compact)
    result = make(out, input_tensor_a, dtype=dtype or input_tensor_a.dtype, layout=T.Layout.TILE,
                  memory_config=memory_config or T.DRAM_MEMORY_CONFIG)
    if optional_output_tensor is not None:
        if tuple(optional_output_tensor.shape) != tuple(result.shape):
            raise RuntimeError(f"{OP}: optional_output_tensor shape {list(optional_output_tensor.shape)} does not match "
                               f"the output shape {list(result.shape)}")
        optional_output_tensor._data = make(data(result), optional_output_tensor, dtype=optional_output_tensor.dtype)._data
        return optional_output_tensor
    return result


def _indexed(a: torch.Tensor, b: torch.Tensor, indices: Any, nnz: Any, is_a_sparse: bool, is_b_sparse: bool,
             bias: Any, precision: Any, like: Any) -> torch.Tensor:
    """Indexed/gather mode: B's groups ``indices[i]`` in index order (the sparsity tensor is not read)."""
    if not is_b_sparse:
        raise RuntimeError(f"{OP}: indices requires is_input_b_sparse=True")
    if nnz is not None:
        raise RuntimeError(f"{OP}: nnz must not be supplied together with indices")
    require_device(indices, OP, "indices")
    same_mesh(OP, like, indices)
    if indices.layout != T.Layout.ROW_MAJOR or indices.dtype != T.DataType.UINT16:
        raise RuntimeError(f"{OP}: indices must be a ROW_MAJOR UINT16 tensor, got {indices.dtype} {indices.layout}")
    if any(d != 1 for d in list(indices.shape)[:-1]):
        raise RuntimeError(f"{OP}: indices must be a single stick (all dims but the last 1), got {list(indices.shape)}")
    ids = data(indices).reshape(data(indices).shape[0], -1).long()  # [n, num_active]
    groups = b.shape[-3]
    if ids.shape[1] > groups or bool((ids >= groups).any()):
        raise RuntimeError(f"{OP}: indices must list at most {groups} group ids, each below {groups}")
    n = a.shape[0]
    b_sel = torch.stack([b[d if b.shape[0] > 1 else 0, :, ids[d]] for d in range(n)])  # [n, 1, num_active, K, N]
    if is_a_sparse:
        a_x, b_x = a, b_sel
    else:
        a_x, b_x = _pairs(a, b_sel, False, True)
    batch = broadcast_shapes(a_x.shape[:-2], b_x.shape[:-2])
    out = _products(a_x, b_x, torch.ones(batch, dtype=torch.bool, device=a.device), precision)
    if bias is not None:
        bias_rows = compute_dtype(data(bias))  # [n, E, rows, N]: row 0 of group e's tile row is its bias
        bias_rows = bias_rows.reshape(bias_rows.shape[0], -1, bias_rows.shape[-2], bias_rows.shape[-1])[:, :, 0, :]
        sel = torch.stack([bias_rows[d if bias_rows.shape[0] > 1 else 0, ids[d]] for d in range(n)])  # [n, num_active, N]
        out = out + sel.reshape(n, *([1] * (out.dim() - 4)), sel.shape[1], 1, sel.shape[2])
    return out


__all__ = ["sparse_matmul"]
