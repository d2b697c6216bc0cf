"""The emulator computes a decode step's active slots only, without changing a bit of them.

While a step's positions are declared (``deepseek_tt.backend.skip_empty_decode_slots``), products whose rows
are the step's slots and the MoE combine compute the active slots only and write NaN into the empty ones.
Each active row must keep the bits the full computation gives it, on one chip and on a 2x2 mesh (each mesh
row its own users), inside a captured trace replayed with other positions, and through the whole model
(where a leak from an empty slot would turn an active user's logits NaN).
"""

from __future__ import annotations

import pytest
import torch

from deepseek_tt.backend import emulator as ttnn
from deepseek_tt.backend.emulator.ops import _decode_slots as decode_slots
from deepseek_tt.backend.emulator.ops._decode_slots import skip_empty_decode_slots
from deepseek_tt.modules.kv_cache import decode_positions_tensor
from deepseek_tt.runtime.tt_model import TtModel
from reference_models.presets import get_preset
from suites.unit.emulator_ops_helpers import open_mesh, replicated, sharded_2d

pytestmark = pytest.mark.unit

U, K, N = 32, 256, 96


def _positions(rows: int, active: list[int]) -> torch.Tensor:
    positions = torch.full((rows * U,), -1)
    positions[active] = torch.arange(len(active)) + 7
    return positions


def _linear(device, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """[R, U, K] (mesh row r holds x[r]) @ w -> the per-device results [devices, U, N]."""
    out = ttnn.linear(sharded_2d(device, x.unsqueeze(1), dims=(0, None)), replicated(device, w, dtype=ttnn.bfloat8_b))
    return out._data.float().reshape(-1, U, N)


@pytest.mark.parametrize("mesh_shape, active", [((1, 1), [5]), ((1, 1), [0, 1, 2, 3, 4, 30]), ((1, 1), []),
                                                ((2, 2), [3, 40]), ((2, 2), [33])])
def test_active_rows_keep_their_bits_and_empty_ones_are_nan(mesh_shape, active):
    rows, cols = mesh_shape
    generator = torch.Generator().manual_seed(len(active))
    x, w = torch.randn(rows, U, K, generator=generator), torch.randn(K, N, generator=generator) / K**0.5
    positions = _positions(rows, active)
    with open_mesh(rows, cols) as device:
        everyone = _linear(device, x, w)
        with skip_empty_decode_slots(decode_positions_tensor(positions, device, U)):
            declared = _linear(device, x, w)
        after = _linear(device, x, w)
    live = (positions >= 0).reshape(rows, U).repeat_interleave(cols, dim=0)  # [devices, U]
    assert torch.equal(declared[live], everyone[live]), "an active slot's row changed"
    assert declared[~live].isnan().all(), "an empty slot's row was computed"
    assert torch.equal(after, everyone), "the declaration outlived its block"


def test_a_replayed_trace_reads_the_positions_of_each_replay():
    generator = torch.Generator().manual_seed(3)
    x, w = torch.randn(1, U, K, generator=generator), torch.randn(K, N, generator=generator) / K**0.5
    with open_mesh(1, 1) as device:
        tx = sharded_2d(device, x.unsqueeze(1), dims=(0, None))
        tw = replicated(device, w, dtype=ttnn.bfloat8_b)
        everyone = ttnn.linear(tx, tw)._data.float().reshape(U, N)
        positions = decode_positions_tensor(_positions(1, [2]), device, U)
        trace = ttnn.begin_trace_capture(device, cq_id=0)
        with skip_empty_decode_slots(positions):
            out = ttnn.linear(tx, tw)
        ttnn.end_trace_capture(device, trace, cq_id=0)
        ttnn.copy_host_to_device_tensor(decode_positions_tensor(_positions(1, [2, 9]), device, U, on_device=False), positions)
        ttnn.execute_trace(device, trace, cq_id=0, blocking=True)
        replayed = out._data.float().reshape(U, N)
        ttnn.release_trace(device, trace)
    assert torch.equal(replayed[[2, 9]], everyone[[2, 9]]), "slot 9, active only in the replay, was not computed"
    assert replayed[[0, 1, 3, 31]].isnan().all()


@pytest.mark.parametrize("mesh_shape, users", [((1, 1), [4]), ((2, 2), [4, 45])])
def test_model_decode_of_one_user_equals_its_row_of_the_full_computation(mesh_shape, users, tmp_path, monkeypatch):
    """The whole model (MLA, dense MLP, MoE with its dispatch and combine across mesh rows, LM head): the
    active users' logits are the bits of a step that computes every slot; the empty slots' logits are NaN
    (nothing leaked into a user)."""
    config = get_preset("galaxy-tiny", num_layers=2)
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(*mesh_shape))
    model = TtModel.load(None, mesh, tmp_path / "cache", random_weights=True, hf_config=config, max_seq_len=64, progress=False)
    positions = torch.full((model.max_batch_size,), -1)
    for user in users:
        model.prefill(torch.arange(3, 20) + user, user_id=user)
        positions[user] = 17
    tokens = torch.where(positions >= 0, 21, 0)
    skipped = model.decode(tokens, positions)
    with monkeypatch.context() as patch:  # no declaration takes effect: every slot computed
        patch.setattr(decode_slots, "_declare", lambda positions_tensor: None)
        patch.setattr(decode_slots, "_clear", lambda positions_tensor: None)
        everyone = model.decode(tokens, positions)
    ttnn.close_mesh_device(mesh)
    assert torch.isfinite(skipped[users]).all()
    assert torch.equal(skipped[users], everyone[users])
    assert skipped[positions < 0].isnan().all() and torch.isfinite(everyone).all()
