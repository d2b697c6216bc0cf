"""Collectives and the MoE all-to-all on a 4x8 mesh, checked against the same computation done on the
gathered per-device tensors."""

from __future__ import annotations

import pytest
import torch

from deepseek_tt.backend import emulator as ttnn
from suites.unit.emulator_ops_helpers import bf16, open_mesh, sharded, sharded_2d, shards

pytestmark = pytest.mark.unit
ROWS, COLS = 4, 8


def _per_device(device, dtype=ttnn.bfloat16, shape=(1, 1, 32, 64), seed=0):
    torch.manual_seed(seed)
    x = torch.randn(ROWS * COLS, *shape[1:])
    return x, sharded(device, x, dim=0, dtype=dtype)


def _group(i: int, axis):
    r, c = divmod(i, COLS)
    if axis == 1:
        return [r * COLS + j for j in range(COLS)], c
    if axis == 0:
        return [j * COLS + c for j in range(ROWS)], r
    return list(range(ROWS * COLS)), i


@pytest.mark.parametrize("axis", [0, 1, None])
def test_all_gather_along_cluster_axis(axis):
    with open_mesh(ROWS, COLS) as device:
        x, tx = _per_device(device)
        out = shards(ttnn.all_gather(tx, dim=-1, cluster_axis=axis))
    size = {0: ROWS, 1: COLS, None: ROWS * COLS}[axis]
    assert out.shape == (ROWS * COLS, 1, 1, 32, 64 * size)
    for i in range(ROWS * COLS):
        members, _ = _group(i, axis)
        assert torch.equal(out[i], torch.cat([bf16(x[j : j + 1]) for j in members], dim=-1))


def test_all_gather_refuses_an_axis_of_one_device():
    with open_mesh(1, 8) as device:
        tx = sharded(device, torch.randn(8, 1, 32, 32), dim=0)
        with pytest.raises(RuntimeError, match="num_devices > 1"):
            ttnn.all_gather(tx, dim=-1, cluster_axis=0)
        assert ttnn.all_gather(tx, dim=-1, cluster_axis=1).shape == (1, 1, 32, 256)


@pytest.mark.parametrize("axis", [0, 1])
def test_reduce_scatter_and_all_reduce(axis):
    with open_mesh(ROWS, COLS) as device:
        x, tx = _per_device(device, dtype=ttnn.float32, shape=(1, 1, 32, 256), seed=1)
        rs = shards(ttnn.reduce_scatter(tx, dim=-1, cluster_axis=axis))
        ar = shards(ttnn.all_reduce(tx, cluster_axis=axis))
        _, txb = _per_device(device, dtype=ttnn.bfloat16, shape=(1, 1, 32, 256), seed=1)
        rs_bf16 = shards(ttnn.reduce_scatter(txb, dim=-1, cluster_axis=axis))
    size = COLS if axis == 1 else ROWS
    for i in range(ROWS * COLS):
        members, pos = _group(i, axis)
        total = x[members].sum(dim=0, keepdim=True)
        torch.testing.assert_close(ar[i], total, atol=1e-5, rtol=1e-5)
        chunk = total.chunk(size, dim=-1)[pos]
        torch.testing.assert_close(rs[i], chunk, atol=1e-5, rtol=1e-5)
        bf16_total = bf16(x[members]).sum(dim=0, keepdim=True).chunk(size, dim=-1)[pos]
        torch.testing.assert_close(rs_bf16[i], bf16_total, atol=0.1, rtol=0.02)  # bf16 partial sums


def test_point_to_point_mesh_partition_and_all_to_all():
    with open_mesh(ROWS, COLS) as device:
        x, tx = _per_device(device, seed=2)
        p2p = shards(ttnn.point_to_point(tx, ttnn.MeshCoordinate(1, 2), ttnn.MeshCoordinate(3, 7)))
        part = shards(ttnn.mesh_partition(tx, dim=-1, cluster_axis=1))
        a2a = shards(ttnn.experimental.all_to_all_async_generic(tx, in_dim=2, out_dim=3, cluster_axis=1))
    assert torch.equal(p2p[3 * COLS + 7], bf16(x[1 * COLS + 2 : 1 * COLS + 3]))
    for i in range(ROWS * COLS):
        members, pos = _group(i, 1)
        assert torch.equal(part[i], bf16(x[i : i + 1]).chunk(COLS, dim=-1)[pos])
        expected = torch.cat([bf16(x[j : j + 1]).chunk(COLS, dim=-1)[pos] for j in members], dim=2)
        assert torch.equal(a2a[i], expected)


def test_moe_dispatch_then_combine_routes_every_token_once():
    torch.manual_seed(3)
    experts, k, hidden, batch = 64, 4, 32, 8  # 2 experts per device; batch sharded over the 4 rows
    n = ROWS * COLS
    tokens = torch.randn(batch, 1, 1, hidden)
    ids = torch.stack([torch.randperm(experts)[:k] for _ in range(batch)]).reshape(batch, 1, 1, k)
    mapping = torch.zeros(1, 1, experts, n)
    mapping[0, 0, torch.arange(experts), torch.arange(experts) // (experts // n)] = 1
    with open_mesh(ROWS, COLS) as device:
        rm = ttnn.ROW_MAJOR_LAYOUT
        t_tokens = sharded_2d(device, tokens, dims=(0, None), layout=rm)
        t_ids = sharded_2d(device, ids, dims=(0, None), dtype=ttnn.uint16, layout=rm)
        t_map = ttnn.from_torch(mapping, dtype=ttnn.uint16, layout=rm, device=device,
                                mesh_mapper=ttnn.ReplicateTensorToMesh(device))
        dispatched, metadata = ttnn.all_to_all_dispatch(t_tokens, t_ids, t_map, cluster_axis=0)
        assert dispatched.shape == (1, batch, 1, hidden) and metadata.shape == (1, batch, 1, k)
        d = shards(dispatched)  # [n, 1, batch, 1, hidden]
        for dev in range(n):
            mine = ((ids.reshape(batch, k) // (experts // n)) == dev).any(dim=1)
            assert torch.equal(d[dev, 0, mine], bf16(tokens[mine, 0]))
            assert not d[dev, 0, ~mine].any()
        assert torch.equal(shards(metadata)[5, 0].long(), ids.reshape(batch, 1, k))
        # each device's experts scale the tokens they received by (global expert id + 1)
        scale = (torch.arange(experts) + 1.0).reshape(n, experts // n, 1, 1, 1)
        expert_out = (d[:, 0].unsqueeze(1) * scale).reshape(experts, batch, 1, hidden)
        t_expert_out = sharded(device, expert_out, dim=0, layout=rm)
        combined = ttnn.all_to_all_combine(t_expert_out, metadata, t_map, cluster_axis=0)
        assert combined.shape == (k, batch // ROWS, 1, hidden)
        c = shards(combined).reshape(ROWS, COLS, k, batch // ROWS, 1, hidden)
        preset = ttnn.full((k, batch // ROWS, 1, hidden), 7.0, layout=rm, device=device)
        into = ttnn.all_to_all_combine(t_expert_out, metadata, t_map, cluster_axis=0, output_tensor=preset)
        assert into is preset
        kept = shards(into).reshape(ROWS, COLS, k, batch // ROWS, 1, hidden)
        assert torch.equal(torch.where(c != 0, c, torch.full_like(c, 7.0)), kept)
    per_row = c.sum(dim=1)  # the experts of a token live in different columns: one non-zero per slot
    for row in range(ROWS):
        for b in range(batch // ROWS):
            token = row * (batch // ROWS) + b
            for slot in range(k):
                e = int(ids[token, 0, 0, slot])
                assert torch.equal(per_row[row, slot, b, 0], bf16(bf16(tokens[token, 0, 0]) * (e + 1)))


def test_moe_combine_local_reduce_uses_the_first_slot_of_each_device():
    torch.manual_seed(4)
    experts, k, hidden, batch = 64, 4, 32, 4  # two experts per device; dispatch along the 4 rows
    n = ROWS * COLS
    ids = torch.stack([torch.randperm(experts)[:k] for _ in range(batch)]).reshape(batch, 1, 1, k)
    ids[0, 0, 0, 2] = ids[0, 0, 0, 0] ^ 1  # token 0: slots 0 and 2 on the same device
    mapping = torch.zeros(1, 1, experts, n)
    mapping[0, 0, torch.arange(experts), torch.arange(experts) // 2] = 1
    with open_mesh(ROWS, COLS) as device:
        rm = ttnn.ROW_MAJOR_LAYOUT
        t_ids = sharded_2d(device, ids, dims=(0, None), dtype=ttnn.uint16, layout=rm)
        t_map = ttnn.from_torch(mapping, dtype=ttnn.uint16, layout=rm, device=device,
                                mesh_mapper=ttnn.ReplicateTensorToMesh(device))
        tokens = sharded_2d(device, torch.randn(batch, 1, 1, hidden), dims=(0, None), layout=rm)
        _, metadata = ttnn.all_to_all_dispatch(tokens, t_ids, t_map, cluster_axis=0)
        reduced = (torch.arange(n, dtype=torch.float32) + 1).reshape(n, 1, 1, 1).expand(n, batch, 1, hidden)
        out = ttnn.all_to_all_combine(sharded(device, reduced.contiguous(), dim=0, layout=rm), metadata, t_map,
                                      cluster_axis=0, local_reduce=True)
        c = shards(out).reshape(ROWS, COLS, k, batch // ROWS, 1, hidden)
    checked_duplicate = False
    for row in range(ROWS):
        for col in range(COLS):
            for b in range(batch // ROWS):
                token = row * (batch // ROWS) + b
                seen = set()
                for slot in range(k):
                    holder = int(ids[token, 0, 0, slot]) // 2  # device index of the slot's expert
                    in_column = holder % COLS == col
                    want = float(holder + 1) if in_column and holder not in seen else 0.0
                    checked_duplicate |= in_column and holder in seen
                    seen.add(holder)
                    assert torch.all(c[row, col, slot, b] == want), (row, col, token, slot)
    assert checked_duplicate
