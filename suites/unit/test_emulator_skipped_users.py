"""Decode attention skips users at position -1 without changing the others' values.

The paged MLA decode computes only the users at a position (the emulator's shortcut for empty decode
slots): each active user's output must equal, bit for bit, its output in a batch where every user is
active at the same positions, and the skipped users' outputs must be zero.
"""

from __future__ import annotations

import pytest
import torch

from deepseek_tt.backend import emulator as ttnn
from suites.unit.emulator_ops_helpers import open_mesh, replicated

pytestmark = pytest.mark.unit

USERS, HEADS, DIM, DIM_V, BLOCK, BLOCKS_PER_USER = 8, 4, 64, 32, 32, 4


@pytest.mark.parametrize("active", [[0], [1, 5, 6], []])
def test_skipped_users_leave_active_outputs_unchanged(active) -> None:
    generator = torch.Generator().manual_seed(len(active))
    q = torch.randn(1, USERS, HEADS, DIM, generator=generator)
    cache = torch.randn(USERS * BLOCKS_PER_USER, 1, BLOCK, DIM, generator=generator)
    page_table = torch.randperm(USERS * BLOCKS_PER_USER, generator=generator).reshape(USERS, BLOCKS_PER_USER)
    full_positions = torch.randint(0, BLOCK * BLOCKS_PER_USER, (USERS,), generator=generator)
    positions = torch.full((USERS,), -1)
    positions[active] = full_positions[active]
    with open_mesh(1, 1) as device:
        tq, tk = replicated(device, q), replicated(device, cache)
        tpt = replicated(device, page_table.int(), dtype=ttnn.int32, layout=ttnn.ROW_MAJOR_LAYOUT)

        def run(pos: torch.Tensor) -> torch.Tensor:
            tpos = replicated(device, pos.int(), dtype=ttnn.int32, layout=ttnn.ROW_MAJOR_LAYOUT)
            out = ttnn.transformer.paged_flash_multi_latent_attention_decode(
                tq, tk, head_dim_v=DIM_V, page_table_tensor=tpt, cur_pos_tensor=tpos, scale=DIM**-0.5)
            return ttnn.to_torch(out)

        mixed, everyone = run(positions), run(full_positions)
    assert tuple(mixed.shape) == (1, USERS, HEADS, DIM_V)
    idle = [u for u in range(USERS) if u not in active]
    assert torch.equal(mixed[:, active], everyone[:, active]), "an active user's output changed when others were skipped"
    assert not mixed[:, idle].any(), "a skipped user's output is not zero"
    assert everyone.abs().sum() > 0
