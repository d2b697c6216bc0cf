"""Paged KVPE cache geometry and host packing (deepseek_tt.modules.kv_cache)."""

from __future__ import annotations

import pytest
import torch

from deepseek_tt.modules import kv_cache

pytestmark = [pytest.mark.unit, pytest.mark.quick]


def test_user_location_follows_the_contract() -> None:
    # 4x8 mesh, 32 users per row, 4 per device: user 37 = row 1, local 5 -> column 1, slot 1.
    assert kv_cache.user_location(37, (4, 8)) == (1, 1, 1)
    assert kv_cache.user_location(0, (4, 8)) == (0, 0, 0)
    assert kv_cache.user_location(127, (4, 8)) == (3, 7, 3)
    assert kv_cache.user_location(31, (1, 1)) == (0, 0, 31)
    with pytest.raises(ValueError, match="user_id 128 out of range"):
        kv_cache.user_location(128, (4, 8))


def test_paged_config_sizes_pages_per_device() -> None:
    paged = kv_cache.paged_config_for(256, users_per_row=32, mesh_cols=8)
    assert (paged.users_per_device, paged.blocks_per_user, paged.max_num_blocks, paged.max_seq_len) == (4, 8, 32, 256)
    with pytest.raises(ValueError, match="multiple of block_size"):
        kv_cache.paged_config_for(100)
    with pytest.raises(ValueError, match="do not split over 3 mesh columns"):
        kv_cache.paged_config_for(64, mesh_cols=3)


def test_default_page_table_is_a_permutation_of_all_pages() -> None:
    paged = kv_cache.paged_config_for(128, mesh_cols=8)
    table = kv_cache.default_page_table(paged)
    assert table.shape == (4, 4) and table.dtype == torch.int32
    assert sorted(table.flatten().tolist()) == list(range(paged.max_num_blocks))
    assert not torch.equal(table.flatten(), torch.arange(paged.max_num_blocks, dtype=torch.int32))


@pytest.mark.parametrize("mesh", [(1, 1), (4, 8), (2, 4)])
def test_pack_then_unpack_returns_every_user(mesh: tuple[int, int]) -> None:
    rows, cols = mesh
    paged = kv_cache.paged_config_for(96, mesh_cols=cols)
    table = kv_cache.default_page_table(paged, seed=3)
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(0, 97, (rows * 32,), generator=generator).tolist()
    users = [torch.randn(n, 8, generator=generator) if n else None for n in lengths]
    packed = kv_cache.pack_user_caches(users, paged, table, mesh)
    assert packed.shape == (rows * cols * paged.max_num_blocks, 1, 32, 8)
    for user, data in enumerate(users):
        back = kv_cache.unpack_user_cache(packed, user, lengths[user], paged, table, mesh)
        assert torch.equal(back, data if data is not None else torch.zeros(0, 8))
    # Nothing else was written: the total count of non-zero rows equals the tokens packed.
    assert int((packed.abs().sum(-1) > 0).sum()) == sum(lengths)


def test_pack_rejects_a_user_longer_than_its_pages() -> None:
    paged = kv_cache.paged_config_for(64)
    users = [None] * 32
    users[3] = torch.ones(65, 4)
    with pytest.raises(ValueError, match="user 3: 65 tokens exceed"):
        kv_cache.pack_user_caches(users, paged, kv_cache.default_page_table(paged), (1, 1))
