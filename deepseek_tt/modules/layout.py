"""Moving the residual stream between torch and its mesh layout (docs/ARCHITECTURE.md, Parallelization).

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


def residual_to_torch(t: Any, mesh_device: Any, *, decode: bool) -> torch.Tensor:
    """Inverse of :func:`residual_to_device` (float32): ``[T, hidden]`` or ``[R * U, hidden]``.

    In prefill the rows are replicas; row 0 is returned.
    """
    rows, cols = mesh_shape(mesh_device)
    full = ttnn.to_torch(t, mesh_composer=ttnn.ConcatMesh2dToTensor(mesh_device, mesh_shape=(rows, cols), dims=(0, 3)))
    full = full.to(torch.float32)  # [R, 1, T, hidden]
    if decode:
        return full.reshape(rows * full.shape[-2], full.shape[-1])
    return full[0].reshape(full.shape[-2], full.shape[-1])
