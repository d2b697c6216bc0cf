"""The paged KVPE cache of MLA: page geometry, page table, user placement on the mesh, and host-side
packing / unpacking used to prefill a cache from the reference and to read it back in tests.

Placement (docs/PARALLELISM.md, MLA row): a mesh row serves ``users_per_row`` (U) users; inside the row
column c holds the cache of u = U / C of them. Global user g lives on row ``g // U``, column
``(g % U) // u``, slot ``g % u``. Every device holds ``max_num_blocks`` pages of ``block_size`` tokens
(``[max_num_blocks, 1, block_size, width]``) and the same page table ``[u, blocks_per_user]``: slot s owns
pages ``page_table[s]``, token t of that user sits in page ``page_table[s, t // block_size]``, row
``t % block_size``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from deepseek_tt.backend import ttnn
from deepseek_tt.config.mesh import format_mesh_shape

#: Decode users per mesh row (one tile of rows), as on a Galaxy.
USERS_PER_ROW = 32
#: Tokens per cache page (one tile of rows).
BLOCK_SIZE = 32


@dataclass(frozen=True)
class PagedConfig:
    """Page geometry of one device's KVPE cache."""

    block_size: int
    max_num_blocks: int
    users_per_device: int

    @property
    def blocks_per_user(self) -> int:
        return self.max_num_blocks // self.users_per_device

    @property
    def max_seq_len(self) -> int:
        return self.blocks_per_user * self.block_size


def users_per_row_of(max_batch_size: int | None, mesh_rows: int) -> int:
    """U = B / R (``max_batch_size`` None: ``USERS_PER_ROW``), with a clear error when B does not split over the rows."""
    if max_batch_size is None:
        return USERS_PER_ROW
    if int(max_batch_size) % mesh_rows:
        raise ValueError(f"max_batch_size {max_batch_size} does not split over {mesh_rows} mesh rows")
    return int(max_batch_size) // mesh_rows


def users_per_device(users_per_row: int, mesh_cols: int) -> int:
    """u = U / C, with a clear error when the row's users do not split over the columns."""
    if users_per_row % mesh_cols:
        raise ValueError(f"{users_per_row} users per mesh row do not split over {mesh_cols} mesh columns")
    return users_per_row // mesh_cols


def paged_config_for(
    max_seq_len: int, users_per_row: int = USERS_PER_ROW, mesh_cols: int = 1, block_size: int = BLOCK_SIZE
) -> PagedConfig:
    """Enough pages on each device for its u users to reach ``max_seq_len`` tokens each."""
    if block_size % 32:
        raise ValueError(f"block_size must be a multiple of the tile height 32, got {block_size}")
    if max_seq_len <= 0 or max_seq_len % block_size:
        raise ValueError(f"max_seq_len must be a positive multiple of block_size {block_size}, got {max_seq_len}")
    u = users_per_device(users_per_row, mesh_cols)
    return PagedConfig(block_size=block_size, max_num_blocks=u * (max_seq_len // block_size), users_per_device=u)


def model_paged_config(max_seq_len: int, users_per_row: int = USERS_PER_ROW, mesh_cols: int = 1) -> PagedConfig:
    """The pages a model of ``max_seq_len`` tokens per user allocates on each device (the length rounded up
    to whole pages)."""
    return paged_config_for(-(-int(max_seq_len) // BLOCK_SIZE) * BLOCK_SIZE, users_per_row, mesh_cols)


def user_location(user_id: int, mesh_shape: tuple[int, int], users_per_row: int = USERS_PER_ROW) -> tuple[int, int, int]:
    """``(row, col, slot)`` of global user ``user_id``."""
    rows, cols = (int(d) for d in mesh_shape)
    if not 0 <= user_id < rows * users_per_row:
        raise ValueError(f"user_id {user_id} out of range: a {format_mesh_shape((rows, cols))} mesh serves {rows * users_per_row} users")
    u = users_per_device(users_per_row, cols)
    local = user_id % users_per_row
    return user_id // users_per_row, local // u, local % u


def default_page_table(paged: PagedConfig, seed: int | None = 0) -> torch.Tensor:
    """A ``[u, blocks_per_user]`` int32 page table: a random permutation of the pages (``seed=None``: in order),
    so a test sees pages that are not contiguous."""
    if seed is None:
        pages = torch.arange(paged.max_num_blocks, dtype=torch.int32)
    else:
        pages = torch.randperm(paged.max_num_blocks, generator=torch.Generator().manual_seed(seed)).to(torch.int32)
    return pages.reshape(paged.users_per_device, paged.blocks_per_user)


def create_page_table(paged: PagedConfig, mesh_device: Any, page_table: torch.Tensor | None = None) -> Any:
    """The page table on every device (replicated, int32, ROW_MAJOR)."""
    if page_table is None:
        page_table = default_page_table(paged)
    expected = (paged.users_per_device, paged.blocks_per_user)
    if tuple(page_table.shape) != expected:
        raise ValueError(f"page table has shape {tuple(page_table.shape)}, expected {expected} (users per device, blocks per user)")
    return _int32_to_mesh(page_table, mesh_device, ttnn.ReplicateTensorToMesh(mesh_device))


def decode_positions_tensor(
    positions: torch.Tensor, mesh_device: Any, users_per_row: int = USERS_PER_ROW, *, on_device: bool = True
) -> Any:
    """Global decode positions ``[rows * U]`` as an int32 ``[u]`` tensor per device: each device gets its
    own users' positions (device ``r * C + c`` holds users ``r*U + c*u ...``). ``-1`` marks an empty slot.
    ``on_device=False``: a host tensor (for ``ttnn.to_device``)."""
    rows, cols = (int(d) for d in tuple(mesh_device.shape))
    positions = torch.as_tensor(positions).reshape(-1)
    if positions.numel() != rows * users_per_row:
        raise ValueError(
            f"decode positions: expected {rows} rows x {users_per_row} users = {rows * users_per_row} entries, "
            f"got {positions.numel()}"
        )
    users_per_device(users_per_row, cols)
    return _int32_to_mesh(positions, mesh_device, ttnn.ShardTensorToMesh(mesh_device, dim=0), on_device=on_device)


def _int32_to_mesh(tensor: torch.Tensor, mesh_device: Any, mesh_mapper: Any, *, on_device: bool = True) -> Any:
    """An int32 ROW_MAJOR DRAM tensor on the mesh, placed by ``mesh_mapper`` (page tables, positions), or
    the host tensor that ``ttnn.to_device`` places so (``on_device=False``)."""
    placement = {"device": mesh_device, "memory_config": ttnn.DRAM_MEMORY_CONFIG} if on_device else {}
    return ttnn.from_torch(tensor.to(torch.int32), dtype=ttnn.int32, layout=ttnn.ROW_MAJOR_LAYOUT, mesh_mapper=mesh_mapper, **placement)


# --- host-side packing (tests, reference prefill) -------------------------------------------------


def pack_user_caches(
    user_kvpe: list[torch.Tensor | None],
    paged: PagedConfig,
    page_table: torch.Tensor,
    mesh_shape: tuple[int, int],
    users_per_row: int = USERS_PER_ROW,
) -> torch.Tensor:
    """Per-user KVPE rows (``[len_g, width]`` or ``None``) -> all devices' caches stacked on dim 0,
    ``[num_devices * max_num_blocks, 1, block_size, width]`` (device-major, row-major device order),
    ready for ``ttnn.ShardTensorToMesh(mesh_device, dim=0)``."""
    rows, cols = (int(d) for d in mesh_shape)
    if len(user_kvpe) != rows * users_per_row:
        raise ValueError(f"expected {rows * users_per_row} users, got {len(user_kvpe)}")
    width = next(t.shape[-1] for t in user_kvpe if t is not None)
    caches = torch.zeros(rows * cols, paged.max_num_blocks, 1, paged.block_size, width)
    for user, kvpe in enumerate(user_kvpe):
        if kvpe is None or kvpe.shape[0] == 0:
            continue
        if kvpe.shape[0] > paged.max_seq_len:
            raise ValueError(f"user {user}: {kvpe.shape[0]} tokens exceed the cache's {paged.max_seq_len} per user")
        row, col, slot = user_location(user, mesh_shape, users_per_row)
        for t0 in range(0, kvpe.shape[0], paged.block_size):
            block = kvpe[t0 : t0 + paged.block_size]
            page = int(page_table[slot, t0 // paged.block_size])
            caches[row * cols + col, page, 0, : block.shape[0]] = block
    return caches.reshape(rows * cols * paged.max_num_blocks, 1, paged.block_size, width)


def unpack_user_cache(
    caches: torch.Tensor,
    user_id: int,
    length: int,
    paged: PagedConfig,
    page_table: torch.Tensor,
    mesh_shape: tuple[int, int],
    users_per_row: int = USERS_PER_ROW,
) -> torch.Tensor:
    """The first ``length`` KVPE rows ``[length, width]`` of one user from stacked device caches
    (the layout :func:`pack_user_caches` writes and ``ConcatMeshToTensor(dim=0)`` reads back)."""
    rows, cols = (int(d) for d in mesh_shape)
    row, col, slot = user_location(user_id, mesh_shape, users_per_row)
    device_cache = caches.reshape(rows * cols, paged.max_num_blocks, paged.block_size, -1)[row * cols + col]
    pages = page_table[slot, : (length + paged.block_size - 1) // paged.block_size].long()
    return device_cache[pages].reshape(-1, device_cache.shape[-1])[:length]


__all__ = [
    "BLOCK_SIZE",
    "USERS_PER_ROW",
    "PagedConfig",
    "create_page_table",
    "decode_positions_tensor",
    "default_page_table",
    "model_paged_config",
    "pack_user_caches",
    "paged_config_for",
    "unpack_user_cache",
    "user_location",
    "users_per_device",
    "users_per_row_of",
]
