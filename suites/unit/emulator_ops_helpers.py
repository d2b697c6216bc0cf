"""Shared helpers of the emulator op tests: open meshes, move torch tensors on and off them."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from deepseek_tt.backend import emulator as ttnn

MESHES = [(1, 1), (4, 8)]


@contextmanager
def open_mesh(rows: int, cols: int) -> Iterator[ttnn.MeshDevice]:
    device = ttnn.open_mesh_device(ttnn.MeshShape(rows, cols))
    try:
        yield device
    finally:
        ttnn.close_mesh_device(device)


def replicated(device, t: torch.Tensor, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT):
    return ttnn.from_torch(t, dtype=dtype, layout=layout, device=device, mesh_mapper=ttnn.ReplicateTensorToMesh(device))


def sharded(device, t: torch.Tensor, dim: int, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT):
    return ttnn.from_torch(t, dtype=dtype, layout=layout, device=device, mesh_mapper=ttnn.ShardTensorToMesh(device, dim=dim))


def sharded_2d(device, t: torch.Tensor, dims, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT):
    mapper = ttnn.ShardTensor2dMesh(device, dims=dims, mesh_shape=tuple(device.shape))
    return ttnn.from_torch(t, dtype=dtype, layout=layout, device=device, mesh_mapper=mapper)


def shards(t) -> torch.Tensor:
    """The stacked per-device values ``[num_devices, *shape]`` as fp32."""
    return t._data.float()


def bf16(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16).float()


def pcc(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten().double(), b.flatten().double()]))[0, 1])
