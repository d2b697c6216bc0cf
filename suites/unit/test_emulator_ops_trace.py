"""Trace capture / replay on the emulator: replay equals eager execution and writes into the captured
tensors; host traffic inside a capture fails as it would on a device."""

from __future__ import annotations

import pytest
import torch

from deepseek_tt.backend import emulator as ttnn
from suites.unit.emulator_ops_helpers import MESHES, open_mesh, replicated, shards

pytestmark = pytest.mark.unit


def _step(x, w, cache, pos):
    y = ttnn.linear(x, w)
    y = ttnn.add(y, 1.0, input_tensor_a_activations=[ttnn.UnaryOpType.SILU])
    rows = ttnn.reshape(ttnn.slice(y, [0, 0, 0, 0], [1, 1, 4, 32]), (1, 4, 1, 32))
    ttnn.experimental.paged_update_cache(cache, rows, update_idxs_tensor=pos)
    return ttnn.softmax(y, dim=-1)


@pytest.mark.parametrize("mesh", MESHES)
def test_replay_matches_eager_and_writes_into_captured_tensors(mesh):
    torch.manual_seed(0)
    x0, x1, w = torch.randn(1, 1, 32, 64), torch.randn(1, 1, 32, 64), torch.randn(64, 32)
    with open_mesh(*mesh) as device:
        tw = replicated(device, w, dtype=ttnn.bfloat8_b)
        x_dev = replicated(device, x0)
        pos_dev = replicated(device, torch.tensor([0, 1, 2, 3], dtype=torch.int32), dtype=ttnn.int32,
                             layout=ttnn.ROW_MAJOR_LAYOUT)
        cache = ttnn.zeros((4, 1, 8, 32), dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=device)
        _step(x_dev, tw, cache, pos_dev)  # warm-up ("compile") run, as models do before capturing

        trace_id = ttnn.begin_trace_capture(device, cq_id=0)
        out = _step(x_dev, tw, cache, pos_dev)
        ttnn.end_trace_capture(device, trace_id, cq_id=0)

        ttnn.copy_host_to_device_tensor(ttnn.from_torch(x1, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT), x_dev)
        ttnn.copy_host_to_device_tensor(
            ttnn.from_torch(torch.tensor([4, 5, 6, 7], dtype=torch.int32), dtype=ttnn.int32), pos_dev)
        ttnn.execute_trace(device, trace_id, cq_id=0, blocking=True)
        replayed, replayed_cache = shards(out).clone(), shards(cache).clone()

        eager_cache = ttnn.zeros((4, 1, 8, 32), dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=device)
        eager_pos = replicated(device, torch.tensor([0, 1, 2, 3], dtype=torch.int32), dtype=ttnn.int32,
                               layout=ttnn.ROW_MAJOR_LAYOUT)
        _step(replicated(device, x0), tw, eager_cache, eager_pos)
        _step(replicated(device, x0), tw, eager_cache, eager_pos)
        eager_pos = replicated(device, torch.tensor([4, 5, 6, 7], dtype=torch.int32), dtype=ttnn.int32,
                               layout=ttnn.ROW_MAJOR_LAYOUT)
        eager = _step(replicated(device, x1), tw, eager_cache, eager_pos)
        assert torch.equal(replayed, shards(eager))
        assert torch.equal(replayed_cache, shards(eager_cache))

        ttnn.release_trace(device, trace_id)
        with pytest.raises(ttnn.TraceError, match="released"):
            ttnn.execute_trace(device, trace_id)


def test_host_traffic_inside_a_capture_is_refused():
    with open_mesh(1, 2) as device:
        x = replicated(device, torch.randn(1, 1, 32, 32))
        trace_id = ttnn.begin_trace_capture(device, cq_id=0)
        try:
            y = ttnn.mul(x, 2.0)
            with pytest.raises(ttnn.TraceError, match="inside a trace capture"):
                replicated(device, torch.randn(1, 1, 32, 32))  # from_torch(..., device=...)
            with pytest.raises(ttnn.TraceError, match="inside a trace capture"):
                ttnn.to_torch(y)
            with pytest.raises(ttnn.TraceError, match="inside a trace capture"):
                ttnn.copy_host_to_device_tensor(ttnn.from_torch(torch.randn(1, 1, 32, 32), dtype=ttnn.bfloat16,
                                                                layout=ttnn.TILE_LAYOUT), x)
            host = ttnn.from_torch(torch.zeros(2), dtype=ttnn.float32)  # host-only tensors stay allowed
            assert host.device() is None
        finally:
            ttnn.end_trace_capture(device, trace_id, cq_id=0)
        assert ttnn.to_torch(y, mesh_composer=ttnn.ConcatMeshToTensor(device, dim=0)).shape == (2, 1, 32, 32)
        with pytest.raises(ttnn.TraceError, match="not being captured"):
            ttnn.end_trace_capture(device, trace_id)
