"""Rotary embedding, prefill attention, (paged) MLA decode and KV-cache updates on the emulator,
against plain torch computations."""

from __future__ import annotations

import pytest
import torch

from deepseek_tt.backend import emulator as ttnn
from suites.unit.emulator_ops_helpers import MESHES, bf16, open_mesh, replicated, shards

pytestmark = pytest.mark.unit


def _trans_mat() -> torch.Tensor:
    t = torch.zeros(1, 1, 32, 32)
    t[..., torch.arange(0, 32, 2), torch.arange(1, 32, 2)] = 1
    t[..., torch.arange(1, 32, 2), torch.arange(0, 32, 2)] = -1
    return t


def _interleaved_rope(x: torch.Tensor, positions: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rotated x as DeepSeek's complex pairs, cos, sin duplicated per pair)."""
    freqs = 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim))
    angles = positions.float().unsqueeze(-1) * freqs  # [..., dim/2]
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2).contiguous())
    rotated = torch.view_as_real(pairs * torch.polar(torch.ones_like(angles), angles)).flatten(-2)
    return rotated, torch.cos(angles).repeat_interleave(2, -1), torch.sin(angles).repeat_interleave(2, -1)


@pytest.mark.parametrize("mesh", MESHES)
def test_rotary_embedding_llama_prefill_and_decode(mesh):
    torch.manual_seed(0)
    heads, seq, dim = 4, 64, 64
    x = torch.randn(1, heads, seq, dim)
    want, cos, sin = _interleaved_rope(bf16(x), torch.arange(seq).view(1, 1, seq), dim)
    batch = 8
    xd = torch.randn(1, batch, heads, dim)
    pos = torch.randint(0, 500, (batch,))
    want_d, cos_d, sin_d = _interleaved_rope(bf16(xd), pos.view(1, batch, 1), dim)
    with open_mesh(*mesh) as device:
        tm = replicated(device, _trans_mat())
        out = ttnn.experimental.rotary_embedding_llama(
            replicated(device, x), replicated(device, cos.reshape(1, 1, seq, dim)),
            replicated(device, sin.reshape(1, 1, seq, dim)), tm, is_decode_mode=False)
        out_d = ttnn.experimental.rotary_embedding_llama(
            replicated(device, xd), replicated(device, cos_d.expand(1, batch, 32, dim).contiguous()),
            replicated(device, sin_d.expand(1, batch, 32, dim).contiguous()), tm, is_decode_mode=True)
        got, got_d = shards(out)[-1], shards(out_d)[-1]
    torch.testing.assert_close(got, bf16(want), atol=0.03, rtol=0.02)
    torch.testing.assert_close(got_d, bf16(want_d), atol=0.03, rtol=0.02)


@pytest.mark.parametrize("mesh", MESHES)
def test_causal_sdpa_and_flash_mla_prefill(mesh):
    torch.manual_seed(1)
    q, k, v = torch.randn(1, 4, 96, 64), torch.randn(1, 2, 96, 64), torch.randn(1, 2, 96, 32)
    kv = torch.randn(1, 1, 96, 64)
    with open_mesh(*mesh) as device:
        out = ttnn.transformer.scaled_dot_product_attention(
            replicated(device, q), replicated(device, k), replicated(device, v), is_causal=True, scale=0.2)
        mla = ttnn.transformer.flash_mla_prefill(replicated(device, q), replicated(device, kv), head_dim_v=48, scale=0.2)
        assert out.shape == (1, 4, 96, 32) and mla.shape == (1, 4, 96, 48)
        got, got_mla = shards(out)[0], shards(mla)[0]
    ref = torch.nn.functional.scaled_dot_product_attention(
        bf16(q), bf16(k).repeat_interleave(2, 1), bf16(v).repeat_interleave(2, 1), is_causal=True, scale=0.2)
    torch.testing.assert_close(got, bf16(ref), atol=0.02, rtol=0.02)
    ref_mla = torch.nn.functional.scaled_dot_product_attention(
        bf16(q), bf16(kv).expand(1, 4, 96, 64), bf16(kv)[..., :48].expand(1, 4, 96, 48), is_causal=True, scale=0.2)
    torch.testing.assert_close(got_mla, bf16(ref_mla), atol=0.02, rtol=0.02)


@pytest.mark.parametrize("mesh", MESHES)
def test_paged_cache_fill_update_and_mla_decode(mesh):
    torch.manual_seed(2)
    users, block, blocks_per_user, dim, dv, heads = 4, 32, 4, 64, 48, 8
    num_blocks = users * blocks_per_user
    page_table = torch.randperm(num_blocks).reshape(users, blocks_per_user).int()
    prompts = [40, 70, 5, 100]
    seqs = [torch.randn(1, 1, p, dim) for p in prompts]
    new_rows = torch.randn(1, users, 1, dim)
    positions = torch.tensor([40, 70, -1, 100], dtype=torch.int32)  # user 2 is an empty slot
    q = torch.randn(1, users, heads, dim)
    with open_mesh(*mesh) as device:
        cache = ttnn.zeros((num_blocks, 1, block, dim), dtype=ttnn.bfloat8_b, layout=ttnn.TILE_LAYOUT, device=device)
        tpt = replicated(device, page_table, dtype=ttnn.int32, layout=ttnn.ROW_MAJOR_LAYOUT)
        for user, seq in enumerate(seqs):
            with pytest.raises(RuntimeError, match="must match cache tensor dtype"):
                ttnn.experimental.paged_fill_cache(cache, replicated(device, seq), tpt, batch_idx=user)
            ttnn.experimental.paged_fill_cache(cache, replicated(device, seq, dtype=ttnn.bfloat8_b), tpt, batch_idx=user)
        tpos = replicated(device, positions, dtype=ttnn.int32, layout=ttnn.ROW_MAJOR_LAYOUT)
        ttnn.experimental.paged_update_cache(cache, replicated(device, new_rows), update_idxs_tensor=tpos, page_table=tpt)
        out = ttnn.transformer.paged_flash_multi_latent_attention_decode(
            replicated(device, q), cache, head_dim_v=dv, page_table_tensor=tpt, cur_pos_tensor=tpos, scale=0.125)
        assert out.shape == (1, users, heads, dv)
        got = shards(out)[-1]
        stored = shards(cache)[-1]
    # logical cache per user: the prompt, then the decoded row at `position`
    for user in range(users):
        p = int(positions[user])
        if p < 0:
            assert not got[0, user].any()
            continue
        rows = torch.cat([bf16(seqs[user][0, 0]), bf16(new_rows[0, user])], dim=0)[: p + 1]
        logical = stored[page_table[user].long()].reshape(-1, dim)[: p + 1]
        torch.testing.assert_close(logical, rows, atol=0.08, rtol=0.02)  # bfp8 storage
        scores = (bf16(q[0, user]) @ logical.T) * 0.125
        ref = torch.softmax(scores, dim=-1) @ logical[:, :dv]
        torch.testing.assert_close(got[0, user], bf16(ref), atol=0.02, rtol=0.02)


def test_update_cache_rejects_low_precision_input_and_respects_mesh_coords():
    with open_mesh(2, 4) as device:
        cache = ttnn.zeros((4, 1, 32, 32), dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=device)
        rows = torch.ones(1, 1, 1, 32)
        with pytest.raises(RuntimeError, match="FLOAT32 or BFLOAT16"):
            ttnn.experimental.paged_update_cache(cache, replicated(device, rows, dtype=ttnn.bfloat8_b), update_idxs=[3])
        ttnn.experimental.paged_update_cache(cache, replicated(device, rows), update_idxs=[3],
                                             mesh_coords={ttnn.MeshCoordinate(1, 2)})
        s = shards(cache)
    assert torch.all(s[1 * 4 + 2, 0, 0, 3] == 1) and s[1 * 4 + 2].sum() == 32
    assert not torch.cat([s[:6], s[7:]]).any()


def test_mla_decode_bits_do_not_depend_on_how_the_shared_kv_head_is_spread(monkeypatch):
    """A short latent cache is repeated per query head, a long one multiplied head by head: the same products,
    so the same bits (the model-level bit-identity test sees the short path only)."""
    from deepseek_tt.backend.emulator.ops import attention

    torch.manual_seed(3)
    users, block, blocks_per_user, dim, dv, heads = 3, 32, 4, 96, 64, 16
    page_table = torch.randperm(users * blocks_per_user).reshape(users, blocks_per_user).int()
    positions = torch.tensor([50, -1, 127], dtype=torch.int32)
    outputs = {}
    with open_mesh(1, 2) as device:
        cache = ttnn.from_torch(torch.randn(users * blocks_per_user, 1, block, dim), dtype=ttnn.bfloat8_b,
                                layout=ttnn.TILE_LAYOUT, device=device)
        tpt = replicated(device, page_table, dtype=ttnn.int32, layout=ttnn.ROW_MAJOR_LAYOUT)
        tpos = replicated(device, positions, dtype=ttnn.int32, layout=ttnn.ROW_MAJOR_LAYOUT)
        q = replicated(device, torch.randn(1, users, heads, dim))
        for name, budget in (("repeated", 1 << 40), ("head_by_head", 0)):
            monkeypatch.setattr(attention, "_REPEAT_KV_BYTES", budget)
            assert int(positions.max()) < attention._REPEAT_KV_MAX_LENGTH
            outputs[name] = shards(ttnn.transformer.paged_flash_multi_latent_attention_decode(
                q, cache, head_dim_v=dv, page_table_tensor=tpt, cur_pos_tensor=tpos, scale=dim**-0.5))
    assert outputs["repeated"].abs().sum() > 0
    assert torch.equal(outputs["repeated"], outputs["head_by_head"])
