"""Moving the residual stream between torch and its mesh layout (docs/PARALLELISM.md).

Per device the residual is ``[1, 1, T, hidden / C]`` bfloat16 TILE, hidden split over mesh columns.
Prefill: one user's ``T`` tokens, replicated over rows. Decode: ``R * U`` users, row ``r`` holding users
``r*U .. r*U+U-1`` (``T = U``).
"""

from __future__ import annotations

from typing import Any

import torch

from deepseek_tt.backend import ttnn
from deepseek_tt.modules.base import mesh_shape


def residual_to_device(x: torch.Tensor, mesh_device: Any, *, decode: bool, dtype: Any = None) -> Any:
    """``[T, hidden]`` (prefill) or ``[R * U, hidden]`` (decode) -> the mesh residual layout."""
    rows, cols = mesh_shape(mesh_device)
    if x.dim() != 2:
        raise ValueError(f"residual_to_device: expected [tokens, hidden], got shape {tuple(x.shape)}")
    if decode:
        if x.shape[0] % rows:
            raise ValueError(f"residual_to_device: {x.shape[0]} decode users do not split over {rows} mesh rows")
        stacked, dims = x.reshape(rows, 1, x.shape[0] // rows, x.shape[1]), (0, 3)
    else:
        stacked, dims = x.reshape(1, 1, *x.shape), (None, 3)
    return ttnn.from_torch(
        stacked.contiguous(),
        dtype=dtype if dtype is not None else ttnn.bfloat16,
        layout=ttnn.TILE_LAYOUT,
        device=mesh_device,
        memory_config=ttnn.DRAM_MEMORY_CONFIG,
        mesh_mapper=ttnn.ShardTensor2dMesh(mesh_device, mesh_shape=(rows, cols), dims=dims),
    )


class ReplicaMismatchError(RuntimeError):
    """Mesh rows that must hold the same (replicated) prefill result do not."""


def rows_to_torch(t: Any, mesh_device: Any) -> torch.Tensor:
    """Every mesh row's copy of a per-device ``[1, 1, T, W / C]`` tensor, columns joined: ``[R, 1, T, W]`` float32."""
    rows, cols = mesh_shape(mesh_device)
    full = ttnn.to_torch(t, mesh_composer=ttnn.ConcatMesh2dToTensor(mesh_device, mesh_shape=(rows, cols), dims=(0, 3)))
    return full.to(torch.float32)


def replicated_row(per_row: torch.Tensor, what: str = "prefill output") -> torch.Tensor:
    """Row 0 of ``per_row`` ``[R, ...]`` after checking that every other row equals it bit for bit.

    Prefill runs the same computation on every mesh row, so any difference is a bug on some row (a wrong
    collective, a row-dependent index): reading row 0 alone would hide it. Raises
    :class:`ReplicaMismatchError` naming the first differing row.
    """
    for row in range(1, per_row.shape[0]):
        if not torch.equal(per_row[row], per_row[0]):
            diff = (per_row[row] - per_row[0]).abs().max().item()
            raise ReplicaMismatchError(
                f"{what}: mesh row {row} differs from row 0 (max abs difference {diff:.3g}); prefill rows must be identical"
            )
    return per_row[0]


def residual_to_torch(t: Any, mesh_device: Any, *, decode: bool) -> torch.Tensor:
    """Inverse of :func:`residual_to_device` (float32): ``[T, hidden]`` or ``[R * U, hidden]``.

    In prefill the rows are replicas: every row is checked equal to row 0 (:func:`replicated_row`), and
    row 0 is returned.
    """
    full = rows_to_torch(t, mesh_device)  # [R, 1, T, hidden]
    if decode:
        return full.reshape(full.shape[0] * full.shape[-2], full.shape[-1])
    return replicated_row(full, "prefill residual").reshape(full.shape[-2], full.shape[-1])
