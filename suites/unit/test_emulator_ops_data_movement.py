"""Data-movement ops and creation on the emulator against torch, and their refusals."""

from __future__ import annotations

import pytest
import torch

from deepseek_tt.backend import emulator as ttnn
from suites.unit.emulator_ops_helpers import MESHES, bf16, open_mesh, replicated, sharded, shards

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("mesh", MESHES)
def test_shape_ops_per_device(mesh):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 32, 64)
    with open_mesh(*mesh) as device:
        n = device.get_num_devices()
        tx = sharded(device, torch.cat([x] * n, dim=0), dim=0)  # every device holds x
        got = {
            "reshape": ttnn.reshape(tx, (2, 4, 64, 32)),
            "reshape_minus1": ttnn.reshape(tx, (-1, 64)),
            "permute": ttnn.permute(tx, (0, 2, 1, 3)),
            "transpose": ttnn.transpose(tx, 1, -1),
            "concat": ttnn.concat([tx, tx], dim=-1),
            "slice": ttnn.slice(tx, [0, 1, 0, 16], [2, 3, 32, 48]),
            "slice_step": ttnn.slice(tx, [0, 0, 0, 0], [2, 4, 32, 64], [1, 2, 1, 2]),
            "pad": ttnn.pad(tx, [(0, 0), (0, 0), (0, 32), (0, 0)], 1.5),
            "repeat": ttnn.repeat(tx, (1, 2, 1, 1)),
            "repeat_size1": ttnn.repeat(ttnn.slice(tx, [0, 0, 0, 0], [1, 1, 32, 64]), (3, 1, 1, 2)),
            "repeat_interleave": ttnn.repeat_interleave(tx, 2, dim=1),
            "squeeze_unsqueeze": ttnn.squeeze(ttnn.unsqueeze(tx, 0), 0),
        }
        read = ttnn.to_torch(got["repeat_size1"], mesh_composer=ttnn.ConcatMeshToTensor(device, dim=0))
        doubled = ttnn.add(got["repeat_size1"], got["repeat_size1"])
    xb = bf16(x)
    want = {
        "reshape": xb.reshape(2, 4, 64, 32), "reshape_minus1": xb.reshape(-1, 64), "permute": xb.permute(0, 2, 1, 3),
        "transpose": xb.transpose(1, -1), "concat": torch.cat([xb, xb], dim=-1), "slice": xb[0:2, 1:3, 0:32, 16:48],
        "slice_step": xb[:, ::2, :, ::2], "pad": torch.nn.functional.pad(xb, (0, 0, 0, 32), value=1.5),
        "repeat": xb.repeat(1, 2, 1, 1), "repeat_size1": xb[:1, :1].repeat(3, 1, 1, 2), "repeat_interleave": xb.repeat_interleave(2, dim=1), "squeeze_unsqueeze": xb,
    }
    for name, t in got.items():
        assert tuple(t.shape) == tuple(want[name].shape), name
        for shard in shards(t):
            assert torch.equal(shard, want[name]), name
    # Copies of size-1 dims are a broadcast view inside the emulator; what a caller reads back is its own.
    read += 1
    assert torch.equal(shards(got["repeat_size1"])[0], want["repeat_size1"])
    assert torch.equal(shards(doubled)[0], (want["repeat_size1"].float() * 2).bfloat16())


def test_typecast_layout_memory_config_clone():
    torch.manual_seed(1)
    x = torch.randn(1, 1, 32, 64)
    with open_mesh(1, 1) as device:
        tx = replicated(device, x, dtype=ttnn.float32)
        b8 = ttnn.typecast(tx, ttnn.bfloat8_b)
        assert b8.dtype == ttnn.bfloat8_b and not torch.equal(shards(b8), shards(tx))
        rm = ttnn.to_layout(replicated(device, x), ttnn.ROW_MAJOR_LAYOUT)
        assert rm.layout == ttnn.ROW_MAJOR_LAYOUT and torch.equal(shards(rm)[0], bf16(x))
        with pytest.raises(RuntimeError, match="block-float"):
            ttnn.to_layout(b8, ttnn.ROW_MAJOR_LAYOUT)
        l1 = ttnn.to_memory_config(tx, ttnn.L1_MEMORY_CONFIG)
        assert l1.memory_config() == ttnn.L1_MEMORY_CONFIG and torch.equal(shards(l1), shards(tx))
        c = ttnn.clone(tx, dtype=ttnn.bfloat16)
        assert c.dtype == ttnn.bfloat16 and torch.equal(shards(c)[0], bf16(x))
        ints = ttnn.typecast(replicated(device, torch.tensor([[1.7, -2.2, 3.0]]), layout=ttnn.ROW_MAJOR_LAYOUT), ttnn.int32)
        assert shards(ints)[0].tolist() == [[1.0, -2.0, 3.0]]


def test_slice_and_reshape_refuse_bad_arguments():
    with open_mesh(1, 1) as device:
        tx = replicated(device, torch.randn(1, 1, 32, 64))
        with pytest.raises(RuntimeError, match="out of range"):
            ttnn.slice(tx, [0, 0, 0, 0], [1, 1, 32, 96])
        with pytest.raises(RuntimeError, match="elements"):
            ttnn.reshape(tx, (1, 1, 32, 32))
        with pytest.raises(RuntimeError, match="same dtype and layout"):
            ttnn.concat([tx, replicated(device, torch.randn(1, 1, 32, 64), dtype=ttnn.float32)], dim=-1)


def test_gather_scatter_embedding():
    torch.manual_seed(2)
    x = torch.randn(1, 1, 32, 64)
    idx = torch.randint(0, 64, (1, 1, 32, 8))
    weight = torch.randn(100, 64)
    ids = torch.randint(0, 100, (1, 32))
    with open_mesh(4, 8) as device:
        tx = replicated(device, x)
        tidx = replicated(device, idx, dtype=ttnn.uint32, layout=ttnn.ROW_MAJOR_LAYOUT)
        g = shards(ttnn.gather(tx, -1, tidx))
        src = replicated(device, torch.ones(1, 1, 32, 8))
        s = shards(ttnn.scatter(replicated(device, torch.zeros(1, 1, 32, 64)), -1, tidx, src, reduce="add"))
        # vocabulary sharded over the 8 columns of each row would not be an embedding; replicate it.
        emb = ttnn.embedding(replicated(device, ids, dtype=ttnn.uint32, layout=ttnn.ROW_MAJOR_LAYOUT),
                             replicated(device, weight, layout=ttnn.ROW_MAJOR_LAYOUT), layout=ttnn.TILE_LAYOUT)
        assert emb.shape == (1, 32, 64) and emb.layout == ttnn.TILE_LAYOUT
        with pytest.raises(RuntimeError, match="out of range"):
            ttnn.embedding(replicated(device, torch.tensor([[100]]), dtype=ttnn.uint32, layout=ttnn.ROW_MAJOR_LAYOUT),
                           replicated(device, weight, layout=ttnn.ROW_MAJOR_LAYOUT))
    assert torch.equal(g[5], torch.gather(bf16(x), -1, idx))
    assert torch.equal(s[0], torch.zeros(1, 1, 32, 64).scatter_add(-1, idx, torch.ones(1, 1, 32, 8)))
    assert torch.equal(shards(emb)[31], bf16(weight)[ids])


@pytest.mark.parametrize("mesh", MESHES)
def test_creation_ops(mesh):
    with open_mesh(*mesh) as device:
        z = ttnn.zeros((2, 32, 64), dtype=ttnn.bfloat8_b, layout=ttnn.TILE_LAYOUT, device=device)
        f = ttnn.full((1, 8), 3.25, dtype=ttnn.float32, device=device)
        a = ttnn.arange(0, 10, 2, dtype=ttnn.int32, device=device)
        ol = ttnn.ones_like(z)
        n = device.get_num_devices()
    assert shards(z).shape == (n, 2, 32, 64) and not shards(z).any()
    assert torch.all(shards(f) == 3.25) and shards(a)[0].tolist() == [0, 2, 4, 6, 8]
    assert ol.dtype == ttnn.bfloat8_b and torch.all(shards(ol) == 1)
